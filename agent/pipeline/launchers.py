"""How a step's task runs: in this process, in a local child process, or on a queue.

Each launcher has one job: ``launch(task, node)`` starts the step's (already
created) task and returns a :class:`StepHandle` whose ``wait`` gives the task's
final status. The engine does not care which one it has.

- :class:`InProcessLauncher` (debug mode): calls the component's function right
  here, synchronously, so breakpoints work; same store, same artifacts.
- :class:`LocalProcessLauncher` (local mode): a child process per step with this
  interpreter, forked from a warm :class:`~agent.pipeline.zygote.Zygote` (or spawned).
- :class:`QueueLauncher` (remote mode): enqueues the task; an agent runs it.

In-process and local launchers set the task's status themselves, like the agent's
runner does: ``in_progress`` at start, ``completed``/``failed`` from the outcome, and
a task someone stopped meanwhile stays stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Protocol

from agent.core.errors import Conflict
from agent.core.models import TERMINAL_STATES, Task, TaskStatus
from agent.pipeline.dag import Node
from agent.pipeline.step_runtime import launch_context
from agent.store.base import Backend

IN_PROGRESS = TaskStatus.in_progress.value
#: Seconds between SIGTERM and SIGKILL when a local step is stopped.
KILL_GRACE_S = 5.0


class StepHandle(Protocol):
    """A launched step."""

    def wait(self, timeout: float | None = None) -> str | None:
        """The task's final status, or None if it still runs after ``timeout`` s."""

    def stop(self, message: str = "") -> None:
        """Stop the step now; its task ends ``stopped``."""


class Launcher(Protocol):
    """Starts steps' tasks."""

    def launch(self, task: Task, node: Node) -> StepHandle:
        """Start the created ``task`` of ``node``."""

    def close(self) -> None:
        """Release what the launcher holds (processes, threads)."""


def _finish(backend: Backend, task_id: str, status: str, message: str = "") -> str:
    """End an in-progress task; a task moved meanwhile (stopped) keeps its status."""
    try:
        backend.set_status(task_id, status, message=message, expected=[IN_PROGRESS])
        return status
    except Conflict:
        return backend.get_task(task_id).status


class DoneHandle:
    """A step that already ended."""

    def __init__(self, status: str):
        self.status = status

    def wait(self, timeout: float | None = None) -> str | None:
        return self.status

    def stop(self, message: str = "") -> None:
        return None


@contextlib.contextmanager
def _working_dir(path: str | None):
    """chdir to ``path`` and put it first on sys.path for the block (debug mode)."""
    if not path:
        yield
        return
    old_cwd = os.getcwd()
    added = path not in sys.path
    if added:
        sys.path.insert(0, path)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(path)


