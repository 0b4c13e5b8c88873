"""``agent daemon``: pull tasks from queues and run them.

Every option can also come from the environment (``AGENT_<OPTION>``, e.g. ``AGENT_QUEUES``,
``AGENT_GPUS``) or from the ``[agent]`` table of ``$AGENT_HOME/agent.toml`` (``queues``,
``order_fairness``, ``services_mode``, ``docker`` (bool), ``docker_image``, ``docker_args``, ``gpus``,
``cpu_only``, ``no_env``, ``worker_id``, ``venv_cache_size``, ``lease``, ``slots``,
``warm_start`` (bool, default true: start a task of a warm environment by forking it
from a zygote of that environment)); flags beat the environment, the environment beats
the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from agent.config import Settings, load_settings
from agent.core.secrets import setup_redacted_logging
from agent.store.base import DEFAULT_LEASE_S

log = logging.getLogger("agent.daemon")

_TRUE = {"1", "true", "yes", "on"}


def _as_bool(value: Any) -> bool:
    return value.strip().lower() in _TRUE if isinstance(value, str) else bool(value)


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return [str(part) for part in value or []]


class DaemonConfig:
    """One option's value: the flag, else ``AGENT_<KEY>``, else ``[agent] <key>``."""

    def __init__(self, settings: Settings):
        self.table = settings.agent

    def get(self, flag: Any, key: str, convert: Callable[[Any], Any], default: Any = None) -> Any:
        if flag is not None and flag != ():
            return convert(flag)
        env = os.environ.get(f"AGENT_{key.upper()}")
        if env not in (None, ""):
            return convert(env)
        if key in self.table:
            return convert(self.table[key])
        return default


def _docker_image(config: DaemonConfig, flag: str | None) -> str | None:
    """None: no docker. Else the default image ("" = DockerBackend's own default).

    Docker mode is on with ``--docker [IMAGE]`` or ``docker = true``; the image is the
    flag's, else ``docker_image``.
    """
    if flag is None and not config.get(None, "docker", _as_bool, False):
        return None
    return flag or config.get(None, "docker_image", str, "")


@click.command("daemon")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="Q",
    help="Queue to serve; repeat for more, in priority order (the first is drained first).",
)
@click.option(
    "--order-fairness/--no-order-fairness",
    default=None,
    help="Round robin over the queues instead of strict priority order.",
)
@click.option(
    "--services-mode",
    type=click.IntRange(min=1),
    is_flag=False,
    flag_value=8,
    default=None,
    metavar="[N]",
    help="Run up to N tasks (service tasks, e.g. pipeline controllers) at once, each in "
    "its own process (default N: 8).",
)
@click.option(
    "--docker",
    "docker_image",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[IMAGE]",
    help="Run tasks in Docker: their own image, else IMAGE (else [agent] docker_image).",
)
@click.option(
    "--docker-args",
    default=None,
    metavar="ARGS",
    help="Container arguments for every task, e.g. '-e K=V -v /data:/data --shm-size 1g'.",
)
@click.option(
    "--gpus", default=None, metavar="IDS", help="GPUs for the tasks, e.g. '0,1' or 'all'."
)
@click.option("--cpu-only", is_flag=True, default=None, help="Hide every GPU from the tasks.")
@click.option(
    "--no-env",
    is_flag=True,
    default=None,
    help="Run tasks with this interpreter, installing nothing (no venv build).",
)
@click.option(
    "--foreground",
    is_flag=True,
    help="Stay attached and log to the terminal (the default; not with --detached).",
)
@click.option(
    "--detached",
    is_flag=True,
    help="Run in the background; log to $AGENT_HOME/daemons/<worker>.log.",
)
@click.option(
    "--stop",
    is_flag=True,
    help="Stop the running daemons (those of the given --queue only, if any) and wait for "
    "them. A daemon finishes its running task first; --stop again aborts it.",
)
@click.option(
    "--stop-timeout",
    type=float,
    default=60.0,
    show_default=True,
    metavar="S",
    help="With --stop: seconds to wait for the daemons to exit.",
)
@click.option("--worker-id", default=None, metavar="ID", help="Worker id (default host:pid).")
@click.option(
    "--venv-cache-size",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Keep at most N task environments (least recently used go first).",
)
@click.option(
    "--slots",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Run up to N tasks at once, each in its own runner thread (default 1).",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=1.0),
    default=None,
    metavar="S",
    help=f"Seconds a running task's lease lasts without a heartbeat (default {DEFAULT_LEASE_S:g}).",
)
def daemon_command(**options: Any) -> int:
    """Pull tasks from queues and run them, one at a time (or N with --slots or
    --services-mode).

    The first SIGTERM (or Ctrl-C) stops claiming and lets the running task finish; a
    second one aborts it (status 'stopped', "agent stopped") and exits.

    \b
    Examples:
      agent daemon --queue default
      agent daemon --queue gpu --queue default --gpus 0,1 --detached
      agent daemon --queue services --services-mode 4
      agent daemon --queue default --docker python:3.11-slim
      agent daemon --stop --queue gpu
    """
    _setup_logging()
    settings = load_settings()
    if options["stop"]:
        return _stop(settings, options)
    return _start(settings, options)


