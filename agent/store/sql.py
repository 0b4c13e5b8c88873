"""SqlBackend: the control plane on SQLite (embedded default) or PostgreSQL.

SQLite: WAL, one writer at a time; every write runs in ``BEGIN IMMEDIATE`` so a
claim cannot race another. PostgreSQL: claims take the queue head with
``FOR UPDATE SKIP LOCKED``. Claims long-poll: an enqueue through this same
backend object wakes its waiting claimers at once; enqueues from other
processes are seen by polling every few milliseconds.

Frequent operations (create, enqueue, claim, status changes, logs, artifacts) call
named statements (:mod:`agent.store.statements`) through a :class:`~agent.store.tx.Tx`:
on a SQLite file they run on raw sqlite3 from a catalog compiled ahead, without
importing SQLAlchemy; elsewhere on SQLAlchemy. They answer from the row they wrote
instead of reading the task back. Everything else uses SQLAlchemy Core directly,
imported on first use.

This module holds the plumbing: the engine and pools, creating and upgrading the
schema, transactions, write locks and the bell. What the store keeps is mixed in, a
module per concept: tasks and projects (:mod:`agent.store.sql_tasks`), queues, claims
and leases (:mod:`agent.store.sql_queues`), workers (:mod:`agent.store.sql_workers`),
logs, metrics and artifacts (:mod:`agent.store.sql_logs`) and models
(:mod:`agent.store.model_registry`).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from agent.core.children import call_in_forked_children
from agent.core.lazy import LazyModule
from agent.store.bell import Bell, Listener
from agent.store.model_registry import ModelRegistry
from agent.store.sql_logs import DEFAULT_MAX_LOG_LINES, SqlLogs, _max_log_lines
from agent.store.sql_queues import REAP_ON_READ_S, SqlQueues
from agent.store.sql_tasks import SqlTasks
from agent.store.sql_workers import SqlWorkers
from agent.store.stops import TaskStops
from agent.store.tx import SQLITE_PRAGMAS, AlchemyTx, SqlitePool, Tx
from agent.store.wakeups import ClaimSignals

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.engine import Engine

__all__ = ["DEFAULT_MAX_LOG_LINES", "REAP_ON_READ_S", "SqlBackend"]

# SQLAlchemy is imported when first needed: the embedded store's busy paths run without
# it (see agent.store.tx), and its import is most of a short debug pipeline's run time.
sa = LazyModule("sqlalchemy")
t = LazyModule("agent.store.schema")
q = LazyModule("agent.store.statements")

#: Enqueue listeners a forked child inherited: never used, never closed there.
_INHERITED_LISTENERS: list[Any] = []

#: Connections a file-backed SQLite store keeps open: enough for a server's concurrent
#: requests, so none is opened (and set up with PRAGMAs) per request.
_SQLITE_POOL_SIZE = 20


def _normalize_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _make_engine(url: str) -> Engine:
    url = _normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        pool_args = {}
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            pool_args = {"pool_size": _SQLITE_POOL_SIZE, "max_overflow": 2 * _SQLITE_POOL_SIZE}
        engine = sa.create_engine(
            url, connect_args={"timeout": 60, "check_same_thread": False}, **pool_args
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - trivial
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            for pragma in SQLITE_PRAGMAS:
                cur.execute(pragma)
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn):  # pragma: no cover - trivial
            mode = "DEFERRED" if conn.get_execution_options().get("readonly") else "IMMEDIATE"
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    # The busy paths have their own connections (agent.store.pg): this pool is small.
    return sa.create_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True)


@contextmanager
def _flock(path: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class SqlBackend(SqlTasks, SqlQueues, SqlWorkers, SqlLogs, ModelRegistry):
    """The :class:`~agent.store.base.Backend` over SQLAlchemy Core."""

    def __init__(self, url: str):
        self.url = url
        self._url = _normalize_url(url)
        self.is_sqlite = self._url.startswith("sqlite")
        self.dialect = "sqlite" if self.is_sqlite else "postgresql"
        self._engine: Engine | None = None
        self._init_lock = threading.Lock()
        self._statements: dict[str, Any] | None = None
        #: Claims waiting in this process; an enqueue here wakes one (see agent.store.wakeups).
        self.claim_signals = ClaimSignals()
        #: Counts interrupt_claims calls: a waiting claim that sees it change gives up.
        self.claims_interrupted = 0
        #: Waits for running tasks to stop (see agent.store.stops).
        self.task_stops = TaskStops(self.stopped_tasks, self.listen_for_changes)
        self._known_projects: set[str] = set()
        self._known_queues: dict[str, str] = {}
        self._write_lock: threading.Lock | None = None
        self._lock_path = ""
        #: Raw sqlite3 connections for the busy paths (see agent.store.tx); file stores only.
        self._raw: SqlitePool | None = None
        #: Raw psycopg connections for the busy paths on PostgreSQL (see agent.store.pg).
        self._pg: Any = None
        #: PostgreSQL: other processes' enqueues, heard (see agent.store.pg_notify).
        self._enqueue_listener: Any = None
        self._listener_running = False
        self._bell: Bell | None = None
        #: Lines a task's log keeps (see :meth:`append_logs`).
        self.max_log_lines = _max_log_lines()
        #: When (time.monotonic) a read may next reap lapsed leases.
        self._next_reap_on_read = 0.0
        database = _sqlite_path(self._url) if self.is_sqlite else None
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._write_lock = threading.Lock()
            self._lock_path = database + ".lock"
            if "?" not in self._url:  # options (uri=true, mode=ro, ...): SQLAlchemy's path
                self._raw = SqlitePool(database)
            #: Wakes other processes' waiting claims and pipeline watchers (agent.store.bell).
            self._bell = Bell.for_store(database)
        self._create_schema()
        # A forked child (a local-mode pipeline step) must not share the parent's
        # connections: drop the pool in the child without closing the parent's.
        call_in_forked_children(self, "forget_connections")

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, made on first use (a SQLite file's busy paths skip it)."""
        if self._engine is None:
            with self._init_lock:
                if self._engine is None:
                    self._engine = _make_engine(self._url)
        return self._engine

    def release_connections(self) -> None:
        """Close the pooled connections (before a fork: none may cross it); both pools
        open new ones on next use."""
        if self._engine is not None:
            self._engine.dispose()
        if self._raw is not None:
            self._raw.close()
        if self._pg is not None:
            self._pg.close()

    def forget_connections(self) -> None:
        """In a forked child: drop the parent's connections without touching them, and
        this process's locks and waiters (runs by itself after every fork)."""
        if self._engine is not None:
            self._engine.dispose(close=False)
        self.claim_signals = ClaimSignals()
        self.task_stops = TaskStops(self.stopped_tasks, self.listen_for_changes)
        self._init_lock = threading.Lock()
        if self._write_lock is not None:
            self._write_lock = threading.Lock()
        if self._raw is not None:
            self._raw.forget()
        if self._pg is not None:
            self._pg.forget()
        if self._enqueue_listener is not None:
            _INHERITED_LISTENERS.append(self._enqueue_listener)  # its socket is the parent's
            self._enqueue_listener, self._listener_running = None, False

    def _create_schema(self) -> None:
        if self._raw is not None:
            if not self._raw.schema_complete():
                with self._write_locks():
                    self._raw.create_schema()
            return
        for attempt in range(5):
            try:
                t.metadata.create_all(self.engine)
                self._upgrade_schema()
                return
            except (sa.exc.OperationalError, sa.exc.IntegrityError):
                # Two processes creating the schema at once: the loser retries.
                if attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def _upgrade_schema(self) -> None:
        """PostgreSQL stores made before NaN scalars were recorded: ``value`` nullable.
        (A SQLite file is upgraded by :meth:`SqlitePool.create_schema`; an in-memory one
        is always new.)"""
        if self.is_sqlite:
            return
        columns = sa.inspect(self.engine).get_columns("scalars")
        if any(c["name"] == "value" and not c["nullable"] for c in columns):
            with self.engine.begin() as conn:
                conn.execute(sa.text("ALTER TABLE scalars ALTER COLUMN value DROP NOT NULL"))
        from agent.store.pg_notify import install_trigger

        with self.engine.begin() as conn:
            install_trigger(conn.connection.driver_connection)

    # -- plumbing -----------------------------------------------------------
    @contextmanager
    def _write_locks(self) -> Iterator[None]:
        """SQLite file: this process's writers one at a time, then the file's flock.
        SQLite's own busy handler sleeps in steps of up to 100 ms while another process
        writes; a blocking flock wakes the moment it is free. PostgreSQL locks rows."""
        if self._write_lock is None:
            yield
            return
        with self._write_lock, _flock(self._lock_path):
            yield

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._write_locks(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(readonly=True) as conn:
            with conn.begin():
                yield conn

    @contextmanager
    def _tx_write(self) -> Iterator[Tx]:
        """A write transaction for the busy paths: raw sqlite3 on a SQLite file, raw
        psycopg on PostgreSQL."""
        if not self.is_sqlite:
            with self._pg_pool().transaction() as tx:
                yield tx
            return
        if self._raw is None:
            with self._write() as conn:
                yield self._alchemy_tx(conn)
            return
        with self._write_locks(), self._raw.transaction("IMMEDIATE") as tx:
            yield tx

    @contextmanager
    def _tx_claim(self) -> Iterator[Tx]:
        """A claim's statements: on PostgreSQL each commits by itself (each takes a head
        and claims its task whole, see PgPool.autocommit); a write transaction on SQLite."""
        if self.is_sqlite:
            with self._tx_write() as tx:
                yield tx
            return
        with self._pg_pool().autocommit() as tx:
            yield tx

    @contextmanager
    def _tx_read(self) -> Iterator[Tx]:
        if not self.is_sqlite:
            with self._pg_pool().transaction() as tx:
                yield tx
            return
        if self._raw is None:
            with self._read() as conn:
                yield self._alchemy_tx(conn)
            return
        with self._raw.transaction("DEFERRED") as tx:
            yield tx

    def _pg_pool(self) -> Any:
        if self._pg is None:
            with self._init_lock:  # threads' first calls must not make a pool each
                self._pg_pool_locked()
        return self._pg

    def _pg_pool_locked(self) -> Any:
        if self._pg is None:
            from agent.store.pg import PgPool

            url = sa.engine.make_url(self._url).set(drivername="postgresql")
            self._pg = PgPool(url.render_as_string(hide_password=False))
        return self._pg

    def _alchemy_tx(self, conn: Connection) -> AlchemyTx:
        if self._statements is None:
            self._statements = q.named(self.dialect)
        return AlchemyTx(conn, self._statements)

    def close(self) -> None:
        if self._enqueue_listener is not None:
            self._enqueue_listener.close()
            self._enqueue_listener, self._listener_running = None, False
        self.release_connections()

    # -- PostgreSQL: other processes' enqueues wake this one's claims ---------
    def enqueue_listener(self) -> Any:
        """This process's :class:`~agent.store.pg_notify.EnqueueListener`, made on first
        use and not started; None on SQLite (whose bell does the same)."""
        if self.is_sqlite:
            return None
        with self._init_lock:
            if self._enqueue_listener is None:
                from agent.store.pg_notify import EnqueueListener

                pool = self._pg_pool_locked()
                self._enqueue_listener = EnqueueListener(
                    pool.conninfo,
                    on_enqueue=lambda queue: self.claim_signals.notify(queue),
                    on_connect=lambda: self.claim_signals.wake_all(),
                    own_pids=pool.backend_pids,
                )
            return self._enqueue_listener

    def serve_enqueue_listener(self) -> Any:
        """The coroutine that runs the listener on the running event loop (the server's),
        instead of the thread a waiting claim would start."""
        listener = self.enqueue_listener()
        self._listener_running = True
        return listener.serve()

    @property
    def enqueues_heard(self) -> bool:
        """Whether other processes' enqueues wake this process's claims now."""
        return self._enqueue_listener is not None and self._enqueue_listener.listening

    def hears_enqueues(self) -> bool:
        """:attr:`enqueues_heard`, for a claim about to wait: on PostgreSQL it starts the
        listener's thread when nobody runs the listener yet."""
        listener = self.enqueue_listener()
        if listener is None:
            return False
        if not self._listener_running:
            with self._init_lock:
                if not self._listener_running:
                    self._listener_running = True
                    listener.start_thread()
        return listener.listening

    # -- the bell: other processes' waiting claims and watchers -------------
    def _ring(self) -> None:
        if self._bell is not None:
            self._bell.ring()

    @contextmanager
    def listen_for_changes(self) -> Iterator[Listener | None]:
        """While in the block, the listener other processes' enqueues and status changes
        wake (``listener.wait(timeout)``); None where changes cannot be heard (a server's
        database, PostgreSQL): poll."""
        if self._bell is None:
            yield None
            return
        with self._bell.listening() as listener:
            yield listener


def _sqlite_path(url: str) -> str:
    """The database file of a ``sqlite:///PATH`` URL (``:memory:`` or "" for memory), as
    SQLAlchemy reads it: %-escapes decoded; with a query (options), SQLAlchemy's own."""
    if "?" in url:
        return sa.engine.make_url(url).database or ""
    return unquote(url.split("///", 1)[-1]) if "///" in url else ""
