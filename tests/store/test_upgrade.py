"""A store made by an earlier version opens and is upgraded, keeping what it holds.

Stores made before NaN scalars were recorded have ``scalars.value NOT NULL``; SQLite
stores a NaN as NULL, so such a store would refuse a diverging loss.
"""

from __future__ import annotations

import math
import sqlite3

import sqlalchemy as sa

from agent.core.models import Task
from agent.store.sql import SqlBackend
from agent.store.sqlite_catalog import DDL


def _old_ddl() -> list[str]:
    return [d.replace("value FLOAT, ", "value FLOAT NOT NULL, ") for d in DDL]


def _nan_round_trip(store: SqlBackend, task_id: str) -> None:
    store.report_scalars(task_id, [("loss", "train", 2, float("nan"))])
    points = store.get_scalars(task_id)["loss"]["train"]
    assert points[0] == (1, 0.75) and points[1][0] == 2 and math.isnan(points[1][1])


def test_an_old_sqlite_store_is_upgraded_on_open(tmp_path):
    path = tmp_path / "agent.db"
    old = _old_ddl()
    assert any("value FLOAT NOT NULL" in d for d in old)  # the test builds the old shape
    store = SqlBackend(f"sqlite:///{path}")
    task = store.create_task(Task(name="fit", project="p"))
    store.report_scalars(task.id, [("loss", "train", 1, 0.75)])
    store.close()
    with sqlite3.connect(path) as conn:  # put the table back as an older version made it
        conn.execute("ALTER TABLE scalars RENAME TO s")
        conn.execute("DROP INDEX ix_scalars_task")
        for ddl in old:
            if "scalars" in ddl:
                conn.execute(ddl)
        conn.execute("INSERT INTO scalars SELECT * FROM s")
        conn.execute("DROP TABLE s")

    store = SqlBackend(f"sqlite:///{path}")
    _nan_round_trip(store, task.id)
    store.close()
    with sqlite3.connect(path) as conn:
        names = {n for (n,) in conn.execute("SELECT name FROM sqlite_master")}
    assert "ix_scalars_task" in names and "scalars_before_nan" not in names


def test_an_old_postgres_store_is_upgraded_on_open(pg_database):
    store = SqlBackend(pg_database)
    task = store.create_task(Task(name="fit", project="p"))
    store.report_scalars(task.id, [("loss", "train", 1, 0.75)])
    with store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE scalars ALTER COLUMN value SET NOT NULL"))
    store.close()

    store = SqlBackend(pg_database)
    _nan_round_trip(store, task.id)
    store.close()