class InProcessLauncher:
    """Debug mode: run the component's function in this thread, now."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.artifacts = None

    def bind_run(self, run: Any) -> None:
        """Share the run's index of artifact records (parents' records are read once)."""
        self.artifacts = run.artifacts

    def launch(self, task: Task, node: Node) -> StepHandle:
        from agent.pipeline.step_runtime import run_component

        spec = node.spec
        function = getattr(spec, "function", None)
        if function is None:
            raise TypeError(
                f"step '{node.name}' is not a function step: debug mode runs functions only; "
                "use start_locally(run_pipeline_steps_locally=True) for steps from tasks"
            )
        task = self.backend.set_status(task.id, IN_PROGRESS)
        try:
            checkouts = Path(tempfile.gettempdir()) / "agent-pipeline-checkouts"
            with _working_dir(
                step_dir(task, node, checkouts) if spec.explicit_repo else spec.local_dir
            ):
                run_component(
                    function,
                    spec.return_values,
                    task=task,
                    artifacts=self.artifacts,
                    backend=self.backend,
                )
        except Exception as exc:
            text = traceback.format_exc()
            print(text, file=sys.stderr, end="")
            with contextlib.suppress(Exception):
                self.backend.append_logs(task.id, text.splitlines())
            message = f"{type(exc).__name__}: {exc}"
            return DoneHandle(_finish(self.backend, task.id, TaskStatus.failed.value, message))
        return DoneHandle(_finish(self.backend, task.id, TaskStatus.completed.value))

    def close(self) -> None:
        return None


# -- local processes ------------------------------------------------------------------------
class LocalProcessLauncher:
    """Local mode: each step in a child process with this interpreter.

    Inline-code steps fork from a warm zygote (``use_zygote``, where ``os.fork``
    exists) or spawn ``python -m agent.pipeline.step_runtime``; steps from a
    repository run through the agent's runner with this interpreter (no venv).

    Args:
        backend: the store.
        echo: print each step's output here, prefixed with the step's name.
        use_zygote: fork steps from a zygote (default: where fork exists and
            ``AGENT_PIPELINE_NO_ZYGOTE`` is not set).
    """

    def __init__(self, backend: Backend, echo: bool = True, use_zygote: bool | None = None):
        self.backend = backend
        self.echo = echo
        if use_zygote is None:
            use_zygote = hasattr(os, "fork") and not os.environ.get("AGENT_PIPELINE_NO_ZYGOTE")
        self.run_dir = Path(tempfile.mkdtemp(prefix="agent-pipeline-"))
        self.artifacts: Any = None
        self._zygote = None
        self._zygote_lock = threading.Lock()
        self._print_lock = threading.Lock()
        if use_zygote:
            from agent.pipeline import zygote

            self._zygote = zygote.take()

    def launch(self, task: Task, node: Node) -> StepHandle:
        script = task.script
        execute = not script.code  # a step from a repository: the runner checks it out
        cwd = self._cwd(task, node) if not execute else os.getcwd()
        env = {"AGENT_TASK_ID": task.id, "PYTHONPATH": _pythonpath(cwd)}
        log_path = self.run_dir / f"{task.id}.log"
        context = None
        if not execute:
            task = self.backend.set_status(task.id, IN_PROGRESS)
            context = launch_context(task, self.artifacts)
        mode = "execute" if execute else "code"
        try:
            pid, exit_code = self._start(task.id, cwd, env, log_path, mode, context)
        except Exception as exc:
            if execute:
                raise
            return DoneHandle(
                _finish(self.backend, task.id, TaskStatus.failed.value, f"cannot start: {exc}")
            )
        return LocalHandle(self, task.id, node.name, pid, exit_code, log_path, execute)

    def _start(
        self,
        task_id: str,
        cwd: str,
        env: dict[str, str],
        log_path: Path,
        mode: str,
        context: dict[str, Any] | None = None,
    ) -> tuple[int, Future[int]]:
        zygote = self._zygote
        if zygote is not None and zygote.alive:
            full_env = {**os.environ, **env}
            return zygote.spawn(task_id, cwd, full_env, str(log_path), mode, context)
        return self._spawn(task_id, cwd, env, log_path, mode)

    def _spawn(
        self, task_id: str, cwd: str, env: dict[str, str], log_path: Path, mode: str
    ) -> tuple[int, Future[int]]:
        if mode == "execute":
            argv = [sys.executable, "-m", "agent.cli.main", "execute", "--id", task_id, "--no-env"]
        else:
            argv = [sys.executable, "-u", "-m", "agent.pipeline.step_runtime", task_id]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        future: Future[int] = Future()
        threading.Thread(
            target=lambda: future.set_result(proc.wait()), name=f"wait-{task_id[:8]}", daemon=True
        ).start()
        return proc.pid, future

    def _cwd(self, task: Task, node: Node) -> str:
        return step_dir(task, node, self.run_dir / "code")

    def bind_run(self, run: Any) -> None:
        """Hand steps the input records the run already read (saves their store reads)."""
        self.artifacts = run.artifacts

    def emit(self, step: str, lines: list[str]) -> None:
        if not self.echo or not lines:
            return
        with self._print_lock:
            for line in lines:
                print(f"[{step}] {line}")
            sys.stdout.flush()

    def close(self) -> None:
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            zygote.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def step_dir(task: Task, node: Node, checkouts: Path) -> str:
    """Where a step runs here: the local dir it came from, else a checkout of its
    repository (at its commit, with its diff) under ``checkouts``, else the current dir."""
    local = getattr(node.spec, "local_dir", None)
    if local:
        return str(local)
    script = task.script
    if not script.repository:
        return os.getcwd()
    from agent.config import load_settings
    from agent.execution.runner import repo_cache_from_settings

    dest = checkouts / task.id
    repo_cache_from_settings(load_settings()).checkout(
        script.repository,
        script.commit,
        dest,
        branch=script.branch or None,
        diff=script.diff,
        log=lambda _line: None,
    )
    return str((dest / (script.working_dir or ".")).resolve())


def _pythonpath(cwd: str) -> str:
    current = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(p for p in (cwd, current) if p)


class LocalHandle:
    """A step in a local child process: its output goes to the task log as it comes."""

    #: Seconds between checks that nobody stopped the task (``agent abort``).
    ABORT_CHECK_S = 1.0

    def __init__(
        self,
        launcher: LocalProcessLauncher,
        task_id: str,
        step: str,
        pid: int,
        exit_code: Future[int],
        log_path: Path,
        runner_owns_status: bool,
    ):
        self.launcher = launcher
        self.backend = launcher.backend
        self.task_id = task_id
        self.step = step
        self.pid = pid
        self.exit_code = exit_code
        self.log_path = log_path
        self.runner_owns_status = runner_owns_status
        self._offset = 0
        self._partial = b""
        self._status: str | None = None
        self._stop_message: str | None = None
        self._lock = threading.Lock()

    def wait(self, timeout: float | None = None) -> str | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        next_abort_check = time.monotonic() + self.ABORT_CHECK_S
        delay = 0.05
        while self._status is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            step = delay if remaining is None else min(delay, remaining)
            try:
                code = self.exit_code.result(timeout=step)
            except FutureTimeout:
                self._pump_log()
                delay = min(delay * 1.5, 0.5)
                if time.monotonic() >= next_abort_check:
                    next_abort_check = time.monotonic() + self.ABORT_CHECK_S
                    self._check_aborted()
                continue
            self._pump_log(final=True)
            self._conclude(code)
        return self._status

    def _conclude(self, code: int) -> None:
        with self._lock:
            if self._status is not None:
                return
            if self._stop_message is not None or self.runner_owns_status:
                self._status = self.backend.get_task(self.task_id).status
                return
            if code == 0:
                self._status = _finish(self.backend, self.task_id, TaskStatus.completed.value)
            else:
                self._status = _finish(
                    self.backend,
                    self.task_id,
                    TaskStatus.failed.value,
                    f"{_describe_exit(code)} (see `agent logs {self.task_id}`)",
                )

    def _check_aborted(self) -> None:
        try:
            status = self.backend.get_task(self.task_id).status
        except Exception:
            return
        if status in {s.value for s in TERMINAL_STATES} and status != TaskStatus.completed.value:
            self._kill()

    def _pump_log(self, final: bool = False) -> None:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = b"" if final else lines.pop()
        text = [ln.decode("utf-8", "replace").rstrip("\r") for ln in lines]
        if final and text and text[-1] == "":
            text.pop()
        if not text:
            return
        self.launcher.emit(self.step, text)
        if not self.runner_owns_status:  # the runner logs its own task's output
            with contextlib.suppress(Exception):
                self.backend.append_logs(self.task_id, text)

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.exit_code.result(timeout=KILL_GRACE_S)
        except FutureTimeout:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def stop(self, message: str = "") -> None:
        with self._lock:
            if self._status is not None:
                return
            self._stop_message = message or "stopped by the pipeline"
        with contextlib.suppress(Exception):
            self.backend.set_status(
                self.task_id,
                TaskStatus.stopped.value,
                message=self._stop_message,
                expected=[IN_PROGRESS, TaskStatus.queued.value, TaskStatus.created.value],
            )
        self._kill()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# -- queues ---------------------------------------------------------------------------------
class QueueLauncher:
    """Remote mode: put each step's task on its queue and watch for its end.

    One watcher thread polls the store for all steps of the pipeline at once
    (``query_tasks(parent=pipeline)``), every ``min_poll`` s while things change,
    backing off to ``max_poll`` s while nothing does. On the embedded store another
    process's status change wakes it at once (``listen_for_changes``, agent.store.bell).
    """

    def __init__(
        self,
        backend: Backend,
        pipeline_id: str,
        default_queue: str | None = None,
        min_poll: float = 0.02,
        max_poll: float = 0.5,
    ):
        self.backend = backend
        self.pipeline_id = pipeline_id
        self.default_queue = default_queue or "default"
        self.min_poll = min_poll
        self.max_poll = max(min_poll, max_poll)
        self._watched: dict[str, Future[str]] = {}
        self._handles: dict[str, QueueHandle] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._poke: Callable[[], None] | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def launch(self, task: Task, node: Node) -> StepHandle:
        queue = node.queue or self.default_queue
        node.queue = queue
        future: Future[str] = Future()
        with self._lock:
            self._watched[task.id] = future
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="step-watcher", daemon=True
                )
                self._thread.start()
        try:
            self.backend.enqueue(task.id, queue)
        except Exception:
            with self._lock:
                self._watched.pop(task.id, None)
            raise
        self._wake_watcher()
        handle = QueueHandle(self, task.id, future)
        with self._lock:
            self._handles[task.id] = handle
        return handle

    def _wake_watcher(self) -> None:
        self._wake.set()
        poke = self._poke
        if poke is not None:
            poke()

    def _watch(self) -> None:
        listen = getattr(self.backend, "listen_for_changes", None)
        with listen() if listen is not None else contextlib.nullcontext() as listener:
            if listener is not None:
                self._poke = listener.poke
            self._watch_loop(listener)

    def _watch_loop(self, listener: Any) -> None:
        delay = self.min_poll
        terminal = [s.value for s in TERMINAL_STATES]
        while not self._closed:
            with self._lock:
                watched = dict(self._watched)
            changed = False
            if watched:
                done: dict[str, str] = {}
                try:
                    for t in self.backend.query_tasks(
                        parent=self.pipeline_id, status=[*terminal, IN_PROGRESS], limit=100000
                    ):
                        if t.id not in watched:
                            continue
                        if t.status == IN_PROGRESS:
                            self._report_running(t.id, t.started)
                        else:
                            done[t.id] = t.status
                except Exception:  # a store hiccup: look again next time
                    done = {}
                # Steps whose parent is not this pipeline (rare) are looked up one by one.
                for task_id in watched:
                    if task_id not in done and len(watched) <= 8:
                        with contextlib.suppress(Exception):
                            status = self.backend.get_task(task_id).status
                            if status in terminal:
                                done[task_id] = status
                for task_id, status in done.items():
                    with self._lock:
                        future = self._watched.pop(task_id, None)
                        self._handles.pop(task_id, None)
                    if future is not None and not future.done():
                        future.set_result(status)
                        changed = True
            delay = self.min_poll if changed else min(delay * 1.5, self.max_poll)
            woke = self._wake.wait(delay) if listener is None else listener.wait(delay)
            if woke:
                self._wake.clear()
                delay = self.min_poll

    def _report_running(self, task_id: str, started: float | None) -> None:
        with self._lock:
            handle = self._handles.get(task_id)
        if handle is not None and handle.on_running is not None:
            callback, handle.on_running = handle.on_running, None
            callback(started)

    def close(self) -> None:
        self._closed = True
        self._wake_watcher()


class QueueHandle:
    """A step waiting on (or running from) a queue."""

    waiting_in_queue = True

    def __init__(self, launcher: QueueLauncher, task_id: str, future: Future[str]):
        self.launcher = launcher
        self.task_id = task_id
        self.future = future
        self.on_running: Any = None  # called once with the start time when an agent runs it

    def wait(self, timeout: float | None = None) -> str | None:
        try:
            return self.future.result(timeout=timeout)
        except FutureTimeout:
            return None

    def stop(self, message: str = "") -> None:
        backend = self.launcher.backend
        with contextlib.suppress(Exception):
            backend.set_status(
                self.task_id,
                TaskStatus.stopped.value,
                message=message or "stopped by the pipeline",
                expected=[TaskStatus.created.value, TaskStatus.queued.value, IN_PROGRESS],
            )
        self.launcher._wake.set()


def launcher_for(
    mode: str,
    backend: Backend,
    pipeline_id: str,
    default_queue: str | None = None,
    pool_frequency: float | None = None,
) -> Launcher:
    """The launcher of a run mode: ``debug`` (in process), ``local`` (child processes) or
    ``remote`` (queues).

    ClearML polls every ``pool_frequency`` minutes; queued steps here are watched every few
    ms (one query for all of them), and ``pool_frequency`` only caps that when shorter.
    """
    if mode == "debug":
        return InProcessLauncher(backend)
    if mode == "local":
        return LocalProcessLauncher(backend)
    max_poll = max(0.01, min(float(pool_frequency or 0.2) * 60.0, 0.05))
    return QueueLauncher(backend, pipeline_id, default_queue, max_poll=max_poll)


def local_parallelism() -> int:
    """How many local step processes run at once: ``AGENT_PIPELINE_MAX_WORKERS``, else
    four times the CPU count (at least 16): short steps wait on the store as much as on
    the CPUs, long ones should not all start at once."""
    value = os.environ.get("AGENT_PIPELINE_MAX_WORKERS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(16, 4 * (os.cpu_count() or 2))
