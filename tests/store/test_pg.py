"""PgPool: SqlBackend's raw psycopg connections on a real PostgreSQL.

What a pool of long-lived connections must survive: the server dropping a connection
while it sits idle, and a fork.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from agent.core.models import Task
from agent.store import pg as pg_module
from agent.store.sql import SqlBackend
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


def test_a_dropped_connection_in_use_fails_once_and_clears_the_pool(backend) -> None:
    task = backend.create_task(Task(name="a", project="p"))
    _terminate(backend, _idle_backend_pids(backend))
    with pytest.raises(psycopg.OperationalError):
        backend.get_task(task.id)  # just used: not pinged
    assert backend._pg._idle == []
    assert backend.get_task(task.id).name == "a"


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
