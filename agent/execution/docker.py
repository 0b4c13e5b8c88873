"""Docker execution backend: the task's process runs in a container (docker SDK).

The runner does what it does for any backend (code checkout on the host, statuses, log,
abort); this backend only makes the process a container's:

- image: ``task.container["image"]``, else the daemon's default;
- arguments: the daemon's ``extra_args`` then the task's ``container["arguments"]``, a
  docker-run-like string (``-e K=V``, ``-v a:b[:ro]``, ``--network``, ``--shm-size``,
  ``--ipc``, ``--user``);
- ``$AGENT_HOME`` (code checkout, caches, the embedded store, local files) is mounted at the
  same path, so every path and ``AGENT_*`` variable means the same inside;
- the agent's SDK view (:mod:`agent.execution.sdk_view`: the agent and the libraries it
  needs, nothing else of the daemon's) is appended to ``sys.path`` after the image's own
  packages, with the directories its links point into mounted read-only at their own paths;
  when the image's Python has another major.minor than the daemon's, only the agent's own
  packages are (the image must then provide their dependencies);
- ``container["setup_script"]`` runs with bash before the task;
- network ``host`` (a loopback ``agent server`` is reachable) unless ``--network`` says else;
- ``docker-init`` as PID 1, so ``container.stop(timeout=grace)`` delivers SIGTERM to the task.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import agent_home
from agent.core.models import Task
from agent.execution.backends import Prepared, task_argv
from agent.execution.env import EnvError
from agent.execution.process import OnLines

Log = Callable[[str], None]

#: Where the agent's pieces appear inside a container.
MOUNT_ROOT = "/opt/pipeline-agent"
BOOT_MOUNT = f"{MOUNT_ROOT}/boot"
#: Label on every task container (``docker ps --filter label=pipeline-agent.task``).
TASK_LABEL = "pipeline-agent.task"
#: Label naming the store the task belongs to (a server URL or the embedded db).
STORE_LABEL = "pipeline-agent.store"
#: Image used when neither the task nor the daemon names one.
DEFAULT_IMAGE = "python:3.11-slim"

_SITECUSTOMIZE = """\
# Written by pipeline-agent: the agent SDK view after the image's own packages; with
# another Python than the agent's, the agent's own packages only.
import os
import sys

_want = os.environ.get("AGENT_HOST_PYTHON", "")
_have = "%d.%d" % sys.version_info[:2]
_path = os.environ.get("AGENT_SDK_VIEW", "")
if _want and _want != _have:
    sys.stderr.write(
        "pipeline-agent: the image's python is %s, the agent's %s: the agent's libraries "
        "are not shared (install them in the image)\\n" % (_have, _want)
    )
    _path = os.environ.get("AGENT_ONLY_VIEW", "")
if _path and _path not in sys.path:
    sys.path.append(_path)
