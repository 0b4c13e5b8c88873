"""The daemon loop: claim a task from the queues, hand it to a runner, repeat.

The loop knows nothing of *how* a task runs: a ``runner_factory`` makes an object with
``run(task_id)`` (``agent.execution.runner.TaskRunner``) that takes an already-claimed
task to its end and never raises. The loop owns the rest: the worker record and its
heartbeats (which renew the running tasks' leases), the reaping of tasks whose worker
vanished, the claim order, the slots (up to ``slots`` tasks run at once, each in its own
runner thread; a claim happens only while a slot is free), and the stop signals (warm:
finish the running tasks, cold: abort them). ``services_mode``'s host is such a loop.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

from agent.core.errors import Conflict, NotFound
from agent.core.models import Task, TaskStatus
from agent.daemon.kill import TreeKill, tree_of
from agent.daemon.signals import StopSignals
from agent.daemon.stats import MachineStats
from agent.store.base import DEFAULT_LEASE_S, Backend

log = logging.getLogger(__name__)

#: Status message of a task aborted because its agent was stopped.
AGENT_STOPPED = "agent stopped"
#: Seconds between two heartbeats of a daemon (at most a third of its lease).
DEFAULT_HEARTBEAT_S = 5.0
#: Seconds one claim of an idle daemon long-polls. An enqueue ends the wait at once and
#: a stop interrupts it (Backend.interrupt_claims), so this only sets how often an idle
#: daemon asks again: a thousand idle daemons make 33 requests a second, not 1,000.
DEFAULT_CLAIM_TIMEOUT_S = 30.0
#: Seconds between two looks at the stop signals while a claim long-polls.
STOP_CHECK_S = 0.1


class TaskRunnerLike(Protocol):
    def run(self, task_id: str) -> Any:
        """Run a claimed (in_progress) task to its end; never raises."""


RunnerFactory = Callable[[], TaskRunnerLike]


def default_worker_id(pid: int | None = None) -> str:
    """``hostname:pid``: unique per daemon on a machine, readable in ``agent workers``."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


