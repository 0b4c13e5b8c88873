"""One task end to end: code -> environment -> launch -> monitor -> finish.

The runner owns the task's status from ``in_progress`` on: it ends it as
``completed`` (exit code 0) or ``failed`` (with why in the status message), and
moves it only from ``in_progress`` (``expected=["in_progress"]``), so a task that
someone stopped (``agent abort`` sets ``stopped``) stays stopped. ``run()`` never
raises: every failure becomes a failed task with its reason, details in the log.

Settings read from the ``[agent]`` table of ``agent.toml``: ``keep_workdirs``
(leave ``$AGENT_HOME/work/<task id>`` after the run), ``kill_grace`` (seconds
between SIGTERM and SIGKILL), plus those of :func:`backend_from_settings` and the
git credentials of :class:`~agent.execution.repo.GitCredentials`.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
import re
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agent.config import load_settings
from agent.core.errors import AgentError, Conflict
from agent.core.models import Task, TaskStatus
from agent.execution.backends import ExecutionBackend, Prepared, TaskHandle, backend_from_settings
from agent.execution.env import EnvError, build_env
from agent.execution.repo import (
    GitCredentials,
    RepoCache,
    RepoError,
    git_settings,
    redact,
    register_secret,
)
from agent.execution.requirements import read_requirements_file
from agent.execution.stop_watch import Watched, stop_watch_for
from agent.store.base import Backend

logger = logging.getLogger(__name__)

IN_PROGRESS = TaskStatus.in_progress.value
#: File name of inline code (``task.script.code``) when the task names no entry point.
INLINE_ENTRY_POINT = "task_code.py"
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class EntryPointError(AgentError):
    """The task's script is missing from its code."""


#: Seconds between two appends of one task's log at most (the SDK's Logger flushes as
#: often): a thousand running tasks printing all the time cost their server 2,000 appends
#: a second, not one per line, and a new line still reaches the UI's console (which polls
#: every 0.5 s) within a second.
SHIP_INTERVAL_S = 0.5
#: Lines that are shipped at once, whatever the interval.
SHIP_LINES = 1000
#: A slow append stretches the interval to this many times its duration, up to
#: :data:`MAX_SHIP_INTERVAL_S`: a fleet whose server falls behind sends it fewer, bigger
#: batches instead of queueing more requests than it can answer.
SHIP_BACKOFF = 20
MAX_SHIP_INTERVAL_S = 2.0
#: The stretch follows a moving average of the appends' durations (this weight for the
#: newest), not the last one alone, and is this much longer or shorter at random. A fleet
#: stretched by the last append alone moves as one: a slow moment of the server sends
#: every task to the ceiling at once, and they all come back at once. 1,000 simulated
#: agents (bench/fleet.py, two server processes) sent their appends in waves every
#: 2.2 s, each taking the server's p99 past 400 ms; averaged and jittered, the same
#: fleet got 1,270-1,570 requests/s through at p99 heartbeat 260-330 ms, against
#: 1,130-1,230 at 420-455 ms.
SHIP_AVERAGING = 0.2
SHIP_JITTER = 0.25


