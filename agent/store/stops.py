"""Waits for running tasks to stop running, inside one process (``wait_for_stop``).

Each task's runner used to read its task every 0.3 s to notice an abort: at a thousand
running tasks, over 3,000 reads a second. Now a process that runs tasks asks one
question for all of them (``Backend.wait_for_stop``: which of these are no longer in
progress?), and the store answers when one of them leaves ``in_progress``:

- a change made through this process's store (``agent server`` is where the fleet's
  aborts and completions arrive) wakes the waits on that task at once, with its status;
- a change made by another process (an ``agent abort`` on the embedded store's file, a
  second server on the same PostgreSQL) is found by :class:`TaskStops`' one poller
  thread, which looks at every waited-for task in one query every :data:`POLL_S`, and
  sooner when the store's bell (:mod:`agent.store.bell`) rings.

A wait runs in a thread (:meth:`TaskStops.waiting`) or as a coroutine on an event loop
(:meth:`TaskStops.waiting_async`: the server's, so that a fleet's waits hold no thread).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from agent.core.errors import NotFound
from agent.core.models import TaskStatus
from agent.store.wakeups import add_waiter, drop_waiter

log = logging.getLogger("agent.store")

#: Seconds between two looks of the poller at the tasks waited for (changes made by
#: other processes); the abort latency when no bell tells of them sooner.
POLL_S = 0.25
#: The task ids one wait may name.
MAX_STOP_IDS = 1000
#: What a wait answers: the tasks no longer in progress, with their status (None: the
#: task does not exist).
Stopped = dict[str, str | None]

_RUNNING = TaskStatus.in_progress.value


class StopWaiter:
    """One wait: the tasks it waits for and what it was told about them."""

    def __init__(self, task_ids: Sequence[str], wake: Callable[[], None]):
        self.task_ids = tuple(dict.fromkeys(task_ids))
        self.stopped: Stopped = {}
        self._wake = wake

    def give(self, stopped: Stopped) -> None:  # the registry's lock is held
        self.stopped.update(stopped)
        self._wake()


class ThreadStopWaiter(StopWaiter):
    def __init__(self, task_ids: Sequence[str]):
        self._event = threading.Event()
        super().__init__(task_ids, self._event.set)

    def wait(self, timeout: float) -> None:
        """Sleep until told of a stop or ``timeout`` seconds pass."""
        self._event.wait(timeout)


class AsyncStopWaiter(StopWaiter):
    def __init__(self, task_ids: Sequence[str]):
        import asyncio

        self._asyncio = asyncio
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        super().__init__(task_ids, self._set)

    def _set(self) -> None:
        with contextlib.suppress(RuntimeError):  # its loop closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> None:
        """As ThreadStopWaiter.wait, on the running event loop."""
        with contextlib.suppress(self._asyncio.TimeoutError):
            await self._asyncio.wait_for(self._event.wait(), timeout)


class TaskStops:
    """The waits of this process by task id, and the poller that looks for them.

    Args:
        look: the statuses of those of the given task ids that are not in progress
            (the store's one query; see :data:`Stopped`).
        listen: a context manager giving a bell listener (``wait(timeout)``, ``poke()``)
            that other processes' status changes wake, or None where there is none.
    """

    def __init__(
        self,
        look: Callable[[list[str]], Stopped],
        listen: Callable[[], AbstractContextManager[Any]],
    ):
        self._look = look
        self._listen = listen
        self._lock = threading.Lock()
        self._waiting: dict[str, list[StopWaiter]] = {}
        self._poller: threading.Thread | None = None
        self._wake_poller: Callable[[], None] = lambda: None

    @contextmanager
    def waiting(self, task_ids: Sequence[str]) -> Iterator[ThreadStopWaiter]:
        """Register a wait in this thread for the block. Register before looking at the
        tasks: a change between the look and the wait then still reaches the waiter."""
        with self._registered(ThreadStopWaiter(task_ids)) as waiter:
            yield waiter

    @contextmanager
    def waiting_async(self, task_ids: Sequence[str]) -> Iterator[AsyncStopWaiter]:
        """As :meth:`waiting`, for a wait on the running event loop."""
        with self._registered(AsyncStopWaiter(task_ids)) as waiter:
            yield waiter

    def changed(self, statuses: Stopped | None = None) -> None:
        """Tasks changed status through this process's store (committed): wake the waits
        on those that left ``in_progress``. None: changes of unknown tasks (a pipeline's
        steps stopped with it), which the poller looks up now."""
        if statuses is None:
            self._wake_poller()
            return
        with self._lock:
            for task_id, status in statuses.items():
                if status != _RUNNING:
                    for waiter in self._waiting.get(task_id, ()):
                        waiter.give({task_id: status})

    @contextmanager
    def _registered(self, waiter: StopWaiter) -> Iterator[StopWaiter]:
        with self._lock:
            add_waiter(self._waiting, waiter.task_ids, waiter)
            if self._poller is None:
                self._poller = threading.Thread(target=self._poll, name="task-stops", daemon=True)
                self._poller.start()
        try:
            yield waiter
        finally:
            with self._lock:
                drop_waiter(self._waiting, waiter.task_ids, waiter)

    def _poll(self) -> None:
        """The poller: one query for every task waited for, until no wait is left."""
        ready = threading.Event()
        with self._listen() as listener:
            self._wake_poller = ready.set if listener is None else listener.poke
            while True:
                if listener is None:
                    ready.wait(POLL_S)
                    ready.clear()
                else:
                    listener.wait(POLL_S)
                with self._lock:
                    if not self._waiting:
                        self._poller = None
                        self._wake_poller = lambda: None
                        return
                    task_ids = list(self._waiting)
                self._look_for(task_ids)

    def _look_for(self, task_ids: list[str]) -> None:
        try:
            stopped = self._look(task_ids)
        except Exception:  # the poller's boundary: the next look tries again
            log.warning("looking for stopped tasks failed", exc_info=True)
            return
        if stopped:
            self.changed(stopped)


def stops_read_one_by_one(store: Any, task_ids: Sequence[str]) -> Stopped:
    """What ``store.wait_for_stop(task_ids, 0)`` answers, from one ``get_task`` per id: for
    an ``agent server`` from before ``wait_for_stop``."""
    statuses: Stopped = {}
    for task_id in task_ids:
        try:
            statuses[task_id] = store.get_task(task_id).status
        except NotFound:
            statuses[task_id] = None
    return {i: s for i, s in statuses.items() if s != _RUNNING}
