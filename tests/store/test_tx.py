"""SqliteTx runs SqlBackend's statements on raw sqlite3 with SQLAlchemy's results.

Each check writes through one kind of transaction and reads through both, on one
SQLite file, so a difference in encoding (JSON columns, defaults, expanded ``IN``
lists) shows as a difference in what comes back.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from agent.core.models import Task
from agent.store import schema as t
from agent.store import statements as q
from agent.store.sql import _task_to_row
from agent.store.tx import AlchemyTx, SqlitePool


@pytest.fixture
def db(tmp_path) -> Iterator[tuple[SqlitePool, object]]:
    path = tmp_path / "tx.db"
    engine = create_engine(f"sqlite:///{path}")
    t.metadata.create_all(engine)
    pool = SqlitePool(str(path))
    yield pool, engine
    pool.close()
    engine.dispose()


def _row(task_id: str) -> dict:
    row = _task_to_row(
        Task(
            id=task_id,
            name="n",
            project="p",
            tags=["a", "b"],
            hyperparams={"Args": {"x": 1, "y": [1, 2]}},
            runtime={"k": {"nested": None}},
        )
    )
    row.update(status="created", created=1.0, last_update=1.0)
    return row


def _read_both(db, stmt, params) -> tuple[dict | None, dict | None]:
    pool, engine = db
    with pool.transaction("DEFERRED") as raw:
        a = raw.first(stmt, params)
    with engine.begin() as conn:
        b = AlchemyTx(conn).first(stmt, params)
    return a, b


@pytest.mark.parametrize("writer", ["raw", "alchemy"])
def test_a_task_row_reads_back_the_same_through_both(db, writer: str) -> None:
    pool, engine = db
    row = _row(f"task-{writer}")
    if writer == "raw":
        with pool.transaction("IMMEDIATE") as tx:
            tx.run(q.INSERT_TASK, row)
    else:
        with engine.begin() as conn:
            AlchemyTx(conn).run(q.INSERT_TASK, row)
    raw, alchemy = _read_both(db, q.TASK, {"task_id": row["id"]})
    assert raw == alchemy
    assert raw["hyperparams"] == {"Args": {"x": 1, "y": [1, 2]}}
    assert raw["tags"] == ["a", "b"] and raw["runtime"] == {"k": {"nested": None}}


def test_an_update_sets_only_the_columns_given(db) -> None:
    pool, _ = db
    row = _row("upd")
    with pool.transaction("IMMEDIATE") as tx:
        tx.run(q.INSERT_TASK, row)
        tx.run(q.UPDATE_TASK, {"task_id": "upd", "status": "queued"})
        tx.run(q.UPDATE_TASK, {"task_id": "upd", "runtime": {"r": 1}, "comment": "c"})
        returned = tx.first(q.UPDATE_TASK_RETURNING, {"task_id": "upd", "worker": "w"})
    raw, alchemy = _read_both(db, q.TASK, {"task_id": "upd"})
    assert raw == alchemy == returned
    assert (raw["status"], raw["runtime"], raw["comment"], raw["worker"]) == (
        "queued",
        {"r": 1},
        "c",
        "w",
    )
    assert raw["tags"] == ["a", "b"]  # untouched


def test_expanding_in_lists_and_many_rows(db) -> None:
    pool, engine = db
    with pool.transaction("IMMEDIATE") as tx:
        tx.run(q.INSERT_TASK, _row("e1"))
        tx.run(
            t.queues.insert(),
            [{"id": f"q{i}", "name": f"queue-{i}", "created": 0.0} for i in range(3)],
        )
        tx.run(q.INSERT_ENTRY, {"queue_id": "q2", "task_id": "e1", "priority": 0, "enqueued": 0.0})
    for names, found in ((["queue-0"], False), (["queue-0", "queue-1", "queue-2"], True)):
        raw, alchemy = _read_both(db, q.ANY_ENTRY, {"queues": names})
        assert (raw is not None) is found and (alchemy is not None) is found
    with pool.transaction("IMMEDIATE") as tx:
        assert tx.scalar(q.take_head("sqlite"), {"queue": "queue-2"}) == "e1"
        assert tx.scalar(q.take_head("sqlite"), {"queue": "queue-2"}) is None


def test_an_error_rolls_back_and_the_connection_is_reused(db) -> None:
    pool, _ = db
    with pytest.raises(RuntimeError), pool.transaction("IMMEDIATE") as tx:
        tx.run(q.INSERT_TASK, _row("rolled-back"))
        raise RuntimeError("boom")
    assert [c.in_transaction for c in pool._idle] == [False]  # put back, rolled back
    with pool.transaction("IMMEDIATE") as tx:
        assert tx.first(q.TASK, {"task_id": "rolled-back"}) is None
        tx.run(q.INSERT_TASK, _row("rolled-back"))  # the id is free: nothing was kept
    assert len(pool._idle) == 1


def test_a_forked_child_does_not_reuse_the_parents_connections(db) -> None:
    pool, _ = db
    with pool.transaction("DEFERRED"):
        pass
    parent_conn = pool._idle[0]
    pool.forget()
    with pool.transaction("DEFERRED") as tx:
        assert tx.conn is not parent_conn