def _setup_logging() -> None:
    # Git errors and task lines may echo a url with credentials: masked in every line.
    setup_redacted_logging(logging.INFO)


def _stop(settings: Settings, options: dict[str, Any]) -> int:
    from agent.daemon.detach import stop_daemons

    results = stop_daemons(settings.home, options["queues"], timeout_s=options["stop_timeout"])
    if not results:
        click.echo("no agent daemon is running" + _for_queues(options["queues"]))
        return 0
    for result in results:
        state = "stopped" if result.stopped else "still running (finishing its task?)"
        click.echo(f"{result.worker_id} (pid {result.pid}): {state}")
    if all(r.stopped for r in results):
        return 0
    click.echo("run `agent daemon --stop` again to abort the running tasks", err=True)
    return 1


def _for_queues(queues: tuple[str, ...]) -> str:
    return f" for queue(s) {', '.join(queues)}" if queues else ""


def _start(settings: Settings, options: dict[str, Any]) -> int:
    from agent.daemon.detach import detach, log_path, remove_pid_file, write_pid_file
    from agent.daemon.loop import default_worker_id

    config = DaemonConfig(settings)
    queues = config.get(options["queues"], "queues", _as_list, [])
    if not queues:
        raise click.UsageError("no queue: pass --queue Q (or set queues in [agent] of agent.toml)")
    if options["detached"] and options["foreground"]:
        raise click.UsageError("--detached and --foreground exclude each other")
    gpus = config.get(options["gpus"], "gpus", str)
    cpu_only = config.get(options["cpu_only"], "cpu_only", _as_bool, False)
    if gpus and cpu_only:
        raise click.UsageError("--gpus and --cpu-only exclude each other")
    worker_id = config.get(options["worker_id"], "worker_id", str)
    if options["detached"]:

        def announce(pid: int) -> Path:
            name = worker_id or default_worker_id(pid)
            write_pid_file(settings.home, name, queues)
            return log_path(settings.home, name)

        started = detach(announce)
        if started is not None:
            click.echo(
                f"agent daemon running in the background (pid {started.pid}); "
                f"log: {started.log_path}; stop it with `agent daemon --stop`"
            )
            return 0
    worker_id = worker_id or default_worker_id()
    daemon = _make_daemon(settings, config, options, queues, worker_id, gpus, cpu_only)
    pid_file = write_pid_file(settings.home, worker_id, queues)
    try:
        return daemon.run()
    finally:
        remove_pid_file(pid_file)


def _make_daemon(
    settings: Settings,
    config: DaemonConfig,
    options: dict[str, Any],
    queues: list[str],
    worker_id: str,
    gpus: str | None,
    cpu_only: bool,
) -> Any:
    from agent.daemon.loop import DEFAULT_CLAIM_TIMEOUT_S, DEFAULT_HEARTBEAT_S, Daemon
    from agent.daemon.runners import RunnerSpec, gpu_env
    from agent.store.factory import get_backend
    from services_mode.host import ServicesHost

    docker_image = _docker_image(config, options["docker_image"])
    table: dict[str, Any] = {}
    cache_size = config.get(options["venv_cache_size"], "venv_cache_size", int)
    if cache_size is not None:
        table["venv_cache_size"] = cache_size
    spec = RunnerSpec(
        worker_id=worker_id,
        extra_env=gpu_env(gpus, cpu_only, in_container=docker_image is not None),
        no_env=config.get(options["no_env"], "no_env", _as_bool, False),
        docker_image=docker_image,
        docker_args=config.get(options["docker_args"], "docker_args", str, ""),
        gpus=None if cpu_only else gpus,
        agent_table=table,
        warm_start=config.get(None, "warm_start", _as_bool, True),
    )
    lease = config.get(options["lease"], "lease", float, DEFAULT_LEASE_S)
    common: dict[str, Any] = dict(
        worker_id=worker_id,
        runner_factory=spec,
        order_fairness=config.get(options["order_fairness"], "order_fairness", _as_bool, False),
        lease_s=lease,
        heartbeat_s=config.get(None, "heartbeat", float, min(DEFAULT_HEARTBEAT_S, lease / 3)),
        claim_timeout_s=config.get(None, "claim_timeout", float, DEFAULT_CLAIM_TIMEOUT_S),
    )
    store = get_backend()
    services = config.get(options["services_mode"], "services_mode", int)
    if services:
        return ServicesHost(store, queues, max_running=services, **common)
    slots = config.get(options["slots"], "slots", int, 1)
    return Daemon(store, queues, slots=slots, **common)
