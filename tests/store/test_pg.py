"""PgPool: SqlBackend's raw psycopg connections on a real PostgreSQL.

What a pool of long-lived connections must survive: the server dropping a connection
while it sits idle, and a fork.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from agent.core.models import Task
from agent.store import pg as pg_module
from agent.store import statements as q
from agent.store import wakeups
from agent.store.sql import SqlBackend
from agent.store.tx import AlchemyTx
from tests.services import drop_pg_database, fresh_pg_database, postgres_url, require

pytestmark = pytest.mark.postgres


@pytest.fixture
def backend() -> Iterator[SqlBackend]:
    base = postgres_url()
    require("PostgreSQL", base is not None)
    url = fresh_pg_database(base)
    store = SqlBackend(url)
    yield store
    store.close()
    drop_pg_database(url)


def _idle_backend_pids(store: SqlBackend) -> list[int]:
    return [conn.info.backend_pid for conn, _ in store._pg._idle]


def _terminate(store: SqlBackend, pids: list[int]) -> None:
    with psycopg.connect(store._pg.conninfo, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_connection_dropped_while_idle_is_replaced_unnoticed(backend, monkeypatch) -> None:
    task = backend.create_task(Task(name="a", project="p"))
    pids = _idle_backend_pids(backend)
    assert pids
    _terminate(backend, pids)
    monkeypatch.setattr(pg_module, "PING_AFTER_IDLE_S", 0.0)  # as if idle a while
    assert backend.get_task(task.id).name == "a"
    assert not set(_idle_backend_pids(backend)) & set(pids)


def test_a_connection_dropped_just_after_use_is_replaced_unnoticed(backend) -> None:
    # Not pinged (used a moment ago): the first statement finds it gone and runs again.
    task = backend.create_task(Task(name="a", project="p"))
    pids = _idle_backend_pids(backend)
    _terminate(backend, pids)
    assert backend.get_task(task.id).name == "a"
    backend.set_status(task.id, "queued")
    assert not set(_idle_backend_pids(backend)) & set(pids)


def test_other_database_errors_keep_the_connection(backend) -> None:
    task = backend.create_task(Task(name="a", project="p"))
    pids = _idle_backend_pids(backend)
    for conn, _ in backend._pg._idle:  # wait a moment for a row lock, then fail
        conn.execute("SET lock_timeout = '100ms'")
        conn.commit()
    with psycopg.connect(backend._pg.conninfo) as holder:
        holder.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (task.id,))
        with pytest.raises(psycopg.errors.LockNotAvailable):  # an OperationalError
            backend.update_task(task.id, runtime={"k": 1})
    assert _idle_backend_pids(backend) == pids
    assert backend.get_task(task.id).runtime == {}  # rolled back


def test_threads_starting_at_once_share_one_pool(backend, monkeypatch) -> None:
    task = backend.create_task(Task(name="a", project="p"))
    fresh = SqlBackend(backend.url)
    made = []
    original = pg_module.PgPool.__init__

    def counting(self, *args, **kwargs):
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(pg_module.PgPool, "__init__", counting)
    barrier = threading.Barrier(8)

    def read() -> str:
        barrier.wait()
        return fresh.get_task(task.id).name

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda _: read(), range(8))) == ["a"] * 8
    assert len(made) == 1
    fresh.close()


def test_rows_read_raw_are_the_rows_sqlalchemy_reads(backend) -> None:
    task = backend.create_task(
        Task(
            name="j",
            project="p",
            hyperparams={"Args": {"x": 1.5, "s": "text", "n": None, "l": [1, {"a": 2}]}},
            runtime={"str": "just a string", "none": None},
        )
    )
    raw = backend.get_task(task.id)
    with backend.engine.connect() as conn:
        through_alchemy = AlchemyTx(conn, q.named("postgresql")).first("TASK", {"task_id": task.id})
    assert raw.hyperparams == through_alchemy["hyperparams"] == task.hyperparams
    assert raw.runtime == through_alchemy["runtime"] == {"str": "just a string", "none": None}
    assert raw.created == through_alchemy["created"] and isinstance(raw.created, float)


def test_a_forked_child_opens_its_own_connections(backend) -> None:
    task = backend.create_task(Task(name="a", project="p"))
    parent_pids = _idle_backend_pids(backend)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's verdict is its exit code
        try:
            child = backend.create_task(Task(name="child", project="p"))
            fresh = not set(_idle_backend_pids(backend)) & set(parent_pids)
            os._exit(0 if fresh and backend.get_task(child.id).name == "child" else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert backend.get_task(task.id).name == "a"
    assert _idle_backend_pids(backend) == parent_pids


def test_an_enqueue_by_another_process_wakes_a_waiting_claim(backend, monkeypatch) -> None:
    """Another store object has connections of its own (other backend pids): its enqueue
    reaches this one's claim as a notification, not by polling (slowed to an hour)."""
    monkeypatch.setattr(wakeups, "LISTENING_POLL_S", 3600.0)
    other = SqlBackend(backend.url)
    backend.hears_enqueues()  # starts the listener
    while not backend.hears_enqueues():
        time.sleep(0.01)
    got: list[Task | None] = []
    claimer = threading.Thread(target=lambda: got.append(backend.claim(["notified"], "w", 30)))
    claimer.start()
    time.sleep(0.3)  # let the claim wait (the test holds either way)
    task = other.create_task(Task(name="n", project="p"), queue="notified")
    claimer.join(timeout=40)
    assert got and got[0] is not None and got[0].id == task.id
    other.close()


def test_own_enqueues_are_not_heard_twice(backend) -> None:
    heard: list[str] = []
    listener = backend.enqueue_listener()
    listener.on_enqueue = heard.append
    listener.connect()
    other = SqlBackend(backend.url)
    backend.create_task(Task(name="mine", project="p"), queue="own")  # woke its claims already
    other.create_task(Task(name="theirs", project="p"), queue="theirs")
    for _ in range(1000):  # notifications come in commit order: "mine" first, if at all
        listener.read()
        if heard:
            break
        time.sleep(0.01)
    assert heard == ["theirs"]
    other.close()
