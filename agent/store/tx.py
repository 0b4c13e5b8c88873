"""Transactions of the SQL store's busiest operations, on SQLAlchemy or on raw sqlite3.

SqlBackend's statements are SQLAlchemy Core (:mod:`agent.store.statements`), but on
SQLite running one through SQLAlchemy costs several times what SQLite takes to run it
(a task's create, claim and completion: about 1 ms of CPU against 0.2 ms), and importing
SQLAlchemy takes longer than a short pipeline runs in debug mode. So the busy paths
call statements by name through a :class:`Tx`, which has two implementations with the
same results:

- :class:`AlchemyTx` runs the SQLAlchemy statement on a ``Connection`` (PostgreSQL, an
  in-memory SQLite database);
- :class:`SqliteTx` runs the statement's SQLite form from :mod:`agent.store.sqlite_catalog`
  (compiled ahead by SQLAlchemy; a test keeps it current) on a sqlite3 connection of
  :class:`SqlitePool`, encoding JSON parameters and decoding JSON columns as SQLAlchemy's
  JSON type does. Neither this module nor the catalog imports SQLAlchemy.

Both kinds of connection take the same locks (see ``SqlBackend._write``), so their
transactions interleave safely.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from agent.store.sqlite_catalog import DDL, STATEMENTS

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.sql import Executable

#: The tables and indexes the catalog's DDL creates.
_SCHEMA_NAMES = frozenset(
    re.match(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", ddl).group(1) for ddl in DDL
)
#: Connections a forked child inherited: never used, never closed there.
_INHERITED: list[sqlite3.Connection] = []

Row = dict[str, Any]
Params = dict[str, Any]

#: The pragmas every connection to a store's SQLite file runs (SQLAlchemy's and ours).
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=60000",
)


#: The parameter prefix of a new task's columns in PostgreSQL's one-statement create
#: (``statements.CREATE_TASK``: SQLAlchemy keeps the column names for the VALUES clause).
NEW = "new_"


#: The filters of SqlBackend.query_tasks, in the order a query's name lists them.
QUERY_FILTERS = (
    "id_prefix", "project", "name", "status", "tag", "type", "parent", "runtime", "text",
)  # fmt: skip


def query_name(filters: tuple[str, ...]) -> str:
    """The name of the task query of ``filters`` (see ``statements.tasks_query``), the
    same whatever order they come in."""
    return "QUERY_TASKS:" + ",".join(sorted(filters, key=QUERY_FILTERS.index))


class Tx(Protocol):
    """One open transaction; statements are named as in ``statements.named``."""

    def first(self, name: str, params: Params) -> Row | None:
        """The first row, as a dict (None when there is none)."""

    def all(self, name: str, params: Params) -> list[Row]: ...

    def scalar(self, name: str, params: Params) -> Any:
        """The first column of the first row, or None."""

    def run(self, name: str, params: Params | Sequence[Params]) -> None:
        """Execute for its effect; a list of parameter sets runs it once per set."""


class AlchemyTx:
    """:class:`Tx` on a SQLAlchemy connection inside its transaction."""

    def __init__(self, conn: Connection, statements: dict[str, tuple[Executable, Any]]):
        self.conn = conn
        self._statements = statements

    def _stmt(self, name: str) -> Executable:
        return self._statements[name][0]

    def first(self, name: str, params: Params) -> Row | None:
        row = self.conn.execute(self._stmt(name), params).mappings().first()
        return None if row is None else dict(row)

    def all(self, name: str, params: Params) -> list[Row]:
        return [dict(row) for row in self.conn.execute(self._stmt(name), params).mappings()]

    def scalar(self, name: str, params: Params) -> Any:
        return self.conn.execute(self._stmt(name), params).scalar()

    def run(self, name: str, params: Params | Sequence[Params]) -> None:
        batch = params if isinstance(params, dict) else list(params)
        if batch:
            self.conn.execute(self._stmt(name), batch)


class SqliteTx:
    """:class:`Tx` on a raw sqlite3 connection inside ``BEGIN``."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def _execute(self, name: str, params: Params) -> tuple[tuple, sqlite3.Cursor]:
        entry = STATEMENTS[name]
        sql, args = _bind(entry, params)
        return entry, self.conn.execute(sql, args)

    def first(self, name: str, params: Params) -> Row | None:
        entry, cursor = self._execute(name, params)
        row = cursor.fetchone()
        cursor.close()
        return None if row is None else _decode(entry, cursor, row)

    def all(self, name: str, params: Params) -> list[Row]:
        entry, cursor = self._execute(name, params)
        return [_decode(entry, cursor, row) for row in cursor.fetchall()]

    def scalar(self, name: str, params: Params) -> Any:
        entry, cursor = self._execute(name, params)
        row = cursor.fetchone()
        cursor.close()
        if row is None:
            return None
        return _decode(entry, cursor, row)[cursor.description[0][0]]

    def run(self, name: str, params: Params | Sequence[Params]) -> None:
        if isinstance(params, dict):
            self._execute(name, params)[1].close()
            return
        entry = STATEMENTS[name]
        batch = [_bind(entry, p) for p in params]
        if entry[5]:  # expanding: each set may have its own SQL
            for sql, args in batch:
                self.conn.execute(sql, args).close()
        elif batch:
            self.conn.executemany(batch[0][0], [args for _, args in batch])


