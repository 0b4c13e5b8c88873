"""SqlBackend.append_logs_many: several log appends in one store call, answered as if
made one after another (the server's log lane stores its batches with it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from agent.core.errors import NotFound
from agent.core.models import Task
from agent.store import pg as pg_module
from agent.store.sql import SqlBackend
from tests.store.test_pg import _statements_run


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[SqlBackend]:
    if request.param == "postgres":
        yield request.getfixturevalue("pg_store")
        return
    backend = SqlBackend(f"sqlite:///{tmp_path / 'agent.db'}")
    yield backend
    backend.close()


def _texts(store: SqlBackend, task_id: str) -> list[tuple[int, str]]:
    return [(line.seq, line.text) for line in store.get_logs(task_id)]


def test_each_append_is_answered_as_if_alone(store: SqlBackend) -> None:
    a = store.create_task(Task(name="a", project="p")).id
    b = store.create_task(Task(name="b", project="p")).id
    store.append_logs(b, ["b0"])
    answers = store.append_logs_many(
        [(a, ["a1", "a2"]), (b, [(1.5, "error", "b1")]), ("nope", ["x"]), (a, ["a3"]), (b, [])]
    )
    assert answers[:2] == [2, 2]
    assert isinstance(answers[2], NotFound)
    assert answers[3:] == [3, 2]
    assert _texts(store, a) == [(1, "a1"), (2, "a2"), (3, "a3")]
    assert _texts(store, b) == [(1, "b0"), (2, "b1")]
    assert store.get_logs(b)[1].level == "error"


def test_appends_past_the_cap_answer_as_one_by_one_would(store: SqlBackend) -> None:
    """A log that reaches its cap takes the general path: the lines up to the cap, and
    the marker counting the dropped ones; the other appends of the batch are unchanged."""
    store.max_log_lines = 5
    made = [store.create_task(Task(name=f"t{n}", project="p")).id for n in range(4)]
    batched, alone = made[:2], made[2:]
    for task_id in made:
        store.append_logs(task_id, ["0", "1", "2"])
    appends = [(0, ["3", "4", "5"]), (1, ["3"]), (0, ["6"]), (1, ["4", "5", "6"])]
    answers = store.append_logs_many([(batched[n], lines) for n, lines in appends])
    one_by_one = [store.append_logs(alone[n], lines) for n, lines in appends]
    assert answers == one_by_one == [5, 4, 5, 5]
    for mine, theirs in zip(batched, alone, strict=True):
        assert _texts(store, mine) == _texts(store, theirs)
    assert "dropped" in _texts(store, batched[0])[-1][1]


@pytest.mark.postgres
def test_on_postgresql_a_batch_is_one_statement(pg_store: SqlBackend, monkeypatch) -> None:
    tasks = [pg_store.create_task(Task(name=f"t{n}", project="p")).id for n in range(20)]
    names = _statements_run(pg_store, monkeypatch)
    answers = pg_store.append_logs_many([(t, [f"{t}:{i}" for i in range(3)]) for t in tasks])
    assert names == ["APPEND_LOGS_MANY"]
    assert answers == [3] * 20
    for task_id in tasks:
        assert _texts(pg_store, task_id) == [(i + 1, f"{task_id}:{i}") for i in range(3)]


@pytest.mark.postgres
def test_an_append_of_a_task_at_the_same_moment_sends_the_batch_one_by_one(
    pg_store: SqlBackend, monkeypatch
) -> None:
    """Another connection appends to one of the batch's tasks while the batch waits for
    that task's row: the batch's snapshot missed the line, the statement fails on the
    key, and every append of the batch goes in on the general path, after that line."""
    a = pg_store.create_task(Task(name="a", project="p")).id
    b = pg_store.create_task(Task(name="b", project="p")).id
    with psycopg.connect(pg_store._pg_pool().conninfo) as other:
        other.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (a,))
        names = _statements_run(pg_store, monkeypatch)
        answers: list = []
        batch = threading.Thread(
            target=lambda: answers.extend(pg_store.append_logs_many([(b, ["b1"]), (a, ["a2"])]))
        )
        batch.start()
        time.sleep(0.5)  # the statement has its snapshot and waits for a's row
        other.execute(
            "INSERT INTO logs (task_id, seq, ts, level, text) VALUES (%s, 1, 0, 'info', 'a1')",
            (a,),
        )
        other.commit()
        batch.join(30)
    assert answers == [1, 2]
    assert names[0] == "APPEND_LOGS_MANY" and len(names) > 1
    assert _texts(pg_store, a) == [(1, "a1"), (2, "a2")]
    assert _texts(pg_store, b) == [(1, "b1")]


@pytest.mark.postgres
def test_a_batch_refused_as_a_deadlock_goes_in_one_by_one(
    pg_store: SqlBackend, monkeypatch
) -> None:
    """PostgreSQL picked the batch as a deadlock's victim (a write locking the same
    tasks in another order): nothing of it was committed, so each append goes alone."""
    a = pg_store.create_task(Task(name="a", project="p")).id
    b = pg_store.create_task(Task(name="b", project="p")).id
    original = pg_module.PgTx._execute

    def execute(self, name, params):
        if name == "APPEND_LOGS_MANY":
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return original(self, name, params)

    monkeypatch.setattr(pg_module.PgTx, "_execute", execute)
    assert pg_store.append_logs_many([(a, ["a1"]), ("gone", ["x"]), (b, ["b1", "b2"])])[::2] == [
        1,
        2,
    ]
    assert _texts(pg_store, a) == [(1, "a1")] and _texts(pg_store, b) == [(1, "b1"), (2, "b2")]


@pytest.mark.postgres
def test_a_batch_whose_connection_was_lost_is_not_sent_again(
    pg_store: SqlBackend, monkeypatch
) -> None:
    """Lost after it was sent, the batch may have been committed: every append hears
    the error, none is sent a second time."""
    a = pg_store.create_task(Task(name="a", project="p")).id
    original = pg_module.PgTx._execute

    def execute(self, name, params):
        if name == "APPEND_LOGS_MANY":
            original(self, name, params)
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return original(self, name, params)

    monkeypatch.setattr(pg_module.PgTx, "_execute", execute)
    with pytest.raises(psycopg.OperationalError):
        pg_store.append_logs_many([(a, ["once"]), (a, ["twice"])])
    assert _texts(pg_store, a) == [(1, "once"), (2, "twice")]
