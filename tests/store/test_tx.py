"""SqliteTx runs SqlBackend's named statements on raw sqlite3 with SQLAlchemy's results.

Each check writes through one kind of transaction and reads through both, on one
SQLite file, so a difference in encoding (JSON columns, defaults, expanded ``IN``
lists) shows as a difference in what comes back. The catalog SqliteTx runs from must
be what SQLAlchemy compiles today.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from agent.core.models import Task
from agent.store import schema as t
from agent.store import sqlite_catalog
from agent.store import statements as q
from agent.store.sql import SqlBackend
from agent.store.sql_tasks import _task_to_row
from agent.store.tx import AlchemyTx, SqlitePool

NAMED = q.named("sqlite")


def alchemy(conn) -> AlchemyTx:
    return AlchemyTx(conn, NAMED)


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
    row.update(status="created", created=1.0, last_update=1.0, lease_expires=None)
    return row


def _read_both(db, stmt, params) -> tuple[dict | None, dict | None]:
    pool, engine = db
    with pool.transaction("DEFERRED") as raw:
        a = raw.first(stmt, params)
    with engine.begin() as conn:
        b = alchemy(conn).first(stmt, params)
    return a, b


@pytest.mark.parametrize("writer", ["raw", "alchemy"])
def test_a_task_row_reads_back_the_same_through_both(db, writer: str) -> None:
    pool, engine = db
    row = _row(f"task-{writer}")
    if writer == "raw":
        with pool.transaction("IMMEDIATE") as tx:
            tx.run("INSERT_TASK", row)
    else:
        with engine.begin() as conn:
            alchemy(conn).run("INSERT_TASK", row)
    raw, through_alchemy = _read_both(db, "TASK", {"task_id": row["id"]})
    assert raw == through_alchemy
    assert raw["hyperparams"] == {"Args": {"x": 1, "y": [1, 2]}}
    assert raw["tags"] == ["a", "b"] and raw["runtime"] == {"k": {"nested": None}}


def test_full_row_updates_and_a_claim_read_back_the_same(db) -> None:
    pool, _ = db
    row = _row("upd")
    update = {k: row[k] for k in q.TASK_COLUMNS if k != "id"}
    claim = {**dict.fromkeys(q.CLAIM_COLUMNS, None), "status_message": "claimed"}
    with pool.transaction("IMMEDIATE") as tx:
        tx.run("INSERT_TASK", row)
        tx.run("UPDATE_TASK", {**update, "runtime": {"r": 1}, "comment": "c", "task_id": "upd"})
        returned = tx.first(
            "CLAIM_TASK",
            {**claim, "status": "in_progress", "worker": "w", "last_update": 2.0, "task_id": "upd"},
        )
    raw, through_alchemy = _read_both(db, "TASK", {"task_id": "upd"})
    assert raw == through_alchemy == returned
    assert (raw["status"], raw["runtime"], raw["comment"], raw["worker"]) == (
        "in_progress",
        {"r": 1},
        "c",
        "w",
    )
    assert raw["tags"] == ["a", "b"] and raw["status_message"] == "claimed"


def test_expanding_in_lists_and_many_rows(db) -> None:
    pool, engine = db
    with pool.transaction("IMMEDIATE") as tx:
        tx.run("INSERT_TASK", _row("e1"))
        tx.run(
            "INSERT_QUEUE",
            [{"id": f"q{i}", "name": f"queue-{i}", "created": 0.0} for i in range(3)],
        )
        tx.run("INSERT_ENTRY", {"queue_id": "q2", "task_id": "e1", "priority": 0, "enqueued": 0.0})
    for names, found in ((["queue-0"], False), (["queue-0", "queue-1", "queue-2"], True)):
        raw, through_alchemy = _read_both(db, "ANY_ENTRY", {"queues": names})
        assert (raw is not None) is found and (through_alchemy is not None) is found
    with pool.transaction("IMMEDIATE") as tx:
        assert tx.scalar("TAKE_HEAD", {"queue": "queue-2"}) == "e1"
        assert tx.scalar("TAKE_HEAD", {"queue": "queue-2"}) is None


def test_an_error_rolls_back_and_the_connection_is_reused(db) -> None:
    pool, _ = db
    with pytest.raises(RuntimeError), pool.transaction("IMMEDIATE") as tx:
        tx.run("INSERT_TASK", _row("rolled-back"))
        raise RuntimeError("boom")
    assert [c.in_transaction for c in pool._idle] == [False]  # put back, rolled back
    with pool.transaction("IMMEDIATE") as tx:
        assert tx.first("TASK", {"task_id": "rolled-back"}) is None
        tx.run("INSERT_TASK", _row("rolled-back"))  # the id is free: nothing was kept
    assert len(pool._idle) == 1


def test_a_forked_child_opens_its_own_connections(tmp_path) -> None:
    backend = SqlBackend(f"sqlite:///{tmp_path}/fork.db")
    first = backend.create_task(Task(name="a", project="p"))
    inherited = list(backend._raw._idle)
    assert inherited
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's verdict is its exit code
        try:
            fresh = not backend._raw._idle
            child = backend.create_task(Task(name="child", project="p"))
            used = backend._raw._idle
            ok = fresh and backend.get_task(child.id).name == "child"
            os._exit(0 if ok and not set(map(id, used)) & set(map(id, inherited)) else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert backend.get_task(first.id).name == "a"  # the parent's connection still works
    assert [t.name for t in backend.query_tasks(project="p")] == ["child", "a"]


@pytest.mark.parametrize("suffix", ["a%20b.db", "opts.db?timeout=5"])
def test_sqlite_urls_name_the_file_sqlalchemy_opens(tmp_path, suffix: str) -> None:
    # The raw connections and SQLAlchemy's must open the same file.
    backend = SqlBackend(f"sqlite:///{tmp_path}/{suffix}")
    task = backend.create_task(Task(name="n", project="p"))
    assert [t.id for t in backend.query_tasks(project="p")] == [task.id]
    backend.close()
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        suffix.split("?")[0].replace("%20", " ")
    ]


def test_the_catalog_is_what_sqlalchemy_compiles_now() -> None:
    ddl, statements = q.sqlite_catalog()
    assert sqlite_catalog.DDL == ddl, "run: python -m agent.store.statements"
    assert sqlite_catalog.STATEMENTS == statements, "run: python -m agent.store.statements"


def test_the_catalog_schema_is_the_metadata_schema(tmp_path) -> None:
    # Tables made from the catalog's DDL are the tables SQLAlchemy's create_all makes.
    pool = SqlitePool(str(tmp_path / "catalog.db"))
    pool.create_schema()
    pool.create_schema()  # twice: IF NOT EXISTS
    pool.close()
    engine = create_engine(f"sqlite:///{tmp_path / 'alchemy.db'}")
    t.metadata.create_all(engine)
    engine.dispose()

    def schema(path) -> list[tuple]:
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
            return sorted((*row[:3], (row[3] or "").replace(" IF NOT EXISTS", "")) for row in rows)

    assert schema(tmp_path / "catalog.db") == schema(tmp_path / "alchemy.db")


def test_the_catalogued_task_queries_run_without_sqlalchemy(tmp_path) -> None:
    # A query of a catalogued shape, with its filters in any order, must not import
    # SQLAlchemy: a pipeline's step watcher and step-cache lookups run one per step.
    values = {
        "id_prefix": "ab",
        "project": "p",
        "name": "n",
        "status": ["created"],
        "parent": "x",
        "runtime": {"cache_key": "k"},
    }
    calls = [{name: values[name] for name in reversed(shape)} for shape in q.QUERY_SHAPES]
    script = (
        "import json, sys\n"
        "from agent.store.sql import SqlBackend\n"
        f"store = SqlBackend('sqlite:///{tmp_path}/q.db')\n"
        f"for call in json.loads({json.dumps(json.dumps(calls))}):\n"
        "    store.query_tasks(**call)\n"
        "print('sqlalchemy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