def _bind(entry: tuple, params: Params) -> tuple[str, list[Any]]:
    """The SQL and its positional arguments: fixed values filled in, JSON parameters
    encoded, each expanding parameter (``IN (...)``) spread over one mark per value."""
    sql, names, fixed, json_params, _, expanding = entry
    values = {**fixed, **params} if fixed else params
    args: list[Any] = []
    for name in names:
        value = values[name]  # a missing value is a bug, as it is to SQLAlchemy
        if name in expanding:
            items = list(value)
            marks = ", ".join("?" * len(items)) if items else "NULL"
            sql = sql.replace(f"__[POSTCOMPILE_{name}]", marks, 1)
            args.extend(items)
            continue
        args.append(json.dumps(value) if name in json_params else value)
    return sql, args


def _decode(entry: tuple, cursor: sqlite3.Cursor, row: tuple) -> Row:
    names = [d[0] for d in cursor.description]
    out = dict(zip(names, row, strict=True))
    for name in entry[4]:  # JSON columns
        value = out.get(name)
        if isinstance(value, str):
            out[name] = json.loads(value)
    return out


def _scalars_value_not_null(conn: sqlite3.Connection) -> bool:
    """Whether the store predates NaN scalars (``scalars.value`` NOT NULL)."""
    columns = conn.execute("PRAGMA table_info(scalars)").fetchall()
    return any(name == "value" and notnull for _, name, _, notnull, *_ in columns)


class SqlitePool:
    """Raw sqlite3 connections to one database file, reused across calls and threads.

    Every connection is in autocommit mode with the store's pragmas;
    :meth:`transaction` opens the transaction.
    """

    def __init__(self, path: str):
        self.path = path
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        for pragma in SQLITE_PRAGMAS:
            conn.execute(pragma)
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            try:
                if conn.in_transaction:
                    conn.rollback()
            except sqlite3.Error:
                conn.close()  # unusable: a new one takes its place
            else:
                with self._lock:
                    self._idle.append(conn)

    @contextmanager
    def transaction(self, mode: str) -> Iterator[SqliteTx]:
        """``BEGIN <mode>`` ... ``COMMIT`` (a rollback on an error)."""
        with self._connection() as conn:
            conn.execute(f"BEGIN {mode}")
            yield SqliteTx(conn)
            conn.execute("COMMIT")

    def schema_complete(self) -> bool:
        """Whether every table and index of the schema exists and is current (a read: no
        write lock, so a store opens while another process writes, and a read-only store
        opens)."""
        with self._connection() as conn:
            rows = conn.execute("SELECT name FROM sqlite_master").fetchall()
            complete = _SCHEMA_NAMES <= {name for (name,) in rows}
            return complete and not _scalars_value_not_null(conn)

    def create_schema(self) -> None:
        """Create what is missing of the schema (tables, indexes) and upgrade what is
        older, in one transaction: run under the store's write locks, two processes may
        both try."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            rebuild = _scalars_value_not_null(conn)
            if rebuild:  # SQLite cannot drop a NOT NULL: the table is made anew
                conn.execute("ALTER TABLE scalars RENAME TO scalars_before_nan")
                conn.execute("DROP INDEX IF EXISTS ix_scalars_task")
            for statement in DDL:
                conn.execute(statement)
            if rebuild:
                conn.execute(
                    "INSERT INTO scalars (task_id, title, series, iteration, value) "
                    "SELECT task_id, title, series, iteration, value FROM scalars_before_nan"
                )
                conn.execute("DROP TABLE scalars_before_nan")
            conn.execute("COMMIT")

    def forget(self) -> None:
        """In a forked child: drop the parent's connections without closing them (kept
        referenced, so no collection closes them here either)."""
        _INHERITED.extend(self._idle)
        self._idle = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __repr__(self) -> str:
        return f"SqlitePool({self.path!r}, pid {os.getpid()})"