class TaskLog:
    """The task's log in the store: agent lines and task output, redacted, batched.

    A line is shipped at once when the previous append is ``ship_interval`` s old, else
    with the lines that follow it once it is (:meth:`flush_if_due`, which the runner calls
    while it watches the task): the first line after a quiet spell shows at once, and a
    chatty task costs its store one append per interval. An append that took long (a
    busy server) makes the next interval :data:`SHIP_BACKOFF` times as long as the
    appends take on average, up to :data:`MAX_SHIP_INTERVAL_S`, give or take
    :data:`SHIP_JITTER`.
    """

    def __init__(self, store: Backend, task_id: str, ship_interval: float = SHIP_INTERVAL_S):
        self.store = store
        self.task_id = task_id
        self.ship_interval = ship_interval
        self._buffer: list[str] = []
        self._next_ship = 0.0
        #: The moving average of the appends' durations (see SHIP_AVERAGING).
        self._took: float | None = None
        self._lock = threading.Lock()
        #: The task's last output lines, to say why it failed.
        self.tail: collections.deque[str] = collections.deque(maxlen=40)

    def __call__(self, line: str) -> None:
        """Add one agent line."""
        logger.debug("task %s: %s", self.task_id, redact(line))
        with self._lock:
            self._buffer.append(redact(line))
            self._ship_if_due_locked()

    def task_lines(self, lines: Iterable[str]) -> None:
        """Add a batch of the task's output."""
        with self._lock:
            redacted = [redact(line) for line in lines]
            self.tail.extend(redacted)
            self._buffer.extend(redacted)
            self._ship_if_due_locked()

    def flush_if_due(self) -> None:
        """Ship what waits, if the interval since the last append has passed."""
        with self._lock:
            self._ship_if_due_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _ship_if_due_locked(self) -> None:
        if time.monotonic() >= self._next_ship or len(self._buffer) >= SHIP_LINES:
            self._flush_locked()

    def _flush_locked(self) -> None:
        lines, self._buffer = self._buffer, []
        if not lines:
            return
        began = time.monotonic()
        try:
            self.store.append_logs(self.task_id, lines)
        except Exception:  # the log is best effort; the run must go on
            logger.exception("cannot store %d log line(s) of task %s", len(lines), self.task_id)
        self._took = averaged(self._took, time.monotonic() - began)
        self._next_ship = began + next_ship_wait(self.ship_interval, self._took)


def averaged(average: float | None, took: float) -> float:
    """The moving average of the appends' durations after one that ``took`` seconds."""
    return took if average is None else average + SHIP_AVERAGING * (took - average)


def next_ship_wait(ship_interval: float, average: float) -> float:
    """Seconds from the start of an append to the next: ``ship_interval``, or
    :data:`SHIP_BACKOFF` times the appends' ``average`` duration when that is longer (at
    most :data:`MAX_SHIP_INTERVAL_S`, give or take :data:`SHIP_JITTER`)."""
    backoff = min(SHIP_BACKOFF * average, MAX_SHIP_INTERVAL_S)
    if backoff > ship_interval:
        backoff *= random.uniform(1 - SHIP_JITTER, 1 + SHIP_JITTER)
    return max(ship_interval, backoff)


@dataclasses.dataclass
class Outcome:
    """How a run ended: the status to set (None: leave it) and its message."""

    status: TaskStatus | None
    message: str = ""
    #: The task's own code set a final status (Task.close / mark_completed) and is
    #: about to exit: let it, rather than kill it mid-shutdown.
    finished_itself: bool = False


