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

Inside a store call that ``agent server`` runs on its event loop
(:mod:`agent.store.on_loop`) the pool gives psycopg async connections instead, from
idle connections and slots of their own per loop, and every wait on them goes through
:func:`~agent.store.on_loop.resolve`: the same code, its waits awaited by the loop.
"""

from __future__ import annotations

import asyncio
import select
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import psycopg
from psycopg.types.json import Json
from sqlalchemy import JSON
from sqlalchemy.dialects import postgresql

from agent.core.children import call_in_forked_children
from agent.store import statements as q
from agent.store.on_loop import active as _on_loop
from agent.store.on_loop import resolve as _io
from agent.store.tx import Params, Row

#: Connections open at most (in use and idle): the server runs store calls in up to 40
#: worker threads, and several servers may share one PostgreSQL (100 connections).
MAX_CONNECTIONS = 20
#: Connections open at most per event loop, for the store calls the server runs on it
#: (see agent.store.on_loop): a call holds one only while its statements run.
LOOP_CONNECTIONS = 8
#: An idle connection older than this is pinged before use.
PING_AFTER_IDLE_S = 1.0
_DIALECT = postgresql.dialect(paramstyle="pyformat")
#: The statements that commit themselves (autocommit) and must not run twice: a connection
#: lost after one was sent, but before its answer came, may have committed it, so it is
#: not sent again on a new connection (a log batch appended twice, a create refused as a
#: duplicate of itself): the caller gets the error. A connection that PostgreSQL dropped
#: while it sat idle is noticed before one is sent (it has input to read) and replaced.
ONE_SHOT = frozenset(
    {"CREATE_TASK", "CREATE_QUEUED_TASK", "FINISH_RUNNING", "APPEND_LOGS", "APPEND_LOGS_MANY"}
)
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
            return _io(self.conn.execute(sql, values))
        self._started = True
        if self._autocommit and name in ONE_SHOT and _has_input(self.conn):
            self._replace_connection()  # dropped while idle: it never saw this statement
        try:
            return _io(self.conn.execute(sql, values))
        except psycopg.OperationalError:
            if not _lost(self.conn) or (self._autocommit and name in ONE_SHOT):
                raise
            # The first statement of a transaction: nothing of it was committed, so it
            # may run again on a new connection.
            self._replace_connection()
            return _io(self.conn.execute(sql, values))

    def _replace_connection(self) -> None:
        self._pool.close_connection(self.conn)
        self._pool.discard_idle()
        self.conn = self._pool.connect()
        _io(self.conn.set_autocommit(self._autocommit))

    def first(self, name: str, params: Params) -> Row | None:
        cursor = self._execute(name, params)
        row = _io(cursor.fetchone())
        return None if row is None else dict(zip(self._names(name, cursor), row, strict=True))

    def all(self, name: str, params: Params) -> list[Row]:
        cursor = self._execute(name, params)
        names = self._names(name, cursor)
        return [dict(zip(names, row, strict=True)) for row in _io(cursor.fetchall())]

    def _names(self, name: str, cursor: psycopg.Cursor) -> tuple[str, ...]:
        """The column names of statement ``name``'s rows, read once per pool: psycopg
        makes a Column object per column each time ``description`` is read (a task row
        has 22)."""
        names = self._pool.row_names.get(name)
        if names is None:
            names = self._pool.row_names[name] = tuple(d.name for d in cursor.description)
        return names

    def scalar(self, name: str, params: Params) -> Any:
        row = _io(self._execute(name, params).fetchone())
        return None if row is None else row[0]

    def run(self, name: str, params: Params | Sequence[Params]) -> None:
        if isinstance(params, dict):
            self._execute(name, params)
            return
        batch = [_bind(self._statements[name], p) for p in params]
        if not batch:
            return
        cursor = self.conn.cursor()
        try:
            if self._statements[name].expanding:
                for sql, values in batch:
                    _io(cursor.execute(sql, values))
            else:
                _io(cursor.executemany(batch[0][0], [values for _, values in batch]))
        finally:
            _io(cursor.close())


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
    _io(conn.set_autocommit(False))


def _rollback(conn: psycopg.Connection) -> None:
    _io(conn.rollback())


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


class _Side:
    """The idle connections of one kind (blocking, or async on one event loop), and the
    slots that bound how many are open."""

    def __init__(self, slots: threading.BoundedSemaphore | asyncio.Semaphore):
        self.idle: list[tuple[psycopg.Connection, float]] = []
        self.slots = slots


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
        self._lock = threading.Lock()
        self._threads = _Side(threading.BoundedSemaphore(MAX_CONNECTIONS))
        #: Per event loop: the async connections of store calls run on it (on_loop).
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Side] = (
            weakref.WeakKeyDictionary()
        )
        #: The server processes (backend pids) of this pool's open connections: an
        #: enqueue notification from one of them was made here (agent.store.pg_notify).
        self.backend_pids: set[int] = set()
        self._pid_of: dict[int, int] = {}  # id(connection) -> its backend pid
        call_in_forked_children(self, "forget")

    def _side(self) -> _Side:
        """The connections of the caller: its event loop's inside a store call run on
        the loop, else the blocking ones."""
        if not _on_loop():
            return self._threads
        loop = asyncio.get_running_loop()
        side = self._loops.get(loop)
        if side is None:
            for old, dead in list(self._loops.items()):  # a semaphore keeps its loop alive
                if old.is_closed():
                    self._loops.pop(old, None)
                    self._discard(dead)
            side = self._loops[loop] = _Side(asyncio.Semaphore(LOOP_CONNECTIONS))
        return side

    @contextmanager
    def _slot(self) -> Iterator[_Side]:
        side = self._side()
        _io(side.slots.acquire())
        try:
            yield side
        finally:
            side.slots.release()

    @contextmanager
    def transaction(self) -> Iterator[PgTx]:
        """One transaction, committed on leaving (rolled back on an error)."""
        with self._slot() as side:
            tx = PgTx(self._take(side), self)
            try:
                yield tx
                _io(tx.conn.commit())
            except BaseException:
                self._end_failed(tx.conn)
                raise
            self._give_back(tx.conn)

    @contextmanager
    def autocommit(self) -> Iterator[PgTx]:
        """Statements each committed by itself (autocommit), for work whose statements
        each stand alone, as a claim's (it takes a head and claims its task in one): no
        BEGIN and no COMMIT, two round trips fewer."""
        with self._slot() as side:
            conn = self._take(side)
            try:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    _io(conn.commit())  # the ping of an idle connection opened one
                _io(conn.set_autocommit(True))
            except psycopg.Error:
                self._close_with_idle(conn)
                raise
            except BaseException:  # interrupted (a cancelled call on the loop): unusable
                self.close_connection(conn)
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
        self._keep_or_close(conn, _rollback)

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
            except BaseException:  # interrupted (a cancelled call on the loop): unusable
                self.close_connection(conn)
                raise
            else:
                self._give_back(conn)
                return
        self._close_with_idle(conn)

    def _close_with_idle(self, conn: psycopg.Connection) -> None:
        self.close_connection(conn)
        self.discard_idle()

    def connect(self) -> psycopg.Connection:
        if _on_loop():
            conn = _io(psycopg.AsyncConnection.connect(self.conninfo, autocommit=False))
        else:
            conn = psycopg.connect(self.conninfo, autocommit=False)
        self._pid_of[id(conn)] = pid = conn.info.backend_pid
        self.backend_pids.add(pid)
        return conn

    def close_connection(self, conn: psycopg.Connection) -> None:
        self.backend_pids.discard(self._pid_of.pop(id(conn), -1))
        closing = conn.close()
        if closing is not None:  # an async connection's: it closes without waiting
            _close_now(closing)

    def _take(self, side: _Side) -> psycopg.Connection:
        stale = time.monotonic() - PING_AFTER_IDLE_S
        while True:
            with self._lock:
                if not side.idle:
                    break
                conn, used = side.idle.pop()
            if conn.closed:
                self.close_connection(conn)
                continue
            if used > stale:
                return conn
            try:
                _io(conn.execute("SELECT 1"))  # opens the transaction the caller goes on with
                return conn
            except psycopg.Error:
                self.close_connection(conn)
            except BaseException:  # interrupted (a cancelled call on the loop)
                self.close_connection(conn)
                raise
        return self.connect()

    def _give_back(self, conn: psycopg.Connection) -> None:
        side = self._side()
        with self._lock:
            side.idle.append((conn, time.monotonic()))

    def discard_idle(self) -> None:
        """Close the caller's idle connections (after one was found lost: so are they,
        likely)."""
        self._discard(self._side())

    def _discard(self, side: _Side) -> None:
        with self._lock:
            idle, side.idle = side.idle, []
        for conn, _ in idle:
            self.close_connection(conn)

    def close(self) -> None:
        """Close every idle connection, the event loops' too."""
        for side in [self._threads, *list(self._loops.values())]:
            self._discard(side)

    def forget(self) -> None:
        """In a forked child: drop the parent's connections without touching them."""
        for side in [self._threads, *self._loops.values()]:
            _INHERITED.extend(conn for conn, _ in side.idle)
        self._lock = threading.Lock()
        self._threads = _Side(threading.BoundedSemaphore(MAX_CONNECTIONS))
        self._loops = weakref.WeakKeyDictionary()
        self.backend_pids = set()
        self._pid_of = {}


def _close_now(closing: Any) -> None:
    """Run an async connection's ``close()``, which never waits (it ends the libpq
    connection), outside the loop too."""
    try:
        closing.send(None)
    except StopIteration:
        return
    closing.close()  # pragma: no cover - a psycopg whose close waits: leave it to the GC
