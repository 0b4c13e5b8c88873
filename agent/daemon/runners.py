"""What a daemon runs its tasks with: a picklable recipe for a ``TaskRunner``.

``RunnerSpec`` holds only plain values (so a child process could build its own store
connection and execution backend from it); in the daemon's process the built parts are
cached and reused across tasks, by the plain daemon and the services host alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.config import Settings, load_settings


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def gpu_env(gpus: str | None, cpu_only: bool, in_container: bool = False) -> dict[str, str]:
    """Environment that pins a task's GPUs: ``--gpus 0,1`` / ``--gpus all`` / ``--cpu-only``.

    In a container the GPUs handed over by a DeviceRequest are numbered from 0 again, so
    ``CUDA_VISIBLE_DEVICES`` counts them there instead of naming the host's ids.
    """
    if cpu_only:
        return {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "none"}
    if not gpus:
        return {}
    if gpus == "all":
        return {"NVIDIA_VISIBLE_DEVICES": "all"}
    ids = [part.strip() for part in gpus.split(",") if part.strip()]
    cuda = [str(i) for i in range(len(ids))] if in_container else ids
    return {"CUDA_VISIBLE_DEVICES": ",".join(cuda), "NVIDIA_VISIBLE_DEVICES": ",".join(ids)}


@dataclass
class RunnerSpec:
    """How to build the runner of one task.

    Attributes:
        worker_id: the daemon's worker id (exported to tasks as ``AGENT_WORKER_ID``).
        extra_env: added to every task's environment (the GPU pinning, ...).
        no_env: run with the daemon's interpreter, building no environment.
        docker_image: run in containers (this default image); None = no docker.
        docker_args: the daemon's container arguments.
        gpus: GPUs handed to containers ("all", "0,1"), None for none.
        agent_table: overrides of the ``[agent]`` settings table (``venv_cache_size``...).
        api_url: the store to use in a child process (None: settings decide).
        warm_start: start tasks of warm environments by forking them from a zygote of
            the environment (``agent.execution.warm``); ``[agent] warm_start`` can turn
            it off too.
    """

    worker_id: str
    extra_env: dict[str, str] = field(default_factory=dict)
    no_env: bool = False
    docker_image: str | None = None
    docker_args: str = ""
    gpus: str | None = None
    agent_table: dict[str, Any] = field(default_factory=dict)
    api_url: str | None = None
    warm_start: bool = True
    _built: tuple[Any, Any, Any, Any] | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_built"] = None  # connections and clients stay in their process
        return state

    def settings(self) -> Settings:
        settings = load_settings()
        settings.agent.update(self.agent_table)
        return settings

    def __call__(self) -> Any:
        """A ``TaskRunner`` (store, execution backend and repo cache built once)."""
        from agent.execution.runner import TaskRunner

        if self._built is None:
            self._built = self._build()
        store, settings, backend, repo_cache = self._built
        return TaskRunner(
            store, settings, backend, repo_cache, worker_id=self.worker_id, extra_env=self.extra_env
        )

    def _build(self) -> tuple[Any, Any, Any, Any]:
        from agent.execution.backends import backend_from_settings
        from agent.execution.runner import repo_cache_from_settings
        from agent.store.factory import get_backend

        settings = self.settings()
        store = get_backend(self.api_url)
        if self.docker_image is not None:
            backend = self._docker_backend(settings, store)
        else:
            backend = backend_from_settings(settings, no_env=self.no_env)
            if self.warm_start and _as_bool(settings.agent.get("warm_start", True)):
                from agent.execution.warm import WarmBackend

                backend = WarmBackend(backend)
        return store, settings, backend, repo_cache_from_settings(settings)

    def close(self) -> None:
        """Release what the built parts hold (the warm-start zygotes); idle runners only."""
        if self._built is None:
            return
        close = getattr(self._built[2], "close", None)
        if close is not None:
            close()

    def _docker_backend(self, settings: Settings, store: Any) -> Any:
        import docker

        from agent.execution.docker import DockerBackend, remove_orphans

        client = docker.from_env()
        store_label = settings.api_url or settings.db_url
        # Containers outlive a daemon killed with -9: sweep those whose task has ended.
        remove_orphans(client, store, store_label)
        return DockerBackend(
            client,
            store_label=store_label,
            default_image=self.docker_image or None,
            extra_args=self.docker_args,
            gpus=self.gpus,
            home=settings.home,
            pull=bool(settings.agent.get("docker_pull", True)),
        )