class TaskRunner:
    """Runs claimed tasks with one execution backend.

    Args:
        backend_store: the control plane (any :class:`~agent.store.base.Backend`).
        settings: :class:`~agent.config.Settings` of this agent.
        execution_backend: how processes are made (process, venv, docker).
        repo_cache: mirrors of task repositories.
        worker_id: exported to tasks as ``AGENT_WORKER_ID``.
        extra_env: added to every task's environment (``CUDA_VISIBLE_DEVICES`` ...).
        poll_interval: seconds between checks for abort and time limit (both answered
            here: the store tells of aborts through the process's
            :class:`~agent.execution.stop_watch.StopWatch`).
    """

    def __init__(
        self,
        backend_store: Backend,
        settings: Any,
        execution_backend: ExecutionBackend,
        repo_cache: RepoCache,
        worker_id: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        poll_interval: float = 0.2,
    ):
        self.store = backend_store
        self.settings = settings
        self.backend = execution_backend
        self.repo_cache = repo_cache
        self.worker_id = worker_id
        self.extra_env = dict(extra_env or {})
        self.poll_interval = poll_interval
        table = getattr(settings, "agent", None) or {}
        self.kill_grace = float(table.get("kill_grace", 10.0))
        # How long a task that set its own final status may take to exit.
        self.exit_grace = float(table.get("exit_grace", 30.0))
        self.keep_workdirs = bool(table.get("keep_workdirs", False))
        register_secret(getattr(settings, "api_token", None))

    # -- the run ------------------------------------------------------------

    def run(
        self, task_id: str, claim: bool = False, extra_env: Mapping[str, str] | None = None
    ) -> TaskStatus:
        """Run the task to its end and return its final status. Never raises.

        ``claim=False``: the task is already ``in_progress`` (the daemon claimed it).
        ``claim=True``: move a ``created``/``queued`` task to ``in_progress`` first;
        a task in any other state is left alone (and its status returned).
        """
        log = TaskLog(self.store, task_id)
        try:
            task = self.store.get_task(task_id)
            if claim and not self._claim(task, log):
                return self._current_status(task_id)
            return self._run(task, log, {**self.extra_env, **(extra_env or {})})
        except Exception as exc:  # the boundary: a run ends as a failed task, not a crash
            logger.exception("task %s: internal error", task_id)
            log(f"agent internal error: {exc}")
            for line in traceback.format_exc().splitlines():
                log(line)
            log.flush()  # the log is complete when the status says the task ended
            return self._finish(task_id, Outcome(TaskStatus.failed, f"agent internal error: {exc}"))
        finally:
            log.flush()

    def _claim(self, task: Task, log: TaskLog) -> bool:
        try:
            self.store.set_status(task.id, IN_PROGRESS, expected=["created", "queued"])
        except Conflict as exc:
            log(f"not running task {task.id}: {exc}")
            return False
        return True

    def _run(self, task: Task, log: TaskLog, extra_env: Mapping[str, str]) -> TaskStatus:
        workdir = self._workdir(task.id)
        try:
            try:
                cwd, task = self._materialize_code(task, workdir, log)
                prepared = self.backend.prepare(task, cwd, log)
            except (RepoError, EnvError, EntryPointError) as exc:
                log(f"error: {exc}")
                log.flush()
                return self._finish(task.id, Outcome(TaskStatus.failed, str(exc)))
            try:
                outcome = self._launch_and_monitor(task, prepared, log, extra_env)
            finally:
                prepared.release()
            log.flush()
            return self._finish(task.id, outcome)
        finally:
            log.flush()
            if not self.keep_workdirs:
                shutil.rmtree(workdir, ignore_errors=True)

    def _launch_and_monitor(
        self, task: Task, prepared: Prepared, log: TaskLog, extra_env: Mapping[str, str]
    ) -> Outcome:
        watched = stop_watch_for(self.store).watch(task.id)
        try:
            return self._launch_watched(task, prepared, log, extra_env, watched)
        finally:
            watched.close()

    def _launch_watched(
        self,
        task: Task,
        prepared: Prepared,
        log: TaskLog,
        extra_env: Mapping[str, str],
        watched: Watched,
    ) -> Outcome:
        if self._stopped_before_start(task.id):
            log("task was stopped before it started")
            return Outcome(None)
        log(f"starting {' '.join(prepared.argv)} in {prepared.cwd}")
        try:
            handle = self.backend.start(prepared, self._task_env(task, extra_env), log.task_lines)
        except OSError as exc:
            log(f"error: cannot start {' '.join(prepared.argv)}: {exc}")
            return Outcome(TaskStatus.failed, f"cannot start the task: {exc}")
        log.flush()
        outcome = self._monitor(task, handle, log, watched)
        handle.kill_tree(self.kill_grace)  # sweep what the task left running
        return outcome

    def _stopped_before_start(self, task_id: str) -> bool:
        try:
            return bool(self.store.wait_for_stop([task_id]))
        except Exception:  # a store hiccup must not fail a healthy task
            logger.warning("task %s: cannot read its status", task_id, exc_info=True)
            return False

    def _monitor(self, task: Task, handle: TaskHandle, log: TaskLog, watched: Watched) -> Outcome:
        started = time.monotonic()
        while True:
            code = handle.wait(self.poll_interval)
            if code is not None:
                log(f"task process exited with code {code}")
                return _exit_outcome(task.id, code, log.tail)
            log.flush_if_due()
            stop = self._stop_reason(task, started, watched)
            if stop is not None and stop.finished_itself:
                code = handle.wait(self.exit_grace)
                if code is not None:
                    log(f"task process exited with code {code}")
                    return stop
            if stop is not None:
                log(
                    f"{stop.message or 'task was stopped'}: killing it (SIGTERM, SIGKILL after {self.kill_grace:g} s)"
                )
                log.flush()
                handle.kill_tree(self.kill_grace)
                return stop

    def _stop_reason(self, task: Task, started: float, watched: Watched) -> Outcome | None:
        """Why the task must stop now (aborted, time limit), or None."""
        limit = _time_limit(task)
        if limit is not None and time.monotonic() - started > limit:
            return Outcome(
                TaskStatus.failed,
                f"time limit of {limit:g} s exceeded (see `agent logs {task.id}`)",
            )
        if not watched.stopped.is_set():
            return None
        status = watched.status
        if status is None:
            return Outcome(None, "task was deleted")
        finished = status in (TaskStatus.completed.value, TaskStatus.failed.value)
        return Outcome(None, f"task is now {status}", finished_itself=finished)

    def _finish(self, task_id: str, outcome: Outcome) -> TaskStatus:
        if outcome.status is None:
            return self._current_status(task_id)
        try:
            self.store.set_status(
                task_id, outcome.status.value, message=outcome.message, expected=[IN_PROGRESS]
            )
        except Conflict:
            return self._current_status(task_id)  # someone stopped it meanwhile: theirs wins
        except Exception:
            logger.exception("task %s: cannot record status %s", task_id, outcome.status)
        return outcome.status

    def _current_status(self, task_id: str) -> TaskStatus:
        try:
            return TaskStatus(self.store.get_task(task_id).status)
        except Exception:
            logger.exception("task %s: cannot read its status", task_id)
            return TaskStatus.failed

    # -- code ---------------------------------------------------------------

    def _workdir(self, task_id: str) -> Path:
        if not _SAFE_ID.fullmatch(task_id):
            raise ValueError(f"unsafe task id for a directory name: {task_id!r}")
        return Path(self.settings.home) / "work" / task_id

    def _materialize_code(self, task: Task, workdir: Path, log: TaskLog) -> tuple[Path, Task]:
        """Put the task's code in ``workdir``; return its working dir and the task as run."""
        script = task.script
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        if not script.repository and not script.code:
            raise EntryPointError("task has no code: neither a repository nor inline code")
        if script.repository:
            self.repo_cache.checkout(
                script.repository,
                script.commit,
                workdir,
                branch=script.branch or None,
                diff=script.diff,
                log=log,
            )
        cwd = (workdir / (script.working_dir or ".")).resolve()
        if not cwd.is_relative_to(workdir.resolve()):
            raise EntryPointError(f"working dir {script.working_dir!r} is outside the task's code")
        if script.code:
            script = dataclasses.replace(
                script, entry_point=script.entry_point or INLINE_ENTRY_POINT
            )
            cwd.mkdir(parents=True, exist_ok=True)
            (cwd / script.entry_point).write_text(script.code)
        _check_entry_point(script, cwd)
        if not script.requirements and (workdir / "requirements.txt").is_file():
            log("task lists no requirements: using requirements.txt of the repository")
            script = dataclasses.replace(
                script, requirements=read_requirements_file(workdir / "requirements.txt")
            )
        return cwd, dataclasses.replace(task, script=script)

    def _task_env(self, task: Task, extra_env: Mapping[str, str]) -> dict[str, str]:
        env = {"AGENT_TASK_ID": task.id, "AGENT_HOME": str(self.settings.home)}
        optional = {
            "AGENT_WORKER_ID": self.worker_id,
            "AGENT_API_URL": getattr(self.settings, "api_url", None),
            "AGENT_API_TOKEN": getattr(self.settings, "api_token", None),
            "AGENT_FILES_URL": getattr(self.settings, "files_url", None),
        }
        env.update({k: str(v) for k, v in optional.items() if v})
        env.update(extra_env)
        return env