class Heartbeat:
    """The worker record: register, beat every ``interval_s`` (renewing leases), unregister.

    ``beat_if_due`` is safe from several threads: the daemon's loop calls it between claims
    and a background thread calls it while a task runs.
    """

    def __init__(
        self,
        store: Backend,
        worker_id: str,
        queues: Sequence[str],
        interval_s: float = 5.0,
        lease_s: float = DEFAULT_LEASE_S,
        stats: MachineStats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.worker_id = worker_id
        self.queues = list(queues)
        self.interval_s = interval_s
        self.lease_s = lease_s
        self.stats = stats or MachineStats()
        self.clock = clock
        self._last: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self) -> None:
        self.store.register_worker(self.worker_id, self.queues, stats=self.collect_stats())
        self._last = self.clock()

    def collect_stats(self) -> dict[str, Any]:
        """The machine's stats, and this worker's heartbeat interval: readers of the store
        tell a live worker from a vanished one by it (see :mod:`agent.store.serving`)."""
        return {**self.stats.collect(), "heartbeat_s": self.interval_s}

    def beat(self, now: float | None = None) -> None:
        """Report stats and renew the leases of this worker's running tasks."""
        with self._lock:
            stats = self.collect_stats()
            try:
                self.store.heartbeat(self.worker_id, stats, lease_s=self.lease_s)
            except NotFound:
                # The record was removed (a store reset, an admin): register again.
                self.store.register_worker(self.worker_id, self.queues, stats=stats)
            self._last = self.clock() if now is None else now

    def beat_if_due(self, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        if self._last is not None and now - self._last < self.interval_s:
            return False
        try:
            self.beat(now)
        except Exception:  # loop boundary: a failed beat is retried at the next one
            log.exception("heartbeat of worker %s failed", self.worker_id)
            return False
        return True

    def start_thread(self) -> None:
        """Beat in the background (while the loop's thread is busy running a task)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat_forever, name="heartbeat", daemon=True)
        self._thread.start()

    def _beat_forever(self) -> None:
        tick = min(1.0, self.interval_s / 2)
        while not self._stop.wait(tick):
            self.beat_if_due()

    def stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def unregister(self) -> None:
        try:
            self.store.unregister_worker(self.worker_id)
        except Exception as exc:  # exit path: the record just ages out of `agent workers`
            log.warning("could not unregister worker %s: %s", self.worker_id, exc)
        self.stats.close()


class Daemon:
    """Claims tasks from ``queues`` and runs up to ``slots`` of them at a time.

    Args:
        store: the control plane.
        queues: queue names, in priority order (the first is drained first).
        worker_id: this worker's id (default ``hostname:pid``).
        runner_factory: makes the runner of one task (``run(task_id)``, never raises).
        order_fairness: round robin: after a claim, the queue it came from goes last.
        lease_s: lease of a claimed task; heartbeats renew it.
        heartbeat_s: seconds between heartbeats.
        claim_timeout_s: long-poll of one claim (a stop interrupts it).
        reap_s: seconds between sweeps that fail tasks of vanished workers.
        abort_grace_s: on a cold stop, seconds between SIGTERM and SIGKILL of the task.
        clock: monotonic clock (inject one in tests).
        signals: stop flags (installed as signal handlers by :meth:`run`).
        slots: how many tasks run at once (each in a thread of this process).
    """

    def __init__(
        self,
        store: Backend,
        queues: Sequence[str],
        worker_id: str | None = None,
        runner_factory: RunnerFactory | None = None,
        order_fairness: bool = False,
        lease_s: float = DEFAULT_LEASE_S,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        claim_timeout_s: float = DEFAULT_CLAIM_TIMEOUT_S,
        reap_s: float = 30.0,
        abort_grace_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        signals: StopSignals | None = None,
        stats: MachineStats | None = None,
        slots: int = 1,
    ):
        if slots < 1:
            raise ValueError("a daemon needs at least one slot")
        if not queues:
            raise ValueError("a daemon needs at least one queue")
        if runner_factory is None:
            raise ValueError("a daemon needs a runner_factory")
        self.store = store
        self.queues = list(queues)
        self.worker_id = worker_id or default_worker_id()
        self.runner_factory = runner_factory
        self.order_fairness = order_fairness
        self.lease_s = lease_s
        self.claim_timeout_s = claim_timeout_s
        self.reap_s = reap_s
        self.abort_grace_s = abort_grace_s
        self.clock = clock
        self.signals = signals or StopSignals()
        self.heartbeat = Heartbeat(
            store, self.worker_id, self.queues, heartbeat_s, lease_s, stats, clock
        )
        self._claim_order = list(self.queues)
        #: Runs the long-polling claims, so that the loop's thread can watch the signals.
        self._claimer = ThreadPoolExecutor(1, thread_name_prefix="claim")
        self._last_reap: float | None = None
        self._noted_warm = self._noted_cold = False
        self.tasks_run = 0
        self.slots = slots
        #: Runner threads of the tasks that run now, by task id.
        self.task_threads: dict[str, threading.Thread] = {}
        self._task_ended = threading.Event()
        self._abort: TreeKill | None = None

    # -- one iteration ------------------------------------------------------------
    def loop_once(self, now: float | None = None) -> str | None:
        """Heartbeat and reap when due, claim one task and start it, then wait until a
        slot is free (with one slot: until the task ended). Returns its id, or None."""
        now = self.clock() if now is None else now
        self.heartbeat.beat_if_due(now)
        self.reap_if_due(now)
        self.collect_finished()
        if self.signals.stopping:
            return None
        task_id = self.claim_next()
        if task_id is None:
            return None
        self.run_task(task_id)
        return task_id

    def claim_next(self, timeout: float | None = None) -> str | None:
        """Claim the next task (long-polling up to ``timeout``); rotate queues if fair."""
        timeout = self.claim_timeout_s if timeout is None else timeout
        try:
            task = self._claim(timeout)
        except Exception:  # loop boundary: a store hiccup must not end the daemon
            log.exception("claim from %s failed", self._claim_order)
            return None
        if task is None:
            return None
        log.info("claimed task %s (%s) from queue %s", task.id, task.name, task.queue)
        if self.order_fairness:
            self._rotate(task.queue)
        return task.id

    def _claim(self, timeout: float) -> Task | None:
        """The store's claim; a long poll runs in the claimer thread while this one
        watches the stop signals, and a stop interrupts it (a task it took meanwhile
        is returned, and runs: a warm stop finishes it)."""
        claim = functools.partial(
            self.store.claim, list(self._claim_order), self.worker_id, timeout, self.lease_s
        )
        if timeout <= 0:
            return claim()
        future = self._claimer.submit(claim)
        interrupted = False
        while True:
            try:
                return future.result(STOP_CHECK_S)
            except FutureTimeout:
                if self.signals.stopping and not interrupted:
                    self.store.interrupt_claims()
                    interrupted = True

    def _rotate(self, queue: str | None) -> None:
        order = self._claim_order
        if queue in order:
            order.remove(queue)
            order.append(queue)
        elif order:
            order.append(order.pop(0))

    def reap_if_due(self, now: float) -> None:
        if self._last_reap is not None and now - self._last_reap < self.reap_s:
            return
        self._last_reap = now
        try:
            reaped = self.store.reap_expired()
        except Exception:  # loop boundary
            log.exception("reaping expired leases failed")
            return
        for task_id in reaped:
            log.warning("task %s lost its worker: failed", task_id)

    # -- running tasks ----------------------------------------------------------------
    def run_task(self, task_id: str) -> None:
        """Start the task in a runner thread, then wait until a slot is free; meanwhile
        the loop's thread watches the stop signals (a cold stop aborts the tasks)."""
        runner = self.runner_factory()
        thread = threading.Thread(
            target=self._run_guarded, args=(runner, task_id), name=f"task-{task_id[:8]}"
        )
        self.task_threads[task_id] = thread
        self.tasks_run += 1
        thread.start()
        self.wait_for_tasks(self.slots - 1)

    def _run_guarded(self, runner: TaskRunnerLike, task_id: str) -> None:
        try:
            runner.run(task_id)
        except Exception:  # loop boundary: runners should never raise, but if one does...
            log.exception("runner of task %s raised", task_id)
            fail_if_running(self.store, task_id, "agent error while running the task")
        finally:
            self._task_ended.set()

    def wait_for_tasks(self, at_most: int) -> None:
        """Wait until at most ``at_most`` tasks run, noting stop requests and aborting every
        running task on a cold stop."""
        while True:
            self.collect_finished()
            if len(self.task_threads) <= at_most:
                return
            self.note_stop(", ".join(self.task_threads))
            if self.signals.cold and self._abort is None:
                self._abort = self.abort_running()
            if self._abort is not None:
                self._abort.poll()
            self._task_ended.wait(0.1)
            self._task_ended.clear()

    def collect_finished(self) -> list[str]:
        """Forget the runner threads that ended; their task ids."""
        done = [task_id for task_id, t in self.task_threads.items() if not t.is_alive()]
        for task_id in done:
            self.task_threads.pop(task_id).join()
        return done

    def abort_running(self) -> TreeKill:
        """Cold stop: mark every running task stopped, then kill their process trees.

        The statuses go first, so the runners (which watch them) do not report the kills
        as failures. The tasks' processes are this process's only children.
        """
        for task_id in list(self.task_threads):
            try:
                mark_stopped(self.store, task_id, AGENT_STOPPED)
            except Exception:  # loop boundary: kill the task even when the store is away
                log.exception("could not mark task %s stopped", task_id)
        return TreeKill(tree_of(os.getpid(), include_root=False), self.abort_grace_s, self.clock)

    def note_stop(self, task_id: str | None = None) -> None:
        """Log (once per kind) that a stop was asked for; signal handlers cannot log."""
        if self.signals.warm and not self._noted_warm:
            self._noted_warm = True
            running = f"finishing task {task_id}, then " if task_id else ""
            log.info("warm stop: %sexiting (signal again to abort)", running)
        if self.signals.cold and not self._noted_cold:
            self._noted_cold = True
            log.warning("cold stop: aborting running work and exiting")

    # -- the whole life -------------------------------------------------------------
    def start(self) -> None:
        """Create the queues, register the worker, start heartbeating."""
        for name in self.queues:
            self.store.create_queue(name)
        self.heartbeat.register()
        self.heartbeat.start_thread()
        log.info("worker %s serving queues %s", self.worker_id, ", ".join(self.queues))

    def drain(self) -> None:
        """Wait for the tasks still running when the loop ends (abort them on a cold stop)."""
        if self.task_threads:
            log.info("waiting for %d running task(s)", len(self.task_threads))
        self.wait_for_tasks(0)

    def stop(self) -> None:
        close = getattr(self.runner_factory, "close", None)
        if close is not None:
            close()  # its warm-start zygotes, ...
        self._claimer.shutdown(wait=False)
        self.heartbeat.stop_thread()
        self.heartbeat.unregister()
        log.info("worker %s stopped after %d task(s)", self.worker_id, self.tasks_run)

    def run(self, install_signals: bool = True, max_tasks: int | None = None) -> int:
        """Loop until a stop signal (or ``max_tasks`` runs); returns the exit code (0)."""
        try:
            if install_signals:
                self.signals.install()
            self.start()
            while not self.signals.stopping:
                if max_tasks is not None and self.tasks_run >= max_tasks:
                    break
                self.loop_once()
            self.note_stop()
            self.drain()
        finally:
            self.stop()
            if install_signals:
                self.signals.restore()
        return 0


def fail_if_running(store: Backend, task_id: str, message: str) -> bool:
    """Fail the task with ``message`` unless it already reached an end state."""
    try:
        store.set_status(
            task_id, TaskStatus.failed.value, message, expected=[TaskStatus.in_progress.value]
        )
    except (Conflict, NotFound):
        return False
    return True


def mark_stopped(store: Backend, task_id: str, message: str) -> bool:
    """Move a running task to ``stopped``; False when it already ended."""
    try:
        store.set_status(
            task_id, TaskStatus.stopped.value, message, expected=[TaskStatus.in_progress.value]
        )
    except (Conflict, NotFound):
        log.info("task %s already finished; nothing to abort", task_id)
        return False
    return True
