"""Wake-ups of long-polling claims inside one process.

An enqueue wakes exactly one claimer waiting on that task's queue, not every waiting
claimer: with eight idle daemons, one new task must not send eight of them to the
database. Claimers still poll on a backoff (:class:`PollBackoff`), which covers enqueues
made by other processes and a wake-up whose task another claimer took first. On
PostgreSQL, other processes' enqueues come as wake-ups too (:mod:`agent.store.pg_notify`),
and while they do claims poll only every :data:`LISTENING_POLL_S`.

A claimer waits in a thread (:meth:`ClaimSignals.waiting`) or as a coroutine on an event
loop (:meth:`ClaimSignals.waiting_async`, the server's claims on SQLite); an enqueue
wakes either kind, from any thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

#: Pauses between two looks at the queues of a waiting claim (seconds).
POLL_MIN_S, POLL_MAX_S = 0.005, 0.05
#: The longest pause while other processes' enqueues wake claims (PostgreSQL's
#: LISTEN/NOTIFY): polling then only covers what a notification could miss.
#: ``AGENT_LISTENING_POLL_S`` sets it (seconds).
LISTENING_POLL_S = float(os.environ.get("AGENT_LISTENING_POLL_S") or 2.0)
#: How long a look that found queues empty is believed, while every enqueue is heard
#: (:meth:`ClaimSignals.known_empty`): a bound on anything a notification could miss.
EMPTY_TRUST_S = 1.0


def add_waiter(waiting: dict[str, list[Any]], keys: Sequence[str], waiter: Any) -> None:
    """List ``waiter`` under each of ``keys`` in ``waiting`` (its registry's lock held)."""
    for key in keys:
        waiting.setdefault(key, []).append(waiter)


def drop_waiter(waiting: dict[str, list[Any]], keys: Sequence[str], waiter: Any) -> None:
    """Undo :func:`add_waiter`, leaving no key without waiters."""
    for key in keys:
        waiters = waiting[key]
        waiters.remove(waiter)
        if not waiters:
            del waiting[key]


class PollBackoff:
    """Pauses of a waiting claim: ``first`` (5 ms) doubling up to ``longest`` (50 ms),
    never past the deadline; while other processes' enqueues wake the claim
    (``listening``), :data:`LISTENING_POLL_S` each."""

    def __init__(
        self,
        deadline: float,
        first: float | None = None,
        longest: float | None = None,
        listening: bool = False,
    ):
        self.deadline = deadline  # time.monotonic()
        # The module's values as they are now (read at each wait, not at import).
        default_first, default_longest = (
            (LISTENING_POLL_S, LISTENING_POLL_S) if listening else (POLL_MIN_S, POLL_MAX_S)
        )
        self._pause = default_first if first is None else first
        self.longest = default_longest if longest is None else longest

    def next_pause(self) -> float | None:
        """How long to wait before the next look; None once the deadline has passed."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        pause, self._pause = min(self._pause, remaining), min(self._pause * 2, self.longest)
        return pause


class ClaimWaiter:
    """One waiting claim: the queues it takes from and the wake-ups it was given."""

    def __init__(self, queues: Sequence[str], lock: threading.Lock, wake: Callable[[], None]):
        self.queues = tuple(dict.fromkeys(queues))
        self._lock = lock
        self._wake = wake
        #: Queue names of the wake-ups given to this waiter and not used yet.
        self._wakeups: list[str] = []

    def take(self) -> list[str]:
        """The queues of the wake-ups received since the last call (each: a task enqueued)."""
        with self._lock:
            wakeups, self._wakeups = self._wakeups, []
            self._clear()
        return wakeups

    def hand_on(self, wakeups: list[str]) -> None:
        """Wake-ups this claimer will not use: they go to other waiters when it stops waiting."""
        with self._lock:
            self._wakeups.extend(wakeups)

    def _give(self, queue: str) -> None:  # the lock is held
        self._wakeups.append(queue)
        self._wake()

    def _clear(self) -> None:  # the lock is held
        raise NotImplementedError


class ThreadClaimWaiter(ClaimWaiter):
    """A claim waiting in a thread; with a listener (agent.store.bell), other processes'
    enqueues wake it too, and this process's wake-ups go through the listener."""

    def __init__(self, queues: Sequence[str], lock: threading.Lock, listener: Any = None):
        self._event = threading.Event()
        self._listener = listener
        super().__init__(queues, lock, self._event.set if listener is None else listener.poke)

    def wait(self, timeout: float) -> bool:
        """Sleep until a wake-up comes (True) or ``timeout`` seconds pass (False)."""
        if self._listener is None:
            return self._event.wait(timeout)
        return self._listener.wait(timeout)

    def _clear(self) -> None:
        if self._listener is None:
            self._event.clear()
        else:
            self._listener.drain()


class AsyncClaimWaiter(ClaimWaiter):
    """A claim waiting as a coroutine on the running event loop."""

    def __init__(self, queues: Sequence[str], lock: threading.Lock):
        self._event = _asyncio().Event()
        self._loop = _asyncio().get_running_loop()
        self._loop_thread = threading.get_ident()
        super().__init__(queues, lock, self._set)

    async def wait(self, timeout: float, until: Any = None) -> None:
        """Sleep until a wake-up comes, ``timeout`` seconds pass or the future ``until``
        (when given) is done."""
        asyncio = _asyncio()
        woken = asyncio.ensure_future(self._event.wait())
        ends = (woken,) if until is None else (woken, until)
        try:
            await asyncio.wait(ends, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()

    def _set(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._event.set()
        else:  # an asyncio.Event is set on its own loop (a late set: one needless look)
            self._loop.call_soon_threadsafe(self._event.set)

    def _clear(self) -> None:
        self._event.clear()  # take() runs on the loop


W = TypeVar("W", bound=ClaimWaiter)


class ClaimSignals:
    """The claimers waiting in this process, by queue, and the wake-ups sent to them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[ClaimWaiter]] = {}
        #: Per queue, the enqueues signalled so far that no waiter was woken for (see
        #: :meth:`seen_empty`); and the times every queue was (:meth:`wake_all`).
        self._unheeded: dict[str, int] = {}
        self._all_unheeded = 0
        #: Queues a look found empty, and when, with no task since that no waiter will
        #: look for.
        self._empty: dict[str, float] = {}

    @contextmanager
    def waiting(self, queues: Sequence[str], listener: Any = None) -> Iterator[ThreadClaimWaiter]:
        """Register a claim waiting in this thread for the duration of the block (waking
        through ``listener`` when given, see ThreadClaimWaiter).

        Register before looking at the queues: an enqueue between the look and the wait
        then still reaches the waiter.
        """
        with self._registered(ThreadClaimWaiter(queues, self._lock, listener)) as waiter:
            yield waiter

    @contextmanager
    def waiting_async(self, queues: Sequence[str]) -> Iterator[AsyncClaimWaiter]:
        """As :meth:`waiting`, for a claim waiting on the running event loop."""
        with self._registered(AsyncClaimWaiter(queues, self._lock)) as waiter:
            yield waiter

    def notify(self, queue: str) -> None:
        """A task was enqueued on ``queue``: wake one claimer waiting on it, if any."""
        with self._lock:
            self._wake_one(queue)

    def signalled(self, queues: Sequence[str]) -> tuple[int, ...]:
        """Where the enqueues on ``queues`` that woke nobody stand: taken before a look,
        for :meth:`seen_empty` after it."""
        with self._lock:
            return (self._all_unheeded, *(self._unheeded.get(name, 0) for name in queues))

    def seen_empty(self, queues: Sequence[str], before: tuple[int, ...]) -> None:
        """A look at ``queues`` took nothing; ``before`` is :meth:`signalled` from just
        before it. A queue is then empty as far as this process knows, but for tasks
        whose wake-ups waiting claimers hold (they will look): unless an enqueue on it
        woke nobody since."""
        stamp = time.monotonic()
        with self._lock:
            if before[0] != self._all_unheeded:
                return
            for name, count in zip(queues, before[1:], strict=True):
                if self._unheeded.get(name, 0) == count:
                    self._empty[name] = stamp

    def known_empty(self, queues: Sequence[str]) -> float:
        """For how many more seconds every one of ``queues`` is known empty (0: not
        known): each was found empty by a look in the last :data:`EMPTY_TRUST_S`, and
        every task enqueued on it since woke a waiting claimer (which looks for it, and
        hands its wake-up on if it leaves without). A new claim on them can wait that
        long without a look of its own. Only for a process that hears every enqueue
        (PostgreSQL's notifications)."""
        trusted = time.monotonic() - EMPTY_TRUST_S
        with self._lock:
            oldest = min((self._empty.get(name, 0.0) for name in queues), default=0.0)
        return max(0.0, oldest - trusted)

    def forget_empty(self, queues: Sequence[str]) -> None:
        """The queues are not known empty any more (a look at them failed)."""
        with self._lock:
            for name in queues:
                self._empty.pop(name, None)

    def wake_all(self) -> None:
        """Wake every waiting claimer, to look at all its queues (enqueues may have gone
        unheard: a listener that just connected)."""
        with self._lock:
            self._empty.clear()
            self._all_unheeded += 1
            for waiter in {id(w): w for ws in self._waiting.values() for w in ws}.values():
                for name in waiter.queues:
                    if name not in waiter._wakeups:
                        waiter._give(name)

    @contextmanager
    def _registered(self, waiter: W) -> Iterator[W]:
        with self._lock:
            add_waiter(self._waiting, waiter.queues, waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                drop_waiter(self._waiting, waiter.queues, waiter)
                unused, waiter._wakeups = waiter._wakeups, []
                for name in unused:
                    self._wake_one(name)

    def _wake_one(self, queue: str) -> None:  # the lock is held
        waiters = self._waiting.get(queue)
        if not waiters:
            # The next claim looks at the database first: the queue is not known empty.
            self._unheeded[queue] = self._unheeded.get(queue, 0) + 1
            self._empty.pop(queue, None)
            return
        # The longest-waiting claimer without a wake-up to use; else the first one,
        # which hands the extra wake-up on when it stops waiting.
        idle = next((w for w in waiters if not w._wakeups), waiters[0])
        idle._give(queue)


def _asyncio():
    import asyncio  # here, not at the top: only the server waits as a coroutine

    return asyncio
