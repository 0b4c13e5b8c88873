"""SqlBackend's busy paths on PostgreSQL: named statements on raw psycopg connections.

The same idea as :class:`agent.store.tx.SqliteTx`: the statements stay SQLAlchemy Core
(:func:`agent.store.statements.named`), compiled once per process for PostgreSQL, and
run on psycopg directly. Through SQLAlchemy a task cycle cost ``agent server`` about
3.6 ms of CPU on PostgreSQL, most of it in SQLAlchemy's execution machinery and its
pool's ping on every checkout; psycopg alone needs a fraction of that.

:class:`PgPool` keeps idle connections (autocommit off: the first statement opens the
transaction), at most ``MAX_CONNECTIONS`` in use. A restarted server or a cut
connection costs no request: a connection idle for more than a second is pinged before
use, and a transaction whose first statement finds its connection gone reconnects and
runs it again (nothing of it ran). A connection found lost is closed, with the idle ones
(likely lost as well); any other error (a deadlock, a timeout, a value PostgreSQL
refuses) rolls back and keeps the connection.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import psycopg
from psycopg.types.json import Json
from sqlalchemy import JSON
from sqlalchemy.dialects import postgresql

from agent.core.children import call_in_forked_children
from agent.store import statements as q
from agent.store.tx import Params, Row

#: Connections open at most (in use and idle): the server runs store calls in up to 40
#: worker threads, and several servers may share one PostgreSQL (100 connections).
MAX_CONNECTIONS = 20
#: An idle connection older than this is pinged before use.
PING_AFTER_IDLE_S = 1.0
_DIALECT = postgresql.dialect(paramstyle="pyformat")
#: The statements that commit themselves (autocommit) and must not run twice: a connection
#: lost after one was sent, but before its answer came, may have committed it, so it is
#: not sent again on a new connection (a log batch appended twice, a create refused as a
#: duplicate of itself): the caller gets the error. A connection that PostgreSQL dropped
#: while it sat idle is noticed before one is sent (it has input to read) and replaced.
ONE_SHOT = frozenset({"CREATE_TASK", "CREATE_QUEUED_TASK", "FINISH_RUNNING", "APPEND_LOGS"})
#: Connections a forked child inherited: never used, never closed there.
_INHERITED: list[psycopg.Connection] = []


class _Compiled(NamedTuple):
    sql: str
    fixed: Params
    json_params: frozenset[str]
    expanding: tuple[str, ...]


def _compile(stmt: Any, keys: Sequence[str]) -> _Compiled:
    compiled = stmt.compile(dialect=_DIALECT, column_keys=list(keys))
    binds = compiled.binds
    return _Compiled(
        sql=compiled.string,
        fixed={k: v for k, v in compiled.params.items() if k not in keys},
        json_params=frozenset(k for k, b in binds.items() if isinstance(b.type, JSON)),
        expanding=tuple(k for k, b in binds.items() if b.expanding),
    )


class PgTx:
    """:class:`~agent.store.tx.Tx` on a psycopg connection inside its transaction."""

    def __init__(self, conn: psycopg.Connection, pool: PgPool, autocommit: bool = False):
        self.conn = conn
        self._pool = pool
        self._autocommit = autocommit
        self._statements = pool.statements
        self._started = False

    def _execute(self, name: str, params: Params) -> psycopg.Cursor:
        sql, values = _bind(self._statements[name], params)
        if self._started:
            return self.conn.execute(sql, values)
        self._started = True
        if self._autocommit and name in ONE_SHOT and _has_input(self.conn):
            self._replace_connection()  # dropped while idle: it never saw this statement
        try:
            return self.conn.execute(sql, values)
        except psycopg.OperationalError:
            if not _lost(self.conn) or (self._autocommit and name in ONE_SHOT):
                raise
            # The first statement of a transaction: nothing of it was committed, so it
            # may run again on a new connection.
            self._replace_connection()
            return self.conn.execute(sql, values)

    def _replace_connection(self) -> None:
        self._pool.close_connection(self.conn)
        self._pool.discard_idle()
        self.conn = self._pool.connect()
        self.conn.autocommit = self._autocommit

    def first(self, name: str, params: Params) -> Row | None:
        cursor = self._execute(name, params)
        row = cursor.fetchone()
        return None if row is None else dict(zip(self._names(name, cursor), row, strict=True))

    def all(self, name: str, params: Params) -> list[Row]:
        cursor = self._execute(name, params)
        names = self._names(name, cursor)
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _names(self, name: str, cursor: psycopg.Cursor) -> tuple[str, ...]:
        """The column names of statement ``name``'s rows, read once per pool: psycopg
        makes a Column object per column each time ``description`` is read (a task row
        has 22)."""
        names = self._pool.row_names.get(name)
        if names is None:
            names = self._pool.row_names[name] = tuple(d.name for d in cursor.description)
        return names

    def scalar(self, name: str, params: Params) -> Any:
        row = self._execute(name, params).fetchone()
        return None if row is None else row[0]

    def run(self, name: str, params: Params | Sequence[Params]) -> None:
        if isinstance(params, dict):
            self._execute(name, params)
            return
        batch = [_bind(self._statements[name], p) for p in params]
        if not batch:
            return
        with self.conn.cursor() as cursor:
            if self._statements[name].expanding:
                for sql, values in batch:
                    cursor.execute(sql, values)
            else:
                cursor.executemany(batch[0][0], [values for _, values in batch])


def _bind(c: _Compiled, params: Params) -> tuple[str, Params]:
    values = {**c.fixed, **params} if c.fixed else dict(params)
    for name in c.json_params:
        values[name] = Json(values[name])
    sql = c.sql
    for name in c.expanding:  # IN (...): one placeholder per value
        items = list(values.pop(name))
        marks = ", ".join(f"%({name}_{i})s" for i in range(len(items))) or "NULL"
        sql = sql.replace(f"__[POSTCOMPILE_{name}]", marks, 1)
        values.update({f"{name}_{i}": item for i, item in enumerate(items)})
    return sql, values


def _autocommit_off(conn: psycopg.Connection) -> None:
    conn.autocommit = False


def _has_input(conn: psycopg.Connection) -> bool:
    """Whether an idle connection has something to read: PostgreSQL's notice that it
    ends the session, or the end of the stream (a pool connection listens to nothing)."""
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


def _lost(conn: psycopg.Connection) -> bool:
    """True when the connection is gone (not merely in a failed transaction)."""
    return conn.closed or conn.info.transaction_status == psycopg.pq.TransactionStatus.UNKNOWN


class PgPool:
    """Raw psycopg connections to one database, with SqlBackend's named statements.

    Args:
        conninfo: a libpq URL (``postgresql://user:pass@host/db``).
    """

    def __init__(self, conninfo: str):
        self.conninfo = conninfo
        self.statements = {
            name: _compile(stmt, keys) for name, (stmt, keys) in q.named("postgresql").items()
        }
        #: The column names of each statement's rows (see PgTx._names).
        self.row_names: dict[str, tuple[str, ...]] = {}
        self._idle: list[tuple[psycopg.Connection, float]] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        #: The server processes (backend pids) of this pool's open connections: an
        #: enqueue notification from one of them was made here (agent.store.pg_notify).
        self.backend_pids: set[int] = set()
        self._pid_of: dict[int, int] = {}  # id(connection) -> its backend pid
        call_in_forked_children(self, "forget")

    @contextmanager
    def transaction(self) -> Iterator[PgTx]:
        """One transaction, committed on leaving (rolled back on an error)."""
        with self._slots:
            tx = PgTx(self._take(), self)
            try:
                yield tx
                tx.conn.commit()
            except BaseException:
                self._end_failed(tx.conn)
                raise
            self._give_back(tx.conn)

    @contextmanager
    def autocommit(self) -> Iterator[PgTx]:
        """Statements each committed by itself (autocommit), for work whose statements
        each stand alone, as a claim's (it takes a head and claims its task in one): no
        BEGIN and no COMMIT, two round trips fewer."""
        with self._slots:
            conn = self._take()
            try:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.commit()  # the ping of an idle connection opened one
                conn.autocommit = True
            except psycopg.Error:
                self._close_with_idle(conn)
                raise
            tx = PgTx(conn, self, autocommit=True)
            try:
                yield tx
            except BaseException:
                self._keep_or_close(tx.conn, _autocommit_off)
                raise
            self._keep_or_close(tx.conn, _autocommit_off)

    def _end_failed(self, conn: psycopg.Connection) -> None:
        """Roll back and keep the connection, or close it (and the idle ones) if lost."""
        self._keep_or_close(conn, psycopg.Connection.rollback)

    def _keep_or_close(
        self, conn: psycopg.Connection, reset: Callable[[psycopg.Connection], None]
    ) -> None:
        """``reset`` the connection and keep it; or close it, and the idle ones with it
        (likely lost as well), when it is lost or cannot be reset (a statement interrupted
        by a signal leaves it in the middle of something)."""
        if not _lost(conn):
            try:
                reset(conn)
            except psycopg.Error:
                pass  # the caller's error is the one to report
            else:
                self._give_back(conn)
                return
        self._close_with_idle(conn)

    def _close_with_idle(self, conn: psycopg.Connection) -> None:
        self.close_connection(conn)
        self.discard_idle()

    def connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.conninfo, autocommit=False)
        self._pid_of[id(conn)] = pid = conn.info.backend_pid
        self.backend_pids.add(pid)
        return conn

    def close_connection(self, conn: psycopg.Connection) -> None:
        self.backend_pids.discard(self._pid_of.pop(id(conn), -1))
        conn.close()

    def _take(self) -> psycopg.Connection:
        stale = time.monotonic() - PING_AFTER_IDLE_S
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn, used = self._idle.pop()
            if conn.closed:
                self.close_connection(conn)
                continue
            if used > stale:
                return conn
            try:
                conn.execute("SELECT 1")  # opens the transaction the caller goes on with
                return conn
            except psycopg.Error:
                self.close_connection(conn)
        return self.connect()

    def _give_back(self, conn: psycopg.Connection) -> None:
        with self._lock:
            self._idle.append((conn, time.monotonic()))

    def discard_idle(self) -> None:
        """Close the idle connections (after one was found lost: so are they, likely)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            self.close_connection(conn)

    def close(self) -> None:
        self.discard_idle()

    def forget(self) -> None:
        """In a forked child: drop the parent's connections without touching them."""
        _INHERITED.extend(conn for conn, _ in self._idle)
        self._idle = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.backend_pids = set()
        self._pid_of = {}
