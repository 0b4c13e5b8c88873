"""Store calls written as ordinary blocking code, run on an event loop without a thread.

``agent server`` on PostgreSQL used to hand each store call (a create, a claim, a
task's end, a heartbeat) to a worker thread and wait for it: the store code is
synchronous, and the same code serves the SDK, the CLI and the daemon. The hand-off and
the threads' fight for the GIL with the event loop cost about 0.6 ms of the server's
2.1 ms of CPU per task cycle, and a query's answer waited for its thread to get the GIL
back from a busy loop.

:func:`run` runs such a call in a greenlet on the loop's own thread instead. Where the
store code waits on PostgreSQL it calls :func:`resolve` on what psycopg gave it: a
connection from the store's pool (:class:`agent.store.pg.PgPool`) is then a psycopg
``AsyncConnection``, so its calls give coroutines, and :func:`resolve` hands each one to
the loop, which awaits it while it serves other requests, and resumes the greenlet with
the result (or raises the error in it). Outside :func:`run` nothing changes: the pool
gives blocking connections and :func:`resolve` returns what it is given. One
implementation of every statement, its checks and its fallbacks, in both worlds; this is
how SQLAlchemy's asyncio layer runs its synchronous core.

The rule for code run this way: it must not block. Everything it waits on goes through
:func:`resolve` (the pool's connections, its slot semaphore); a blocking call (a lock
held by another thread for long, a file, SQLAlchemy's engine) would stall every request
of the server. The server therefore runs only the store calls whose PostgreSQL path is
the pool's (see ``agent.server.fast``).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

try:
    import greenlet
except ImportError:  # pragma: no cover - a declared dependency; threads do the work then
    greenlet = None  # type: ignore[assignment]


def available() -> bool:
    """Whether store calls can run on the loop here (greenlet is importable)."""
    return greenlet is not None


if greenlet is not None:

    class _StoreCall(greenlet.greenlet):
        """The greenlet of one store call run by :func:`run`; ``abandoned`` once the loop
        gave up on it (its coroutine was closed, not cancelled)."""

        abandoned = False

else:  # pragma: no cover
    _StoreCall = None  # type: ignore[assignment,misc]


def active() -> bool:
    """True inside a store call run by :func:`run` (its waits go to the loop)."""
    return greenlet is not None and isinstance(greenlet.getcurrent(), _StoreCall)


class Abandoned(BaseException):
    """Raised inside a store call whose coroutine was closed while it waited (a loop torn
    down without cancelling its tasks): its clean-up runs, but nothing is awaited."""


async def run(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, run on this event loop's thread: its waits on PostgreSQL are
    awaited on the loop, which goes on serving meanwhile. Its result or error is this
    coroutine's; a cancellation is raised inside it where it waits (the pool closes a
    connection left in the middle of something)."""
    call = _StoreCall(fn, greenlet.getcurrent())
    pending = call.switch(*args)
    while not call.dead:
        try:
            result = await pending
        except GeneratorExit:
            call.abandoned = True
            try:  # its clean-up, as far as it goes without waiting
                call.throw(Abandoned())
            except BaseException:  # noqa: BLE001, S110 - the loop gave up on its outcome
                pass
            raise
        except BaseException as exc:  # noqa: BLE001 - every error belongs to the call
            pending = call.throw(exc)
        else:
            pending = call.switch(result)
    return pending


def resolve(value: Any) -> Any:
    """``value``, or, for a coroutine (an async connection's call inside :func:`run`),
    its result, awaited by the event loop."""
    if type(value) is not types.CoroutineType:
        return value
    current = greenlet.getcurrent() if greenlet is not None else None
    if not isinstance(current, _StoreCall):
        value.close()
        raise RuntimeError("an async database call outside a store call run on the loop")
    if current.abandoned:
        value.close()
        raise Abandoned()
    return current.parent.switch(value)
