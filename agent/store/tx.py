"""Transactions of the SQL store's busiest operations, on SQLAlchemy or on raw sqlite3.

SqlBackend's statements are SQLAlchemy Core (:mod:`agent.store.statements`), but on
SQLite running one through SQLAlchemy costs several times what SQLite takes to run it:
a task's create, claim and completion spend about 1 ms of CPU in SQLAlchemy against
0.2 ms in sqlite3, and on ``agent server`` that is most of a request. So the busy paths
talk to a :class:`Tx`, which has two implementations with the same results:

- :class:`AlchemyTx` runs statements on a SQLAlchemy ``Connection`` (PostgreSQL, an
  in-memory SQLite database, and every statement outside the busy paths);
- :class:`SqliteTx` runs the same statement objects on a sqlite3 connection of
  :class:`SqlitePool`: each is compiled once by SQLAlchemy's SQLite compiler (per set of
  parameter names), JSON parameters are encoded and JSON columns decoded as SQLAlchemy's
  JSON type does. Both connections take the same locks (see ``SqlBackend._write``), so
  the two kinds of transaction interleave safely.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol

from sqlalchemy import JSON
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable

Row = dict[str, Any]
Params = dict[str, Any]

#: The pragmas every connection to a store's SQLite file runs (SQLAlchemy's and ours).
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=60000",
)


class Tx(Protocol):
    """One open transaction; every method takes a statement and its parameters."""

    def first(self, stmt: Executable, params: Params) -> Row | None:
        """The first row, as a dict (None when there is none)."""

    def all(self, stmt: Executable, params: Params) -> list[Row]: ...

    def scalar(self, stmt: Executable, params: Params) -> Any:
        """The first column of the first row, or None."""

    def run(self, stmt: Executable, params: Params | Sequence[Params]) -> None:
        """Execute for its effect; a list of parameter sets runs it once per set."""


class AlchemyTx:
    """:class:`Tx` on a SQLAlchemy connection inside its transaction."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def first(self, stmt: Executable, params: Params) -> Row | None:
        row = self.conn.execute(stmt, params).mappings().first()
        return None if row is None else dict(row)

    def all(self, stmt: Executable, params: Params) -> list[Row]:
        return [dict(row) for row in self.conn.execute(stmt, params).mappings()]

    def scalar(self, stmt: Executable, params: Params) -> Any:
        return self.conn.execute(stmt, params).scalar()

    def run(self, stmt: Executable, params: Params | Sequence[Params]) -> None:
        self.conn.execute(stmt, params if isinstance(params, dict) else list(params))


class _Compiled(NamedTuple):
    sql: str
    names: tuple[str, ...]  #: the parameters in the order of the ``?`` marks
    fixed: Params  #: values the statement holds itself (LIMIT 1, column defaults)
    json_params: frozenset[str]
    json_columns: frozenset[str]
    expanding: bool  #: has ``IN (...)`` parameters, expanded per call
    compiled: Any


_DIALECT = sqlite.dialect(paramstyle="qmark")


def _compile(stmt: Executable, keys: Sequence[str]) -> _Compiled:
    compiled = stmt.compile(dialect=_DIALECT, column_keys=list(keys))
    binds = compiled.binds
    columns = getattr(stmt, "exported_columns", ())
    return _Compiled(
        sql=compiled.string,
        names=tuple(compiled.positiontup or ()),
        fixed={k: v for k, v in compiled.params.items() if k not in keys},
        json_params=frozenset(k for k, b in binds.items() if isinstance(b.type, JSON)),
        json_columns=frozenset(c.name for c in columns if isinstance(c.type, JSON)),
        expanding=any(b.expanding for b in binds.values()),
        compiled=compiled,
    )


class SqliteTx:
    """:class:`Tx` on a raw sqlite3 connection inside ``BEGIN``."""

    def __init__(self, conn: sqlite3.Connection, cache: dict[tuple[int, frozenset[str]], Any]):
        self.conn = conn
        self._cache = cache

    def _statement(self, stmt: Executable, keys: frozenset[str]) -> _Compiled:
        key = (id(stmt), keys)
        entry = self._cache.get(key)
        if entry is None or entry[0] is not stmt:
            entry = self._cache[key] = (stmt, _compile(stmt, sorted(keys)))
        return entry[1]

    def _args(self, c: _Compiled, params: Params) -> tuple[str, list[Any]]:
        values = {**c.fixed, **params} if c.fixed else params
        sql, names = c.sql, c.names
        if c.expanding:
            state = c.compiled.construct_expanded_state(values)
            sql, names, values = state.statement, state.positiontup, state.parameters
        args = []
        for name in names:
            value = values.get(name)
            if name in c.json_params:
                value = json.dumps(value)
            args.append(value)
        return sql, args

    def _decode(self, c: _Compiled, cursor: sqlite3.Cursor, row: tuple) -> Row:
        names = [d[0] for d in cursor.description]
        out = dict(zip(names, row, strict=True))
        for name in c.json_columns:
            value = out.get(name)
            if isinstance(value, str):
                out[name] = json.loads(value)
        return out

    def _execute(self, stmt: Executable, params: Params) -> tuple[_Compiled, sqlite3.Cursor]:
        c = self._statement(stmt, frozenset(params))
        sql, args = self._args(c, params)
        return c, self.conn.execute(sql, args)

    def first(self, stmt: Executable, params: Params) -> Row | None:
        c, cursor = self._execute(stmt, params)
        row = cursor.fetchone()
        cursor.close()
        return None if row is None else self._decode(c, cursor, row)

    def all(self, stmt: Executable, params: Params) -> list[Row]:
        c, cursor = self._execute(stmt, params)
        return [self._decode(c, cursor, row) for row in cursor.fetchall()]

    def scalar(self, stmt: Executable, params: Params) -> Any:
        c, cursor = self._execute(stmt, params)
        row = cursor.fetchone()
        cursor.close()
        if row is None:
            return None
        name = cursor.description[0][0]
        return json.loads(row[0]) if name in c.json_columns and row[0] is not None else row[0]

    def run(self, stmt: Executable, params: Params | Sequence[Params]) -> None:
        if isinstance(params, dict):
            self._execute(stmt, params)[1].close()
            return
        batch = list(params)
        if not batch:
            return
        c = self._statement(stmt, frozenset(batch[0]))
        sql = c.sql
        self.conn.executemany(sql, [self._args(c, p)[1] for p in batch])


class SqlitePool:
    """Raw sqlite3 connections to one database file, reused across calls and threads.

    Every connection is in autocommit mode with the store's pragmas; :meth:`write`
    and :meth:`read` open the transaction. Compiled statements are shared.
    """

    def __init__(self, path: str):
        self.path = path
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, frozenset[str]], Any] = {}

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
            yield SqliteTx(conn, self._cache)
            conn.execute("COMMIT")

    def forget(self) -> None:
        """In a forked child: drop the parent's connections without closing them."""
        self._idle = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __repr__(self) -> str:
        return f"SqlitePool({self.path!r}, pid {os.getpid()})"