def _check_entry_point(script: Any, cwd: Path) -> None:
    where = (
        f"{redact(script.repository)}@{script.commit[:12]}" if script.repository else "inline code"
    )
    if not script.entry_point:
        raise EntryPointError(f"task names no entry point (code: {where})")
    if not (cwd / script.entry_point).is_file():
        raise EntryPointError(
            f"entry point {script.entry_point!r} not found in working dir {script.working_dir or '.'!r} of {where}"
        )


def _time_limit(task: Task) -> float | None:
    value = (task.runtime or {}).get("time_limit")
    try:
        return float(value) if value not in (None, "", 0) else None
    except (TypeError, ValueError):
        return None


_MISSING_MODULE = re.compile(r"^ModuleNotFoundError: No module named '([^']+)'")


def missing_module_hint(tail: Iterable[str]) -> str:
    """What to do about a ``ModuleNotFoundError`` among the task's last lines ("" if none)."""
    for line in reversed(list(tail)):
        match = _MISSING_MODULE.match(line.strip())
        if match:
            module = match.group(1).split(".")[0]
            from agent.execution.requirements import distribution_name

            return (
                f"No module named {module!r}: the task's environment holds only its "
                f"requirements; declare it (packages=['{distribution_name(module)}'], "
                "Task.add_requirements, or the repository's requirements.txt)"
            )
    return ""


