"""Store calls run on an event loop (agent.store.on_loop), as ``agent server`` runs them
on PostgreSQL: the bridge itself, and PgPool's async connections on a real PostgreSQL.

What it must hold: a call's result and errors are the caller's; a call that waits on
PostgreSQL (a row lock) leaves the loop free for the others; the loop's connections are
bounded, survive being dropped while idle and are closed with the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psycopg
import pytest

from agent.core.errors import Conflict
from agent.core.models import Task
from agent.store import on_loop
from agent.store import pg as pg_module
from agent.store.sql import SqlBackend


# -- the bridge ------------------------------------------------------------------------
def test_a_call_gives_its_result_after_its_waits() -> None:
    def call(x: int) -> tuple[int, bool]:
        first = on_loop.resolve(_later(x))
        second = on_loop.resolve(_later(first + 1))
        return second, on_loop.active()

    assert asyncio.run(on_loop.run(call, 1)) == (2, True)
    assert not on_loop.active()


def test_an_error_inside_is_the_callers_and_a_waits_error_is_raised_where_it_waits() -> None:
    def fails_in_wait() -> str:
        try:
            on_loop.resolve(_raises(KeyError("inside")))
        except KeyError as exc:
            return f"caught {exc}"
        return "not raised"

    def fails() -> None:
        raise Conflict("task t is 'queued'")

    assert asyncio.run(on_loop.run(fails_in_wait)) == "caught 'inside'"
    with pytest.raises(Conflict, match="queued"):
        asyncio.run(on_loop.run(fails))


def test_calls_waiting_at_once_wait_side_by_side() -> None:
    def sleeps() -> float:
        return on_loop.resolve(_sleep(0.3))

    async def main() -> float:
        start = time.monotonic()
        await asyncio.gather(*(on_loop.run(sleeps) for _ in range(5)))
        return time.monotonic() - start

    assert asyncio.run(main()) < 1.2  # one after another would be 1.5 s


def test_a_cancelled_call_is_cancelled_where_it_waits() -> None:
    seen = []

    def waits() -> None:
        try:
            on_loop.resolve(_sleep(30))
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def main() -> None:
        task = asyncio.ensure_future(on_loop.run(waits))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == ["cancelled"]


def test_outside_a_call_values_pass_and_a_coroutine_is_refused() -> None:
    assert on_loop.resolve(3) == 3
    coroutine = _later(1)
    with pytest.raises(RuntimeError, match="outside a store call"):
        on_loop.resolve(coroutine)
    assert coroutine.cr_frame is None  # closed: no "never awaited" warning


async def _later(x: int) -> int:
    await asyncio.sleep(0)
    return x


async def _raises(exc: BaseException) -> None:
    await asyncio.sleep(0)
    raise exc


async def _sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


# -- PgPool on the loop ----------------------------------------------------------------
@pytest.fixture
def backend(pg_store: SqlBackend) -> SqlBackend:
    return pg_store


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _on(loop: asyncio.AbstractEventLoop, fn, *args):
    return loop.run_until_complete(on_loop.run(fn, *args))


def _loop_side(store: SqlBackend, loop: asyncio.AbstractEventLoop):
    return store._pg._loops[loop]


pg = pytest.mark.postgres


@pg
def test_a_task_cycle_on_the_loop_uses_async_connections_only(backend, loop) -> None:
    backend.create_queue("q")  # the queue and project known: the one-statement create
    backend.create_project("p")
    before = len(backend._pg._threads.idle)
    task = _on(loop, backend.create_task, Task(name="a", project="p"), "q")
    claimed = _on(loop, backend.claim, ["q"], "w1")
    assert claimed.id == task.id and claimed.status == "in_progress"
    backend.register_worker("w1", ["q"])
    assert _on(loop, backend.heartbeat, "w1", {"cpu": 1.0}).tasks == [task.id]
    assert _on(loop, backend.append_logs, task.id, ["one", "two"]) == 2
    assert _on(loop, backend.stopped_tasks, [task.id]) == {}
    done = _on(loop, backend.set_status, task.id, "completed")
    assert done.status == "completed"
    assert _on(loop, backend.stopped_tasks, [task.id]) == {task.id: "completed"}
    idle = [conn for conn, _ in _loop_side(backend, loop).idle]
    assert idle and all(isinstance(conn, psycopg.AsyncConnection) for conn in idle)
    assert len(backend._pg._threads.idle) == before  # no blocking connection was taken
    assert [line.text for line in backend.get_logs(task.id)] == ["one", "two"]


@pg
def test_a_call_waiting_for_a_row_lock_leaves_the_loop_to_the_others(backend, loop) -> None:
    backend.create_project("p")
    locked = backend.create_task(Task(name="locked", project="p"))
    other = backend.create_task(Task(name="other", project="p"))
    holder = psycopg.connect(backend._pg.conninfo)
    holder.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (locked.id,))

    async def main() -> list[str]:
        order: list[str] = []

        async def change(task_id: str, label: str) -> None:
            await on_loop.run(backend.set_status, task_id, "queued")
            order.append(label)

        blocked = asyncio.ensure_future(change(locked.id, "locked"))
        await asyncio.sleep(0.2)
        await change(other.id, "other")  # answered while the first still waits
        assert not blocked.done()
        await loop.run_in_executor(None, holder.rollback)
        await blocked
        return order

    try:
        assert loop.run_until_complete(main()) == ["other", "locked"]
    finally:
        holder.close()
    assert backend.get_task(locked.id).status == "queued"


@pg
def test_the_loops_connections_are_bounded(backend, loop, monkeypatch) -> None:
    monkeypatch.setattr(pg_module, "LOOP_CONNECTIONS", 3)
    backend.create_project("p")
    tasks = [backend.create_task(Task(name=f"t{i}", project="p")) for i in range(12)]
    pids: set[int] = set()

    def change(task_id: str) -> str:
        with backend._pg.transaction() as tx:
            pids.add(tx.conn.info.backend_pid)
            tx.first("TASK", {"task_id": task_id})
            on_loop.resolve(asyncio.sleep(0.05))  # every call holds its connection a while
        return backend.set_status(task_id, "queued").status

    async def main() -> list[str]:
        return await asyncio.gather(*(on_loop.run(change, t.id) for t in tasks))

    assert loop.run_until_complete(main()) == ["queued"] * 12
    assert len(pids) <= 3
    assert len(_loop_side(backend, loop).idle) <= 3


@pg
def test_a_loop_connection_dropped_while_idle_is_replaced(backend, loop, monkeypatch) -> None:
    backend.create_project("p")
    task = backend.create_task(Task(name="a", project="p"))
    assert _on(loop, backend.get_task, task.id).name == "a"
    pids = [conn.info.backend_pid for conn, _ in _loop_side(backend, loop).idle]
    assert pids
    with psycopg.connect(backend._pg.conninfo, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    monkeypatch.setattr(pg_module, "PING_AFTER_IDLE_S", 0.0)  # as if idle a while
    assert _on(loop, backend.set_status, task.id, "queued").status == "queued"
    now = {conn.info.backend_pid for conn, _ in _loop_side(backend, loop).idle}
    assert now and not now & set(pids)


@pg
def test_an_error_on_the_loop_rolls_back_and_keeps_the_connection(backend, loop) -> None:
    backend.create_project("p")
    task = backend.create_task(Task(name="a", project="p"))
    _on(loop, backend.get_task, task.id)
    pids = [conn.info.backend_pid for conn, _ in _loop_side(backend, loop).idle]
    with pytest.raises(Conflict, match="expected one of"):
        _on(loop, backend.set_status, task.id, "in_progress", None, ["queued"])
    assert [conn.info.backend_pid for conn, _ in _loop_side(backend, loop).idle] == pids
    assert backend.get_task(task.id).status == "created"


@pg
def test_closing_the_store_closes_the_loops_connections(backend, loop) -> None:
    backend.create_project("p")
    task = backend.create_task(Task(name="a", project="p"))
    _on(loop, backend.get_task, task.id)
    conns = [conn for conn, _ in _loop_side(backend, loop).idle]
    assert conns
    backend.close()
    assert all(conn.closed for conn in conns)
    assert backend.get_task(task.id).name == "a"  # a later call opens new ones


class _Pause:
    """An awaitable that suspends once: a coroutine driven by hand stops at it."""

    def __await__(self):
        yield
        return 1


async def _paused() -> int:
    return await _Pause()


def test_a_call_whose_coroutine_is_closed_cleans_up_without_waiting() -> None:
    cleanup = []

    def call() -> None:
        try:
            on_loop.resolve(_paused())
        finally:
            try:
                on_loop.resolve(_paused())  # a rollback, say: not awaited any more
            except on_loop.Abandoned:
                cleanup.append("abandoned")

    coroutine = on_loop.run(call)
    coroutine.send(None)  # suspended in the first wait
    coroutine.close()  # a loop torn down without cancelling: no "ignored GeneratorExit"
    assert cleanup == ["abandoned"]


@pg
def test_a_cancelled_call_gives_back_its_slot_and_leaves_no_connection_behind(
    backend, loop, monkeypatch
) -> None:
    monkeypatch.setattr(pg_module, "LOOP_CONNECTIONS", 1)
    backend.create_project("p")
    locked = backend.create_task(Task(name="locked", project="p"))
    holder = psycopg.connect(backend._pg.conninfo)
    holder.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (locked.id,))

    async def main() -> str:
        waiting = asyncio.ensure_future(on_loop.run(backend.set_status, locked.id, "queued"))
        await asyncio.sleep(0.2)  # in the middle of its statement, waiting for the lock
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return (await on_loop.run(backend.get_task, locked.id)).status  # the one slot is free

    try:
        assert loop.run_until_complete(main()) == "created"
    finally:
        holder.close()
    idle = _loop_side(backend, loop).idle + backend._pg._threads.idle
    open_pids = {conn.info.backend_pid for conn, _ in idle}
    assert backend._pg.backend_pids == open_pids  # none of a closed connection


@pg
def test_the_connections_of_a_closed_loop_are_closed_when_another_loop_comes(
    backend, monkeypatch
) -> None:
    monkeypatch.setattr(pg_module, "LOOP_CONNECTIONS", 1)
    backend.create_project("p")
    task = backend.create_task(Task(name="a", project="p"))

    async def contended() -> None:  # the semaphore waits once: it holds on to its loop
        await asyncio.gather(*(on_loop.run(backend.get_task, task.id) for _ in range(2)))

    first = asyncio.new_event_loop()
    first.run_until_complete(contended())
    conns = [conn for conn, _ in _loop_side(backend, first).idle]
    first.close()
    second = asyncio.new_event_loop()
    try:
        assert _on(second, backend.get_task, task.id).name == "a"
        assert list(backend._pg._loops) == [second]
        assert conns and all(conn.closed for conn in conns)
    finally:
        second.close()