"""


class ContainerArgsError(EnvError):
    """A container argument string that cannot be used."""


@dataclass
class ContainerArgs:
    """The docker-run-like arguments we support, as docker SDK ``containers.run`` kwargs."""

    environment: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    network_mode: str | None = None
    shm_size: str | None = None
    ipc_mode: str | None = None
    user: str | None = None

    def merged(self, other: ContainerArgs) -> ContainerArgs:
        """``other`` on top of ``self`` (the task's arguments over the daemon's)."""
        return ContainerArgs(
            environment={**self.environment, **other.environment},
            volumes={**self.volumes, **other.volumes},
            network_mode=other.network_mode or self.network_mode,
            shm_size=other.shm_size or self.shm_size,
            ipc_mode=other.ipc_mode or self.ipc_mode,
            user=other.user or self.user,
        )


_VALUE_OPTIONS = {
    "-e": "env", "--env": "env", "-v": "volume", "--volume": "volume",
    "--network": "network", "--net": "network", "--shm-size": "shm", "--ipc": "ipc",
    "-u": "user", "--user": "user",
}  # fmt: skip


def parse_container_args(text: str | Sequence[str] | None) -> ContainerArgs:
    """Parse ``-e K=V -v a:b[:ro] --network N --shm-size S --ipc M --user U``.

    Accepts ``--opt value`` and ``--opt=value``. Raises ContainerArgsError on anything else.
    """
    tokens = shlex.split(text) if isinstance(text, str) else list(text or [])
    args = ContainerArgs()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name, sep, value = token.partition("=") if token.startswith("--") else (token, "", "")
        kind = _VALUE_OPTIONS.get(name)
        if kind is None:
            raise ContainerArgsError(
                f"unsupported container argument {token!r} (supported: -e, -v, --network, "
                "--shm-size, --ipc, --user)"
            )
        if not sep:
            if i + 1 >= len(tokens):
                raise ContainerArgsError(f"container argument {token!r} needs a value")
            i += 1
            value = tokens[i]
        _apply(args, kind, value)
        i += 1
    return args


def _apply(args: ContainerArgs, kind: str, value: str) -> None:
    if kind == "env":
        key, sep, val = value.partition("=")
        if not key:
            raise ContainerArgsError(f"bad -e {value!r}: expected KEY=VALUE")
        # ``-e KEY`` passes the daemon's value, as docker run does.
        args.environment[key] = val if sep else os.environ.get(key, "")
    elif kind == "volume":
        parts = value.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ContainerArgsError(f"bad -v {value!r}: expected HOST:CONTAINER[:ro|rw]")
        mode = parts[2] if len(parts) == 3 else "rw"
        args.volumes[parts[0]] = {"bind": parts[1], "mode": mode}
    elif kind == "network":
        args.network_mode = value
    elif kind == "shm":
        args.shm_size = value
    elif kind == "ipc":
        args.ipc_mode = value
    elif kind == "user":
        args.user = value


def gpu_device_requests(gpus: str | Sequence[str] | None) -> list[Any]:
    """Docker DeviceRequests for ``gpus`` ("all", "0,1" or a list of ids); [] for none."""
    import docker.types

    if not gpus:
        return []
    if gpus == "all":
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    ids = gpus.split(",") if isinstance(gpus, str) else list(gpus)
    ids = [str(i).strip() for i in ids if str(i).strip()]
    return [docker.types.DeviceRequest(device_ids=ids, capabilities=[["gpu"]])] if ids else []


@functools.lru_cache(maxsize=4)
def _views(home: Path) -> tuple[Path, Path, list[str]]:
    """(the SDK view, the agent-only view, the host directories their links point into)."""
    from agent.execution import sdk_view

    root = home / "sdk-view"
    entries = sdk_view.view_entries()
    full = sdk_view.build_view(root, entries)
    agent_only = {name: entries[name] for name in sdk_view.AGENT_PACKAGES if name in entries}
    only = sdk_view.build_view(root, agent_only)
    targets = {str(Path(target).parent) for target in entries.values()}
    return full, only, sorted(targets)


@dataclass
class DockerPrepared(Prepared):
    """A task ready to start in a container: ``argv`` runs inside ``image``."""

    image: str = ""
    run_kwargs: dict[str, Any] = field(default_factory=dict)


class DockerBackend:
    """Run each task in a container of its image (or ``default_image``).

    Args:
        client: a ``docker.DockerClient`` (``docker.from_env()``).
        default_image: image for tasks that name none.
        extra_args: the daemon's container arguments (the task's go on top).
        gpus: GPUs to hand to containers: "all", "0,1", a list of ids, or None.
        home: ``$AGENT_HOME`` (mounted at the same path).
        pull: pull a missing image (off: fail at once, e.g. without a registry).
        store_label: names the store on the containers (default: ``home``), so that
            :func:`remove_orphans` only ever touches containers of that store.
    """

    name = "docker"

    def __init__(
        self,
        client: Any,
        default_image: str | None = None,
        extra_args: str | Sequence[str] | None = None,
        gpus: str | Sequence[str] | None = None,
        home: str | os.PathLike[str] | None = None,
        pull: bool = True,
        store_label: str | None = None,
    ):
        self.client = client
        self.default_image = default_image or DEFAULT_IMAGE
        self.extra_args = parse_container_args(extra_args)
        self.gpus = gpus
        self.home = Path(home) if home is not None else agent_home()
        self.pull = pull
        self.store_label = store_label or str(self.home)

    # -- prepare --------------------------------------------------------------------
    def prepare(self, task: Task, workdir: Path, log: Log) -> DockerPrepared:
        container = task.container or {}
        image = str(container.get("image") or self.default_image)
        args = self.extra_args.merged(parse_container_args(container.get("arguments")))
        self._ensure_image(image, log)
        boot = Path(tempfile.mkdtemp(prefix="docker-boot-", dir=self._boot_root()))
        (boot / "sitecustomize.py").write_text(_SITECUSTOMIZE)
        argv = task_argv("python3", task)
        setup = str(container.get("setup_script") or "").strip()
        if setup:
            (boot / "setup.sh").write_text(setup + "\n")
            argv = ["bash", "-c", f'bash {BOOT_MOUNT}/setup.sh && exec "$@"', "setup", *argv]
        log(f"container: image {image}" + (", with a setup script" if setup else ""))
        if task.script.requirements:
            log(
                f"docker: not installing {len(task.script.requirements)} requirement(s); "
                "the image (or the setup script) must provide them"
            )
        return DockerPrepared(
            argv=argv,
            cwd=Path(workdir),
            image=image,
            run_kwargs=self._run_kwargs(args, Path(workdir), boot),
            cleanup=lambda: shutil.rmtree(boot, ignore_errors=True),
        )

    def _boot_root(self) -> Path:
        root = self.home / "docker"
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _ensure_image(self, image: str, log: Log) -> None:
        import docker.errors

        try:
            self.client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            if not self.pull:
                raise EnvError(f"docker image {image!r} is not on this machine") from None
        except docker.errors.APIError as exc:
            raise EnvError(f"docker engine error looking up {image!r}: {exc}") from exc
        log(f"pulling docker image {image}")
        try:
            self.client.images.pull(image)
        except docker.errors.APIError as exc:
            raise EnvError(f"cannot pull docker image {image!r}: {exc}") from exc

    def _run_kwargs(self, args: ContainerArgs, workdir: Path, boot: Path) -> dict[str, Any]:
        home = str(self.home.resolve())
        full_view, agent_view, link_targets = _views(self.home.resolve())
        volumes: dict[str, dict[str, str]] = {
            target: {"bind": target, "mode": "ro"}
            for target in link_targets
            if not Path(target).is_relative_to(home)
        }
        volumes[home] = {"bind": home, "mode": "rw"}
        volumes[str(boot)] = {"bind": BOOT_MOUNT, "mode": "ro"}
        if not workdir.resolve().is_relative_to(home):
            volumes[str(workdir.resolve())] = {"bind": str(workdir.resolve()), "mode": "rw"}
        volumes.update(args.volumes)
        environment = {
            "PYTHONPATH": BOOT_MOUNT,
            "AGENT_SDK_VIEW": str(full_view),
            "AGENT_ONLY_VIEW": str(agent_view),
            "AGENT_HOST_PYTHON": "{}.{}".format(*sys.version_info[:2]),
            "PYTHONUNBUFFERED": "1",
        }
        user = args.user or (f"{os.getuid()}:{os.getgid()}" if os.getuid() != 0 else None)
        if user and not user.startswith(("0", "root")):
            environment["HOME"] = "/tmp"
        kwargs: dict[str, Any] = {
            "volumes": volumes,
            "environment": {**environment, **args.environment},
            "network_mode": args.network_mode or "host",
            "init": True,
            "detach": True,
        }
        if user:
            kwargs["user"] = user
        if args.shm_size:
            kwargs["shm_size"] = args.shm_size
        if args.ipc_mode:
            kwargs["ipc_mode"] = args.ipc_mode
        requests = gpu_device_requests(self.gpus)
        if requests:
            kwargs["device_requests"] = requests
        return kwargs

    # -- start ----------------------------------------------------------------------
    def start(
        self, prepared: Prepared, env_vars: Mapping[str, str], on_lines: OnLines
    ) -> ContainerHandle:
        """Create and start the container; its output goes to ``on_lines``.

        Raises:
            OSError: the docker engine refused to create or start it.
        """
        import docker.errors

        if not isinstance(prepared, DockerPrepared):
            raise TypeError("DockerBackend.start needs what DockerBackend.prepare returned")
        kwargs = dict(prepared.run_kwargs)
        environment = {**kwargs.pop("environment"), **prepared.env_vars, **env_vars}
        task_id = env_vars.get("AGENT_TASK_ID", "")
        try:
            container = self.client.containers.run(
                prepared.image,
                command=list(prepared.argv),
                working_dir=str(prepared.cwd.resolve()),
                environment=environment,
                labels={TASK_LABEL: task_id, STORE_LABEL: self.store_label},
                name=f"agent-task-{task_id[:12] or 'x'}-{uuid.uuid4().hex[:6]}",
                **kwargs,
            )
        except docker.errors.DockerException as exc:
            raise OSError(f"docker could not run {prepared.image!r}: {exc}") from exc
        handle = ContainerHandle(container, on_lines)
        previous = prepared.cleanup
        prepared.cleanup = _chain(handle.remove, previous)
        return handle


def _chain(*steps: Callable[[], None] | None) -> Callable[[], None]:
    def run_all() -> None:
        for step in steps:
            if step is not None:
                step()

    return run_all


class ContainerHandle:
    """A started task container: wait for it, stop it, stream its output."""

    def __init__(self, container: Any, on_lines: OnLines):
        self.container = container
        self.pid = None
        self._exit_code: int | None = None
        self._exited = threading.Event()
        self._reader = threading.Thread(
            target=_stream_logs, args=(container, on_lines), name="container-logs", daemon=True
        )
        self._reader.start()
        self._waiter = threading.Thread(target=self._wait_exit, name="container-wait", daemon=True)
        self._waiter.start()

    def _wait_exit(self) -> None:
        import docker.errors
        import requests

        try:
            result = self.container.wait()
            self._exit_code = int(result.get("StatusCode", 1))
        except (docker.errors.DockerException, requests.RequestException):
            self._exit_code = self._inspect_exit_code()
        self._exited.set()

    def _inspect_exit_code(self) -> int:
        import docker.errors

        try:
            self.container.reload()
            return int(self.container.attrs["State"]["ExitCode"])
        except (docker.errors.DockerException, KeyError, ValueError):
            return 1

    @property
    def returncode(self) -> int | None:
        return self._exit_code if self._exited.is_set() else None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._exited.wait(timeout):
            return None
        self._reader.join(2.0)  # the last lines
        return self._exit_code

    def kill_tree(self, grace: float = 10.0) -> int:
        """``docker stop`` (SIGTERM, then SIGKILL after ``grace`` s); the exit code."""
        import docker.errors

        if not self._exited.is_set():
            try:
                self.container.stop(timeout=max(1, round(grace)))
            except docker.errors.NotFound:
                pass  # removed under us: it is not running, which is what we want
            except docker.errors.APIError:
                self.container.kill()
        self._exited.wait(grace + 30)
        self._reader.join(2.0)
        return self._exit_code if self._exit_code is not None else 1

    def remove(self) -> None:
        """Remove the container (after its logs were read)."""
        import docker.errors

        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass  # already gone
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise


def _stream_logs(container: Any, on_lines: OnLines) -> None:
    """Hand the container's output (stdout and stderr) to ``on_lines`` line by line."""
    import docker.errors
    import requests

    rest = b""
    try:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            lines, rest = _split(rest + chunk)
            if lines:
                on_lines(lines)
    except (docker.errors.DockerException, requests.RequestException):
        pass  # the container went away: what was read is delivered below
    if rest:
        on_lines([_decode(rest)])


def _split(buffer: bytes) -> tuple[list[str], bytes]:
    *complete, rest = buffer.split(b"\n")
    return [_decode(line) for line in complete], rest


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


def remove_orphans(client: Any, store: Any, store_label: str) -> list[str]:
    """Remove containers of ``store``'s tasks that no longer run (e.g. their daemon was
    killed with -9 and the reaper failed the task). Returns the ids of the tasks swept."""
    from agent.core.errors import NotFound

    swept = []
    filters = {"label": [TASK_LABEL, f"{STORE_LABEL}={store_label}"]}
    for container in client.containers.list(all=True, filters=filters):
        task_id = container.labels.get(TASK_LABEL, "")
        try:
            running = store.get_task(task_id).status == "in_progress"
        except NotFound:
            running = False
        if not running:
            container.remove(force=True)
            swept.append(task_id)
    return swept


def task_containers(client: Any, task_id: str | None = None) -> Iterable[Any]:
    """Containers of tasks (of one task, if given), running or not."""
    label = TASK_LABEL if task_id is None else f"{TASK_LABEL}={task_id}"
    return client.containers.list(all=True, filters={"label": label})