def _exit_outcome(task_id: str, code: int, tail: Iterable[str] = ()) -> Outcome:
    if code == 0:
        return Outcome(TaskStatus.completed)
    if code < 0:
        try:
            why = f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            why = f"killed by signal {-code}"
    else:
        why = f"exit code {code}"
    hint = missing_module_hint(tail)
    return Outcome(
        TaskStatus.failed, f"{why}{': ' + hint if hint else ''} (see `agent logs {task_id}`)"
    )


# -- entry points for the CLI -------------------------------------------------


def repo_cache_from_settings(settings: Any) -> RepoCache:
    """The ``vcs-cache`` of ``$AGENT_HOME`` with the configured git credentials."""
    return RepoCache(
        Path(settings.home) / "vcs-cache",
        GitCredentials.from_settings(settings),
        force_ssh=bool(git_settings(settings).get("force_ssh", False)),
    )


def execute_task(
    store: Backend,
    task_id: str,
    no_env: bool = False,
    settings: Any = None,
    worker_id: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    adopt: bool = False,
) -> TaskStatus:
    """``agent execute --id``: run one task here and now; return its final status.

    A ``created``/``queued`` task is moved to ``in_progress`` first. One already in
    progress runs only with ``adopt=True`` (a daemon claimed it and hands it over,
    e.g. into a container); otherwise it is left to whoever runs it.

    Raises:
        NotFound: no such task.
    """
    settings = settings or load_settings()
    runner = TaskRunner(
        store,
        settings,
        backend_from_settings(settings, no_env=no_env),
        repo_cache_from_settings(settings),
        worker_id=worker_id,
        extra_env=extra_env,
    )
    adopting = adopt and store.get_task(task_id).status == IN_PROGRESS
    return runner.run(task_id, claim=not adopting)


def build_env_only(
    store: Backend, task_id: str, target_dir: str | Path, settings: Any = None, log: Any = print
) -> Path:
    """``agent build --id ID --target DIR``: the task's venv at ``target_dir``; its python.

    Raises:
        EnvError: the requirements cannot be installed.
        NotFound: no such task.
    """
    settings = settings or load_settings()
    table = getattr(settings, "agent", None) or {}
    task = store.get_task(task_id)
    return build_env(
        Path(target_dir),
        task.script.requirements,
        package_manager=str(table.get("package_manager", "uv")),
        log=log,
        find_links=table.get("find_links"),
        index_url=table.get("index_url"),
        no_index=bool(table.get("no_index", False)),
    )
