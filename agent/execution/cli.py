"""``agent run``, ``agent execute`` and ``agent build``: tasks from scripts, run here, envs only.

``agent execute`` runs the task in a worker thread while the main thread prints its
log and watches for signals: the first SIGINT/SIGTERM marks the task ``stopped``
(the runner then kills its process group, SIGTERM then SIGKILL), a second one
leaves at once. The handlers only count signals; the main loop acts on them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agent.cli.lookup import current_backend, find_task
from agent.core.errors import Conflict, InvalidInput
from agent.core.models import TaskStatus, TaskTypes
from agent.store.serving import warn_if_unserved

if TYPE_CHECKING:
    from agent.store.base import Backend

#: Seconds between reads of the task's log while ``agent execute`` runs it.
LOG_POLL_S = 0.2
#: Status message of a task stopped by Ctrl-C (or SIGTERM) at ``agent execute``.
INTERRUPTED_MESSAGE = "interrupted at `agent execute`"
EXIT_INTERRUPTED = 130

_RUNNABLE = (TaskStatus.created.value, TaskStatus.queued.value)


def _err(message: str) -> None:
    click.echo(message, err=True)


# -- agent run ----------------------------------------------------------------


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("script", type=click.Path(exists=True, dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--project", required=True, help="Project of the task.")
@click.option("--name", default=None, help="Task name (default: the script's file name).")
@click.option(
    "--queue", default=None, help="Queue to put the task on (without it: only create it)."
)
@click.option(
    "--packages",
    multiple=True,
    metavar="PKG",
    help="A requirement to install, e.g. 'torch>=2.1'; repeat for more. Without it: the "
    "repository's requirements.txt, else the script's imports at their installed versions.",
)
@click.option("--docker", "docker_image", default=None, metavar="IMAGE", help="Run in this image.")
@click.option(
    "--docker-args",
    default=None,
    metavar="STR",
    help="Container arguments, e.g. '-e K=V -v /data:/data --shm-size 1g'.",
)
@click.option(
    "--type",
    "task_type",
    type=click.Choice([t.value for t in TaskTypes]),
    default=TaskTypes.training.value,
    show_default=True,
    help="Task type.",
)
@click.option(
    "--priority",
    type=int,
    default=0,
    show_default=True,
    help="Higher is claimed first within the queue.",
)
def run_command(
    script: str,
    args: tuple[str, ...],
    project: str,
    name: str | None,
    queue: str | None,
    packages: tuple[str, ...],
    docker_image: str | None,
    docker_args: str | None,
    task_type: str,
    priority: int,
) -> None:
    """Make a task from a local script and put it on a queue.

    Inside a git repository the task records the repository (origin remote, else
    the local path), branch, commit and uncommitted changes, and runs the script
    from the current directory (when the script is under it) or from its own
    directory, as `python SCRIPT ARGS` would here. Outside git the script travels
    alone, as inline code.

    Arguments the agent does not know go to the script; put the script's
    arguments after `--` when they clash with these options (--name, --type ...).
    Prints the task id on stdout (and what happened on stderr).

    \b
    Examples:
      agent run train.py --epochs 3 --project demo --queue default
      agent run src/train.py --project demo --name baseline --queue gpu --packages torch
      agent run job.py --project demo --queue default --docker python:3.11-slim \\
          --docker-args '-e K=V -v /data:/data'
      agent run train.py --project demo --queue default -- --name run1 --type resnet
      TASK=$(agent run train.py --project demo --queue default) && agent logs $TASK -f
    """
    from agent.execution.task_from_script import task_from_script

    task = task_from_script(
        script,
        args,
        project=project,
        name=name or "",
        packages=packages or None,
        docker=docker_image,
        docker_args=docker_args,
        task_type=task_type,
        log=lambda line: _err(f"note: {line}"),
    )
    backend = current_backend()
    task = backend.create_task(task)
    if queue:
        backend.enqueue(task.id, queue, priority=priority)
        _err(f"task {task.id} queued on '{queue}' (follow: agent logs {task.id} --follow)")
        warn_if_unserved(backend, queue)
    else:
        _err(
            f"task {task.id} created (run it: agent enqueue {task.id} --queue Q, "
            f"or here: agent execute --id {task.id})"
        )
    click.echo(task.id)


# -- agent execute -------------------------------------------------------------


@click.command("execute")
@click.option("--id", "task_ref", required=True, metavar="ID", help="Task id (or a unique prefix).")
@click.option(
    "--no-env",
    is_flag=True,
    help="Run with this interpreter, installing nothing (no venv build).",
)
@click.option(
    "--adopt",
    is_flag=True,
    help="Also run a task that is already in progress (one a daemon claimed and hands over).",
)
@click.option(
    "--docker",
    "docker_image",
    default=None,
    metavar="IMAGE",
    help="Run the task in Docker: its own image, else IMAGE.",
)
@click.option(
    "--keep-status-on-signal",
    is_flag=True,
    help="On SIGINT/SIGTERM leave the task's status alone: whoever sent the signal records "
    "why (the Slurm glue reads a time limit or a cancel from Slurm).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the final status line, not the log.")
def execute_command(
    task_ref: str,
    no_env: bool,
    adopt: bool,
    docker_image: str | None,
    keep_status_on_signal: bool,
    quiet: bool,
) -> int:
    """Run one task here and now: its code, its environment, its process.

    A created or queued task is claimed (taken off its queue) and run to its end;
    its log streams to stdout, the final status to stderr. Exit code 0 when it
    completed, 1 otherwise. Ctrl-C (or SIGTERM) stops the task (status 'stopped',
    exit code 130); a second one leaves at once.

    \b
    Examples:
      agent execute --id 3f2a1b4c
      agent execute --id 3f2a --no-env        # this interpreter, nothing installed
      agent execute --id $(agent run train.py --project demo) --quiet
    """
    backend = current_backend()
    task = find_task(backend, task_ref)
    if task.status not in _RUNNABLE and not (adopt and task.status == "in_progress"):
        raise Conflict(_not_runnable(task.id, task.status))
    watch = TaskWatch(
        backend,
        task.id,
        emit=None if quiet else _echo_log_line,
        stop_on_signal=not keep_status_on_signal,
    )
    status = watch.run(_run_here(backend, task.id, no_env, adopt, docker_image))
    final = backend.get_task(task.id)
    why = f": {final.status_message}" if final.status_message else ""
    _err(f"task {task.id} {status.value}{why}")
    if status is TaskStatus.completed:
        return 0
    return EXIT_INTERRUPTED if watch.signals else 1


def _run_here(
    backend: Backend, task_id: str, no_env: bool, adopt: bool, docker_image: str | None
) -> Callable[[], TaskStatus]:
    """What runs the task: the runner of ``execute_task``, or one over Docker."""
    if docker_image is None:
        from agent.execution.runner import execute_task

        return lambda: execute_task(backend, task_id, no_env=no_env, adopt=adopt)
    from agent.daemon.runners import RunnerSpec
    from agent.execution.runner import IN_PROGRESS

    spec = RunnerSpec(worker_id="", docker_image=docker_image, warm_start=False)

    def run() -> TaskStatus:
        adopting = adopt and backend.get_task(task_id).status == IN_PROGRESS
        return spec().run(task_id, claim=not adopting)

    return run


def _not_runnable(task_id: str, status: str) -> str:
    if status == TaskStatus.in_progress.value:
        return (
            f"task {task_id} is already in progress (another agent runs it); "
            "--adopt runs it here anyway"
        )
    return (
        f"task {task_id} is {status}: only created or queued tasks run; "
        f"run a copy with `agent clone {task_id}` then `agent execute --id NEW_ID`"
    )


def _echo_log_line(text: str) -> None:
    click.echo(text[:-1] if text.endswith("\n") else text)


class TaskWatch:
    """Runs a task in a worker thread; prints its log and turns signals into a stop.

    Args:
        backend: the store (the task's log and status live there).
        task_id: the task being run.
        emit: prints one log line; None prints nothing.
        interval: seconds between log reads.
        stop_on_signal: the first signal marks the task stopped; False leaves its status
            to the signal's sender (the task's processes got the signal too).
    """

    def __init__(
        self,
        backend: Backend,
        task_id: str,
        emit: Callable[[str], None] | None,
        interval: float = LOG_POLL_S,
        stop_on_signal: bool = True,
    ):
        self.backend = backend
        self.stop_on_signal = stop_on_signal
        self.task_id = task_id
        self.emit = emit
        self.interval = interval
        self.signals = 0
        self._stop_sent = False
        self._after = 0

    def run(self, target: Callable[[], TaskStatus]) -> TaskStatus:
        """Call ``target`` in a thread, watching it; its result (or its exception)."""
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["status"] = target()
            except BaseException as exc:  # handed to the main thread, raised there
                outcome["error"] = exc

        worker = threading.Thread(target=work, name=f"execute-{self.task_id[:8]}", daemon=True)
        previous = self._install_handlers()
        try:
            worker.start()
            while worker.is_alive() and self.signals < 2:
                worker.join(self.interval)
                self._act_on_signals()
                self._print_new_lines()
        finally:
            self._restore_handlers(previous)
        self._print_new_lines()
        if "error" in outcome:
            raise outcome["error"]
        if "status" not in outcome:  # left on a second signal, the task still running
            return self._current_status()
        return outcome["status"]

    def _act_on_signals(self) -> None:
        if self.signals and not self._stop_sent:
            self._stop_sent = True
            if not self.stop_on_signal:
                _err("interrupted: the task's status is left to the signal's sender")
                return
            _err("interrupted: stopping the task (again to leave at once)")
            try:
                self.backend.set_status(
                    self.task_id,
                    "stopped",
                    INTERRUPTED_MESSAGE,
                    expected=[*_RUNNABLE, "in_progress"],
                )
            except Conflict:
                pass  # it already ended: nothing to stop

    def _print_new_lines(self) -> None:
        if self.emit is None:
            return
        while True:
            page = self.backend.get_logs(self.task_id, after=self._after)
            if not page:
                return
            for line in page:
                self.emit(line.text)
            self._after = page[-1].seq

    def _current_status(self) -> TaskStatus:
        return TaskStatus(self.backend.get_task(self.task_id).status)

    def _on_signal(self, _signum: int, _frame: Any) -> None:
        self.signals += 1

    def _install_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _restore_handlers(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# -- agent build ----------------------------------------------------------------


@click.command("build")
@click.option("--id", "task_ref", required=True, metavar="ID", help="Task id (or a unique prefix).")
@click.option(
    "--target",
    required=True,
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Where to create the virtualenv (new, empty, or a venv to replace).",
)
def build_command(task_ref: str, target: str) -> None:
    """Build a task's Python environment only, without running it.

    Creates a virtualenv at DIR with the task's requirements (uv, else venv + pip;
    index options from the [agent] table of agent.toml: find_links, index_url,
    no_index) and prints its python on stdout; the installer's output goes to stderr.

    \b
    Examples:
      agent build --id 3f2a1b4c --target ./venv
      $(agent build --id 3f2a --target /tmp/env) -c 'import torch'
    """
    backend = current_backend()
    task = find_task(backend, task_ref)
    target_dir = Path(target).expanduser().resolve()
    _check_target(target_dir)
    from agent.execution.runner import build_env_only

    python = build_env_only(backend, task.id, target_dir, log=_err)
    click.echo(str(python))


def _check_target(target_dir: Path) -> None:
    """Refuse to wipe a directory that is neither empty nor a virtualenv."""
    if not target_dir.exists():
        return
    if (target_dir / "pyvenv.cfg").is_file() or not any(target_dir.iterdir()):
        return
    raise InvalidInput(
        f"--target {target_dir} is not empty and not a virtualenv: "
        "the build would replace it; give a new directory"
    )
