"""Noticing that running tasks were stopped: one question to the store per process.

Every runner of a process (a daemon's slots, a services host's services, ``agent
execute``) watches its task through the process's :class:`StopWatch` of that store,
which keeps one long-poll (``Backend.wait_for_stop``) open for all of them: a daemon
asks nothing while its tasks run, and hears of an abort the moment the store does.
Where a runner used to read its task every 0.3 s, a thousand running tasks cost their
server about one request each per task start and per :data:`LONG_POLL_S`.

When the watched set grows (a task starts), a new poll covering every watched task
starts at once; the previous one ends at its next answer. A task that ends by itself
answers its own poll (its completion is a status change), so an idle daemon holds no
poll open.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any

from agent.core.errors import NotFound
from agent.store.stops import stops_read_one_by_one

log = logging.getLogger(__name__)

#: Seconds one long-poll waits for a stop; then the next one is sent.
LONG_POLL_S = 30.0
#: Seconds before asking again after a failed poll (a store hiccup).
RETRY_S = 1.0
#: Seconds between polls of a store that has no ``wait_for_stop`` (an older server).
LEGACY_POLL_S = 0.3


class Watched:
    """One watched task; ``stopped`` is set once it is no longer in progress."""

    def __init__(self, watch: StopWatch, task_id: str):
        self.task_id = task_id
        self.stopped = threading.Event()
        #: Its status once stopped (None: the task no longer exists).
        self.status: str | None = None
        self._watch = watch

    def close(self) -> None:
        """Stop watching (the run ended)."""
        self._watch.forget(self)


class StopWatch:
    """The long-poll for the running tasks of one store in this process.

    Args:
        store: the control plane (``wait_for_stop``).
        long_poll_s: how long one poll waits.
    """

    def __init__(self, store: Any, long_poll_s: float = LONG_POLL_S):
        self.store = store
        self.long_poll_s = long_poll_s
        self._lock = threading.Lock()
        self._watched: dict[str, Watched] = {}
        self._generation = 0
        self._legacy = False

    def watch(self, task_id: str) -> Watched:
        """Watch ``task_id`` until :meth:`Watched.close`."""
        watched = Watched(self, task_id)
        with self._lock:
            self._watched[task_id] = watched
            self._generation += 1
            generation = self._generation
        thread = threading.Thread(
            target=self._poll, args=(generation,), name=f"stop-watch-{task_id[:8]}", daemon=True
        )
        thread.start()
        return watched

    def forget(self, watched: Watched) -> None:
        with self._lock:
            if self._watched.get(watched.task_id) is watched:
                del self._watched[watched.task_id]

    def _poll(self, generation: int) -> None:
        """Poll until a newer poll took over or nothing is left to watch."""
        while True:
            with self._lock:
                task_ids = [i for i, w in self._watched.items() if not w.stopped.is_set()]
                if generation != self._generation or not task_ids:
                    return
            try:
                stopped = self._ask(task_ids)
            except Exception:  # the poll's boundary: a hiccup must not blind the runners
                log.warning("cannot ask the store whether tasks stopped", exc_info=True)
                threading.Event().wait(RETRY_S)
                continue
            self._deliver(stopped)

    def _ask(self, task_ids: list[str]) -> dict[str, str | None]:
        if not self._legacy:
            try:
                return self.store.wait_for_stop(task_ids, timeout=self.long_poll_s)
            except NotFound:  # an agent server from before wait_for_stop: no such endpoint
                log.warning("the store has no wait_for_stop: polling each running task")
                self._legacy = True
        threading.Event().wait(LEGACY_POLL_S)
        return stops_read_one_by_one(self.store, task_ids)

    def _deliver(self, stopped: dict[str, str | None]) -> None:
        with self._lock:
            for task_id, status in stopped.items():
                watched = self._watched.get(task_id)
                if watched is not None and not watched.stopped.is_set():
                    watched.status = status
                    watched.stopped.set()


_WATCHES: weakref.WeakKeyDictionary[Any, tuple[int, StopWatch]] = weakref.WeakKeyDictionary()
_WATCHES_LOCK = threading.Lock()


def stop_watch_for(store: Any) -> StopWatch:
    """This process's StopWatch of ``store`` (a forked child makes its own)."""
    with _WATCHES_LOCK:
        found = _WATCHES.get(store)
        if found is None or found[0] != os.getpid():
            found = (os.getpid(), StopWatch(store))
            _WATCHES[store] = found
        return found[1]
