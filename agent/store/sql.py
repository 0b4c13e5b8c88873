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
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import math
import os
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from agent.core.children import call_in_forked_children
from agent.core.errors import Conflict, InvalidInput, NotFound
from agent.core.lazy import LazyModule
from agent.core.models import (
    Artifact,
    LogLine,
    Queue,
    Script,
    Task,
    TaskStatus,
    TaskTypes,
    Worker,
    new_id,
    now,
    scalar_number,
    transition,
)
from agent.core.secrets import redact, strip_url_credentials
from agent.core.values import check_json, check_text, cut_log_line, without_non_finite
from agent.store.base import DEFAULT_LEASE_S, UPDATABLE_FIELDS, WORKER_LOST
from agent.store.bell import Bell, Listener
from agent.store.model_registry import ModelRegistry
from agent.store.sqlite_catalog import STATEMENTS as CATALOG
from agent.store.tx import SQLITE_PRAGMAS, AlchemyTx, SqlitePool, Tx, query_name
from agent.store.wakeups import ClaimSignals, ClaimWaiter, PollBackoff

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.engine import Engine

# SQLAlchemy is imported when first needed: the embedded store's busy paths run without
# it (see agent.store.tx), and its import is most of a short debug pipeline's run time.
sa = LazyModule("sqlalchemy")
t = LazyModule("agent.store.schema")
q = LazyModule("agent.store.statements")

_JSON_FIELDS = ("tags", "script", "hyperparams", "configuration", "container", "runtime")
_TASK_TYPES = {t_.value for t_ in TaskTypes}
_SCRIPT_FIELDS = tuple(f.name for f in dataclasses.fields(Script))
#: The task columns a Task gives (artifacts live in their own table).
_TASK_COLUMNS = tuple(f.name for f in dataclasses.fields(Task) if f.name != "artifacts")
#: What a task row's full update sets: the table's columns but its id.
_UPDATE_COLUMNS = (*(c for c in _TASK_COLUMNS if c != "id"), "lease_expires")
#: Connections a file-backed SQLite store keeps open: enough for a server's concurrent
#: requests, so none is opened (and set up with PRAGMAs) per request.
_SQLITE_POOL_SIZE = 20
#: Task ids: what fits the id column and a URL path segment (uuid4 hex and more).
_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Seconds between two reaps of lapsed leases that reads of tasks, queues and workers
#: make in one process (see ``SqlBackend._reap_on_read``).
REAP_ON_READ_S = 1.0

log = logging.getLogger("agent.store")


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


class SqlBackend(ModelRegistry):
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
        self._known_projects: set[str] = set()
        self._known_queues: dict[str, str] = {}
        self._write_lock: threading.Lock | None = None
        self._lock_path = ""
        #: Raw sqlite3 connections for the busy paths (see agent.store.tx); file stores only.
        self._raw: SqlitePool | None = None
        #: Raw psycopg connections for the busy paths on PostgreSQL (see agent.store.pg).
        self._pg: Any = None
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
        self._init_lock = threading.Lock()
        if self._write_lock is not None:
            self._write_lock = threading.Lock()
        if self._raw is not None:
            self._raw.forget()
        if self._pg is not None:
            self._pg.forget()

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
        self.release_connections()

    # -- projects -----------------------------------------------------------
    def list_projects(self) -> list[str]:
        with self._read() as conn:
            rows = conn.execute(sa.select(t.projects.c.name).order_by(t.projects.c.name)).all()
        return [r[0] for r in rows]

    def create_project(self, name: str) -> str:
        if not name or len(name) > 255:
            raise InvalidInput("project name must be 1 to 255 characters")
        with self._tx_write() as tx:
            self._ensure_project(tx, name)
        self._known_projects.add(name)
        return name

    def _ensure_project(self, tx: Tx, name: str) -> None:
        # Projects and queues are never deleted, so a name seen once needs no statement.
        # Callers remember a name only once their transaction has committed.
        if name and name not in self._known_projects:
            tx.run("INSERT_PROJECT", {"name": name, "created": now()})

    # -- tasks --------------------------------------------------------------
    def create_task(self, task: Task, queue: str | None = None, priority: int = 0) -> Task:
        _validate_task(task)
        if queue is not None:
            _validate_queue_name(queue)
        stamp = now()
        row = _task_to_row(task)
        _check_row(row)
        row.update(
            status=TaskStatus.created.value,
            created=stamp,
            last_update=stamp,
            started=None,
            completed=None,
            worker=None,
            queue=None,
            lease_expires=None,
        )
        if queue is not None:
            row.update(status=TaskStatus.queued.value, queue=queue, status_message="")
        try:
            with self._tx_write() as tx:
                self._ensure_project(tx, task.project)
                tx.run("INSERT_TASK", row)
                self._write_tags(tx, task.id, row["tags"], new=True)
                self._write_props(tx, task.id, row["runtime"], new=True)
                if queue is not None:
                    queue_id = self._ensure_queue(tx, queue)
                    self._insert_entry(tx, queue_id, task.id, priority)
        except Exception as exc:
            if not _is_integrity_error(exc):
                raise
            if self._task_exists(task.id):
                raise Conflict(f"task {task.id} already exists") from None
            raise
        self._known_projects.add(task.project)
        if queue is not None:
            self._known_queues[queue] = queue_id
            self.claim_signals.notify(queue)
            self._ring()
        # The row as stored, read back as get_task would (a new task has no artifacts).
        return _row_to_task(row)

    def _task_exists(self, task_id: str) -> bool:
        with self._tx_read() as tx:
            return tx.first("TASK_EXISTS", {"task_id": task_id}) is not None

    def get_task(self, task_id: str) -> Task:
        self._reap_on_read()
        with self._tx_read() as tx:
            return self._load_task(tx, task_id)

    def _load_task(self, tx: Tx, task_id: str) -> Task:
        return self._with_artifacts(tx, self._require(tx, task_id))

    def _with_artifacts(self, tx: Tx, row: dict[str, Any]) -> Task:
        """The task of a row just read or written, with its artifacts."""
        task = _row_to_task(row)
        task.artifacts = self._artifacts(tx, task.id)
        return task

    def _require(self, tx: Tx | Connection, task_id: str, lock: bool = False) -> dict[str, Any]:
        if _is_alchemy_connection(tx):
            tx = self._alchemy_tx(tx)
        row = tx.first("TASK_FOR_UPDATE" if lock else "TASK", {"task_id": task_id})
        if row is None:
            raise NotFound(f"no task with id '{task_id}'")
        return row

    def update_task(self, task_id: str, **fields: Any) -> Task:
        bad = set(fields) - UPDATABLE_FIELDS
        if bad:
            raise InvalidInput(
                f"cannot update field(s) {sorted(bad)}; allowed: {sorted(UPDATABLE_FIELDS)}"
            )
        values = _task_to_row(Task(**_defaults_for(fields)), only=fields.keys())
        _check_row(values)
        if "type" in values and values["type"] not in _TASK_TYPES:
            raise InvalidInput(f"unknown task type '{values['type']}'")
        values["last_update"] = now()
        with self._tx_write() as tx:
            row = self._require(tx, task_id, lock=True)
            if values.get("project"):
                self._ensure_project(tx, values["project"])
            _update_row(tx, {**row, **values})
            if "tags" in fields:
                self._write_tags(tx, task_id, values["tags"])
            if "runtime" in fields:
                self._write_props(tx, task_id, values["runtime"])
            task = self._load_task(tx, task_id)
        if values.get("project"):
            self._known_projects.add(values["project"])
        return task

    def merge_runtime(self, task_id: str, values: dict[str, Any]) -> Task:
        if not isinstance(values, dict):
            raise InvalidInput("runtime values must be an object")
        check_json(values, "runtime")
        with self._tx_write() as tx:
            row = self._require(tx, task_id, lock=True)
            runtime = dict(row["runtime"] or {})
            runtime.update(values)
            _update_row(tx, {**row, "runtime": runtime, "last_update": now()})
            self._write_props(tx, task_id, runtime)
            return self._load_task(tx, task_id)

    def _write_tags(self, tx: Tx, task_id: str, tags: Iterable[str], new: bool = False) -> None:
        if not new:
            tx.run("DELETE_TAGS_OF_TASK", {"task_id": task_id})
        unique = sorted({str(tag) for tag in tags})
        if unique:
            tx.run("INSERT_TAGS", [{"task_id": task_id, "tag": tag} for tag in unique])

    def _write_props(
        self, tx: Tx, task_id: str, runtime: dict[str, Any], new: bool = False
    ) -> None:
        if not new:
            tx.run("DELETE_PROPS_OF_TASK", {"task_id": task_id})
        rows = [{"task_id": task_id, "key": str(k), "value": _canon(v)} for k, v in runtime.items()]
        if rows:
            tx.run("INSERT_PROPS", rows)

    def set_status(
        self,
        task_id: str,
        status: str,
        message: str | None = None,
        expected: Sequence[str] | None = None,
    ) -> Task:
        with self._tx_write() as tx:
            row = self._require(tx, task_id, lock=True)
            row = self._set_status(tx, row, status, message, expected)
            task = self._with_artifacts(tx, row)
        self._ring()  # a pipeline watching this task, a claim waiting for a requeue
        return task

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

    def _set_status(
        self,
        tx: Tx,
        row: dict[str, Any],
        status: str,
        message: str | None,
        expected: Sequence[str] | None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Move the task of ``row`` (also setting ``extra`` columns); the row as it is now."""
        current = row["status"]
        if expected is not None and current not in {str(s) for s in expected}:
            raise Conflict(
                f"task {row['id']} is '{current}', expected one of {sorted(map(str, expected))}"
            )
        new = transition(current, status, row["id"])
        stamp = now()
        values: dict[str, Any] = {"status": new.value, "last_update": stamp}
        if message is not None:
            values["status_message"] = redact(message)
        if new is TaskStatus.in_progress:
            values["started"] = stamp
            values["completed"] = None
        elif new.is_terminal:
            values["completed"] = stamp
        if new is TaskStatus.created:
            values.update(started=None, completed=None, worker=None, queue=None)
        if current == TaskStatus.queued.value:
            tx.run("DELETE_ENTRY_OF_TASK", {"task_id": row["id"]})
        if current == TaskStatus.in_progress.value:
            values["lease_expires"] = None
        values.update(extra)
        row = {**row, **values}
        _update_row(tx, row)
        if new in _ENDS_ITS_STEPS and row["type"] == TaskTypes.controller.value:
            self._stop_steps(tx, row, new.value)
        return row

    def _stop_steps(self, tx: Tx, controller: dict[str, Any], how: str) -> None:
        """A pipeline that failed or was stopped (aborted, Ctrl-C, its agent lost) takes
        its steps along: queued ones leave their queue, running ones are marked stopped and
        their agents kill them. No step outlives its pipeline."""
        message = f"stopped: its pipeline {controller['id']} {how}"
        active = [TaskStatus.queued.value, TaskStatus.in_progress.value]
        for child in tx.all("CHILDREN_IN", {"parent": controller["id"], "statuses": active}):
            self._set_status(tx, child, TaskStatus.stopped.value, message, None)

    def clone_task(
        self,
        task_id: str,
        name: str | None = None,
        parent: str | None = None,
        project: str | None = None,
    ) -> Task:
        source = self.get_task(task_id)
        clone = Task(
            name=name if name is not None else source.name,
            project=project if project is not None else source.project,
            type=source.type,
            parent=parent if parent is not None else source.parent,
            tags=list(source.tags),
            comment=source.comment,
            script=dataclasses.replace(source.script),
            hyperparams=json.loads(json.dumps(source.hyperparams)),
            configuration=dict(source.configuration),
            container=dict(source.container),
            runtime={k: v for k, v in source.runtime.items() if not k.startswith("_")},
            output_uri=source.output_uri,
        )
        clone.runtime["cloned_from"] = source.id
        return self.create_task(clone)

    def query_tasks(
        self,
        project: str | None = None,
        name: str | None = None,
        status: str | Sequence[str] | None = None,
        tag: str | None = None,
        type: str | None = None,
        parent: str | None = None,
        runtime: dict[str, Any] | None = None,
        limit: int = 1000,
        id_prefix: str | None = None,
    ) -> list[Task]:
        if id_prefix is not None and len(id_prefix) > 64:
            raise InvalidInput("an id prefix is at most 64 characters (as long as an id)")
        if id_prefix and not _TASK_ID.fullmatch(id_prefix):
            return []  # no id holds anything but letters, digits, '_' and '-'
        for what, text in (("project", project), ("name", name), ("tag", tag), ("parent", parent)):
            if isinstance(text, str):
                check_text(text, what)
        self._reap_on_read()
        filters: list[str] = []
        params: dict[str, Any] = {"limit": max(1, min(int(limit), 100000))}
        if id_prefix:
            filters.append("id_prefix")
            if self.is_sqlite:  # a range on the id: exact (LIKE ignores case) and indexed
                params["id_low"] = id_prefix
                params["id_high"] = id_prefix[:-1] + chr(ord(id_prefix[-1]) + 1)
            else:
                params["id_like"] = _like_prefix(id_prefix)
        for key, value in (("project", project), ("name", name)):
            if value is not None:
                filters.append(key)
                params[key] = value
        if status is not None:
            filters.append("status")
            statuses = [status] if isinstance(status, str) else list(status)
            params["statuses"] = [str(s) for s in statuses]
        for key, value in (("tag", tag), ("type", type), ("parent", parent)):
            if value is not None:
                filters.append(key)
                params[key] = str(value) if key == "type" else value
        for n, (key, value) in enumerate((runtime or {}).items()):
            filters.append("runtime")
            params[f"prop_key_{n}"], params[f"prop_value_{n}"] = str(key), _canon(value)
        shape = tuple(filters)
        statement = query_name(shape)
        if self._raw is not None and statement in CATALOG:
            with self._tx_read() as tx:
                return [_row_to_task(r) for r in tx.all(statement, params)]
        with self._read() as conn:
            rows = conn.execute(q.tasks_query(shape, self.dialect), params).mappings()
            return [_row_to_task(r) for r in rows]

    def delete_task(self, task_id: str) -> None:
        with self._write() as conn:
            self._require(conn, task_id)
            for table in (
                t.queue_entries,
                t.task_tags,
                t.task_props,
                t.logs,
                t.scalars,
                t.plots,
                t.artifacts,
            ):
                conn.execute(sa.delete(table).where(table.c.task_id == task_id))
            conn.execute(sa.delete(t.tasks).where(t.tasks.c.id == task_id))

    # -- queues ---------------------------------------------------------------
    def create_queue(self, name: str) -> Queue:
        _validate_queue_name(name)
        with self._tx_write() as tx:
            queue_id = self._ensure_queue(tx, name)
        self._known_queues[name] = queue_id
        return self.get_queue(name)

    def _ensure_queue(self, tx: Tx, name: str) -> str:
        """The queue's id, creating the queue if need be. Callers remember the id in
        ``_known_queues`` once their transaction has committed."""
        if name in self._known_queues:
            return self._known_queues[name]
        tx.run("INSERT_QUEUE", {"id": new_id(), "name": name, "created": now()})
        return tx.scalar("QUEUE_ID", {"name": name})

    def _insert_entry(self, tx: Tx, queue_id: str, task_id: str, priority: int) -> None:
        entry = {"queue_id": queue_id, "task_id": task_id, "priority": int(priority)}
        tx.run("INSERT_ENTRY", {**entry, "enqueued": now()})

    def get_queue(self, name: str) -> Queue:
        for queue in self.list_queues():
            if queue.name == name:
                return queue
        raise NotFound(f"no queue named '{name}'")

    def list_queues(self) -> list[Queue]:
        self._reap_on_read()
        counts = (
            sa.select(t.queue_entries.c.queue_id, sa.func.count().label("n"))
            .group_by(t.queue_entries.c.queue_id)
            .subquery()
        )
        query = (
            sa.select(t.queues, sa.func.coalesce(counts.c.n, 0).label("length"))
            .select_from(t.queues.outerjoin(counts, counts.c.queue_id == t.queues.c.id))
            .order_by(t.queues.c.name)
        )
        with self._read() as conn:
            return [
                Queue(id=r["id"], name=r["name"], created=r["created"], length=int(r["length"]))
                for r in conn.execute(query).mappings()
            ]

    def enqueue(self, task_id: str, queue: str, priority: int = 0) -> Task:
        _validate_queue_name(queue)
        with self._tx_write() as tx:
            row = self._require(tx, task_id, lock=True)
            row = self._set_status(
                tx, row, TaskStatus.queued.value, "", None,
                queue=queue, worker=None, started=None, completed=None,
            )  # fmt: skip
            queue_id = self._ensure_queue(tx, queue)
            self._insert_entry(tx, queue_id, task_id, priority)
            task = self._with_artifacts(tx, row)
        self._known_queues[queue] = queue_id
        self.claim_signals.notify(queue)
        self._ring()
        return task

    def dequeue(self, task_id: str) -> Task:
        return self.set_status(
            task_id, TaskStatus.created.value, "dequeued", expected=[TaskStatus.queued.value]
        )

    def queue_entries(self, queue: str) -> list[str]:
        self._reap_on_read()
        query = (
            sa.select(t.queue_entries.c.task_id)
            .select_from(
                t.queue_entries.join(t.queues, t.queues.c.id == t.queue_entries.c.queue_id)
            )
            .where(t.queues.c.name == queue)
            .order_by(t.queue_entries.c.priority.desc(), t.queue_entries.c.id)
        )
        with self._read() as conn:
            return [r[0] for r in conn.execute(query)]

    def claim(
        self,
        queues: Sequence[str],
        worker_id: str,
        timeout: float = 0.0,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> Task | None:
        queues = [queues] if isinstance(queues, str) else list(queues)
        if not queues:
            raise InvalidInput("claim needs at least one queue")
        if timeout <= 0:
            if not self._any_waiting(queues):
                return None
            return self._claim_once(queues, worker_id, lease_s)
        return self._wait_and_claim(queues, worker_id, time.monotonic() + float(timeout), lease_s)

    def _wait_and_claim(
        self, queues: list[str], worker_id: str, deadline: float, lease_s: float
    ) -> Task | None:
        backoff = PollBackoff(deadline)
        with (
            self.listen_for_changes() as listener,
            self.claim_signals.waiting(queues, listener) as waiter,
        ):
            while (task := self.claim_step(queues, worker_id, lease_s, waiter)) is None:
                pause = backoff.next_pause()
                if pause is None:
                    return None
                waiter.wait(pause)
            return task

    def claim_step(
        self, queues: list[str], worker_id: str, lease_s: float, waiter: ClaimWaiter
    ) -> Task | None:
        """One look at the queues for a claim waiting with ``waiter``
        (:meth:`ClaimSignals.waiting <agent.store.wakeups.ClaimSignals.waiting>`): the
        task it takes, or None. Between two steps the claim waits for a wake-up."""
        # A wake-up means a task was enqueued here: claim without the read first.
        wakeups = waiter.take()
        if not wakeups and not self._any_waiting(queues):
            return None
        task = self._claim_once(queues, worker_id, lease_s)
        if task is not None:
            if task.queue in wakeups:
                wakeups.remove(task.queue)
            waiter.hand_on(wakeups)  # for tasks on its other queues: other claimers
        return task

    def _any_waiting(self, queues: list[str]) -> bool:
        # A cheap read first, so idle claimers polling an empty queue never take
        # SQLite's write lock.
        with self._tx_read() as tx:
            return tx.first("ANY_ENTRY", {"queues": queues}) is not None

    def _claim_once(self, queues: list[str], worker_id: str, lease_s: float) -> Task | None:
        with self._tx_write() as tx:
            for name in queues:
                task_id = tx.scalar("TAKE_HEAD", {"queue": name})
                if task_id is None and not self.is_sqlite:
                    task_id = tx.scalar("TAKE_HEAD_BELOW_LOCKED", {"queue": name})
                if task_id is None:
                    continue
                stamp = now()
                values = dict(
                    status=TaskStatus.in_progress.value,
                    worker=worker_id,
                    started=stamp,
                    completed=None,
                    last_update=stamp,
                    lease_expires=stamp + lease_s,
                    status_message="",
                )
                row = tx.first("CLAIM_TASK", {"task_id": task_id, **values})
                assert row is not None, task_id  # the entry's task: the foreign key holds it
                return self._with_artifacts(tx, row)
        return None

    # -- workers --------------------------------------------------------------
    def register_worker(
        self,
        worker_id: str,
        queues: Sequence[str],
        name: str = "",
        stats: dict[str, Any] | None = None,
    ) -> Worker:
        if not worker_id or len(worker_id) > 255:
            raise InvalidInput("worker id must be 1 to 255 characters")
        stamp = now()
        with self._write() as conn:
            exists = conn.execute(
                sa.select(t.workers.c.id).where(t.workers.c.id == worker_id)
            ).first()
            values = dict(
                name=name or worker_id,
                queues=list(queues),
                last_heartbeat=stamp,
                stats=without_non_finite(stats or {}),
            )
            if exists:
                conn.execute(
                    sa.update(t.workers).where(t.workers.c.id == worker_id).values(**values)
                )
            else:
                conn.execute(sa.insert(t.workers).values(id=worker_id, registered=stamp, **values))
        return self._worker(worker_id)

    def heartbeat(
        self, worker_id: str, stats: dict[str, Any] | None = None, lease_s: float = DEFAULT_LEASE_S
    ) -> Worker:
        stamp = now()
        with self._write() as conn:
            values: dict[str, Any] = {"last_heartbeat": stamp}
            if stats is not None:
                values["stats"] = without_non_finite(stats)
            result = conn.execute(
                sa.update(t.workers).where(t.workers.c.id == worker_id).values(**values)
            )
            if result.rowcount == 0:
                raise NotFound(f"no worker '{worker_id}' (register it first)")
            conn.execute(
                sa.update(t.tasks)
                .where(
                    sa.and_(
                        t.tasks.c.worker == worker_id,
                        t.tasks.c.status == TaskStatus.in_progress.value,
                    )
                )
                .values(lease_expires=stamp + lease_s)
            )
        return self._worker(worker_id)

    def unregister_worker(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(t.workers).where(t.workers.c.id == worker_id))

    def _worker(self, worker_id: str) -> Worker:
        for worker in self.list_workers():
            if worker.id == worker_id:
                return worker
        raise NotFound(f"no worker '{worker_id}'")

    def list_workers(self, alive_within: float | None = None) -> list[Worker]:
        self._reap_on_read()
        query = sa.select(t.workers).order_by(t.workers.c.id)
        if alive_within is not None:
            query = query.where(t.workers.c.last_heartbeat >= now() - alive_within)
        running = sa.select(t.tasks.c.id, t.tasks.c.worker).where(
            t.tasks.c.status == TaskStatus.in_progress.value
        )
        with self._read() as conn:
            by_worker: dict[str, list[str]] = {}
            for task_id, worker in conn.execute(running):
                by_worker.setdefault(worker, []).append(task_id)
            return [
                Worker(
                    id=r["id"],
                    name=r["name"],
                    queues=list(r["queues"]),
                    last_heartbeat=r["last_heartbeat"],
                    registered=r["registered"],
                    stats=dict(r["stats"] or {}),
                    tasks=by_worker.get(r["id"], []),
                )
                for r in conn.execute(query).mappings()
            ]

    def reap_expired(self) -> list[str]:
        with self._tx_write() as tx:
            lapsed = tx.all("LAPSED_TASKS", {"now": now()})
            for row in lapsed:
                self._set_status(tx, row, TaskStatus.failed.value, WORKER_LOST, None)
        if lapsed:
            self._ring()
        return [row["id"] for row in lapsed]

    def _reap_on_read(self) -> None:
        """Fail the tasks whose lease lapsed, at most once per :data:`REAP_ON_READ_S` in
        this process: every reader of the store (the CLI, the SDK, the UI) sees a vanished
        worker's task as lost, though no daemon or server runs to reap it. A cheap read
        first, so readers take no write lock while every lease holds."""
        clock = time.monotonic()
        if clock < self._next_reap_on_read:
            return
        self._next_reap_on_read = clock + REAP_ON_READ_S
        try:
            with self._tx_read() as tx:
                if tx.first("ANY_LAPSED", {"now": now()}) is None:
                    return
            lost = self.reap_expired()
        except Exception:  # the read itself must not fail for a reap it did not ask for
            log.warning("reaping lapsed leases on read failed", exc_info=True)
            return
        log.info("worker lost: failed %d task(s) whose lease lapsed: %s", len(lost), lost)

    # -- logs and metrics ---------------------------------------------------------
    def append_logs(self, task_id: str, lines: Iterable[str | tuple[float, str, str]]) -> int:
        rows = [_log_row(line) for line in lines]
        cap = self.max_log_lines
        with self._tx_write() as tx:
            self._require(tx, task_id, lock=True)
            last = tx.scalar("LAST_LOG_SEQ", {"task_id": task_id}) or 0
            if last + len(rows) < cap:
                tx.run(
                    "INSERT_LOG",
                    [dict(task_id=task_id, seq=last + i + 1, **row) for i, row in enumerate(rows)],
                )
                return last + len(rows)
            return self._append_past_cap(tx, task_id, rows, last, cap)

    def _append_past_cap(
        self, tx: Tx, task_id: str, rows: list[dict[str, Any]], last: int, cap: int
    ) -> int:
        """The log is full: lines up to ``cap - 1`` go in, and line ``cap`` says how many
        were dropped (updated as more are)."""
        kept = rows[: max(0, cap - 1 - last)]
        tx.run(
            "INSERT_LOG",
            [dict(task_id=task_id, seq=last + i + 1, **row) for i, row in enumerate(kept)],
        )
        dropped = len(rows) - len(kept)
        if last >= cap:  # the marker is there already: count these too
            marker = tx.first("LOG_LINE", {"task_id": task_id, "seq": cap})
            dropped += _dropped_count(marker["text"] if marker else "")
            tx.run(
                "UPDATE_LOG_TEXT",
                {"log_task": task_id, "log_seq": cap, "text": _cap_text(cap, dropped)},
            )
        elif dropped:
            marker = dict(ts=now(), level="warning", text=_cap_text(cap, dropped))
            tx.run("INSERT_LOG", [dict(task_id=task_id, seq=cap, **marker)])
        return min(cap, last + len(rows))

    def get_logs(self, task_id: str, after: int = 0, limit: int = 10000) -> list[LogLine]:
        query = (
            sa.select(t.logs)
            .where(sa.and_(t.logs.c.task_id == task_id, t.logs.c.seq > int(after)))
            .order_by(t.logs.c.seq)
            .limit(max(1, min(int(limit), 100000)))
        )
        with self._read() as conn:
            self._require(conn, task_id)
            return [
                LogLine(seq=r["seq"], ts=r["ts"], level=r["level"], text=r["text"])
                for r in conn.execute(query).mappings()
            ]

    def report_scalars(self, task_id: str, points: Iterable[tuple[str, str, int, float]]) -> None:
        rows = []
        for title, series, iteration, value in points:
            rows.append(
                dict(
                    task_id=task_id,
                    title=str(title),
                    series=str(series),
                    iteration=int(iteration),
                    value=_scalar_value(value),
                )
            )
        with self._tx_write() as tx:
            self._require(tx, task_id)
            tx.run("INSERT_SCALAR", rows)

    def get_scalars(self, task_id: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
        query = (
            sa.select(t.scalars)
            .where(t.scalars.c.task_id == task_id)
            .order_by(t.scalars.c.title, t.scalars.c.series, t.scalars.c.iteration)
        )
        result: dict[str, dict[str, list[tuple[int, float]]]] = {}
        with self._read() as conn:
            self._require(conn, task_id)
            for r in conn.execute(query).mappings():
                value = _NAN if r["value"] is None else r["value"]
                result.setdefault(r["title"], {}).setdefault(r["series"], []).append(
                    (r["iteration"], value)
                )
        return result

    def report_plot(
        self, task_id: str, title: str, series: str, iteration: int, figure: dict[str, Any]
    ) -> None:
        if not isinstance(figure, dict):
            raise InvalidInput("a plot's figure must be a JSON object")
        check_json(figure, f"plot {title!r}/{series!r}")
        key = dict(task_id=task_id, title=str(title), series=str(series), iteration=int(iteration))
        with self._write() as conn:
            self._require(conn, task_id)
            conn.execute(
                sa.delete(t.plots).where(
                    sa.and_(*(getattr(t.plots.c, k) == v for k, v in key.items()))
                )
            )
            conn.execute(sa.insert(t.plots).values(figure=figure, reported=now(), **key))

    def get_plots(self, task_id: str) -> list[dict[str, Any]]:
        query = sa.select(t.plots).where(t.plots.c.task_id == task_id).order_by(t.plots.c.reported)
        with self._read() as conn:
            self._require(conn, task_id)
            return [
                dict(
                    title=r["title"],
                    series=r["series"],
                    iteration=r["iteration"],
                    figure=r["figure"],
                )
                for r in conn.execute(query).mappings()
            ]

    # -- artifacts ----------------------------------------------------------------
    def add_artifact(self, task_id: str, artifact: Artifact) -> Artifact:
        if (
            not artifact.name
            or "/" in artifact.name
            or "\\" in artifact.name
            or artifact.name in (".", "..")
        ):
            raise InvalidInput(
                f"bad artifact name '{artifact.name}': use a plain name without '/' or '..'"
            )
        artifact = dataclasses.replace(artifact, created=artifact.created or now())
        values = dataclasses.asdict(artifact)
        check_json(values, f"artifact {artifact.name!r}")
        with self._tx_write() as tx:
            self._require(tx, task_id, lock=True)
            tx.run("DELETE_ARTIFACT", {"task_id": task_id, "name": artifact.name})
            tx.run("INSERT_ARTIFACT", {"task_id": task_id, **values})
            tx.run("TOUCH_TASK", {"task_id": task_id, "last_update": now()})
        return artifact

    def get_artifacts(self, task_id: str) -> dict[str, Artifact]:
        with self._tx_read() as tx:
            self._require(tx, task_id)
            return self._artifacts(tx, task_id)

    def _artifacts(self, tx: Tx, task_id: str) -> dict[str, Artifact]:
        return {r["name"]: _row_to_artifact(r) for r in tx.all("ARTIFACTS", {"task_id": task_id})}

    def find_artifact_by_hash(self, sha256: str) -> Artifact | None:
        if not sha256:  # artifacts without a hash must not match each other
            return None
        with self._read() as conn:
            row = (
                conn.execute(sa.select(t.artifacts).where(t.artifacts.c.sha256 == sha256).limit(1))
                .mappings()
                .first()
            )
        return _row_to_artifact(row) if row else None


# -- helpers --------------------------------------------------------------------------
def _sqlite_path(url: str) -> str:
    """The database file of a ``sqlite:///PATH`` URL (``:memory:`` or "" for memory), as
    SQLAlchemy reads it: %-escapes decoded; with a query (options), SQLAlchemy's own."""
    if "?" in url:
        return sa.engine.make_url(url).database or ""
    return unquote(url.split("///", 1)[-1]) if "///" in url else ""


def _is_alchemy_connection(value: Any) -> bool:
    # None can exist before the import; while another thread is still importing it, the
    # module is there without its classes (and then nothing is an instance of them yet).
    connection = getattr(sys.modules.get("sqlalchemy.engine"), "Connection", None)
    return connection is not None and isinstance(value, connection)


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching what starts with ``prefix`` (escape character ``\\``)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _update_row(tx: Tx, row: dict[str, Any]) -> None:
    """Write every column of a task's row (read in this transaction under its lock): one
    statement for any change, so SQLite runs it from the catalog."""
    tx.run("UPDATE_TASK", {**{k: row[k] for k in _UPDATE_COLUMNS}, "task_id": row["id"]})


def _is_integrity_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    # SQLAlchemy's or psycopg's, when in use (neither raised if it was never imported).
    alchemy, psycopg = sys.modules.get("sqlalchemy.exc"), sys.modules.get("psycopg")
    return (alchemy is not None and isinstance(exc, alchemy.IntegrityError)) or (
        psycopg is not None and isinstance(exc, psycopg.IntegrityError)
    )


# -- row <-> record -------------------------------------------------------------------
def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    # A dataclass is stored as its fields (as Task.to_dict would), anything else as text.
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _defaults_for(fields: dict[str, Any]) -> dict[str, Any]:
    values = dict(fields)
    if isinstance(values.get("script"), dict):
        values["script"] = _script(values["script"])
    return values


def _script(data: dict[str, Any] | None) -> Script:
    return Script(**{k: v for k, v in (data or {}).items() if k in _SCRIPT_FIELDS})


def _task_to_row(task: Task, only: Iterable[str] | None = None) -> dict[str, Any]:
    """The task's columns, holding what reading them back would give (and nothing that
    the caller's Task shares: every JSON column is a new object)."""
    row = {name: getattr(task, name) for name in _TASK_COLUMNS}
    script = row["script"]
    if dataclasses.is_dataclass(script):
        row["script"] = {name: getattr(script, name) for name in _SCRIPT_FIELDS}
    row["type"] = str(row["type"].value if hasattr(row["type"], "value") else row["type"])
    row["tags"] = [str(tag) for tag in row["tags"] or []]
    for key in ("hyperparams", "configuration", "container", "runtime"):
        row[key] = json.loads(_canon(row[key] or {}))
    row["script"] = json.loads(json.dumps(row["script"]))
    # A record keeps no secret: agents take credentials from their own configuration.
    row["script"]["repository"] = strip_url_credentials(row["script"].get("repository") or "")
    row["status_message"] = redact(row["status_message"] or "")
    if only is not None:
        row = {k: row[k] for k in only}
    return row


def _row_to_task(row: Any) -> Task:
    data = {k: row[k] for k in row.keys() if k != "lease_expires"}
    data["script"] = _script(data["script"])
    return Task.from_dict(data)


def _row_to_artifact(row: Any) -> Artifact:
    return Artifact(**{k: row[k] for k in row.keys() if k != "task_id"})


def _log_row(line: str | tuple[float, str, str] | dict[str, Any]) -> dict[str, Any]:
    if isinstance(line, str):
        return dict(ts=now(), level="info", text=_log_text(line))
    if isinstance(line, dict):
        return dict(
            ts=float(line.get("ts") or now()),
            level=str(line.get("level", "info")),
            text=_log_text(line["text"]),
        )
    ts, level, text = line
    return dict(ts=float(ts), level=str(level), text=_log_text(text))


def _log_text(text: Any) -> str:
    # PostgreSQL text cannot hold NUL; a process printing one must not lose its log batch.
    return cut_log_line(redact(str(text)).replace("\x00", "\ufffd"))


_NAN = float("nan")


def _scalar_value(value: Any) -> float | None:
    """A scalar's column value: NaN is stored as NULL (SQLite has no NaN; PostgreSQL
    does, but one encoding serves both), infinities as they are."""
    number = scalar_number(value)
    return None if math.isnan(number) else number


#: A controller moving to one of these stops its queued and running steps.
_ENDS_ITS_STEPS = frozenset({TaskStatus.failed, TaskStatus.stopped})

#: The columns of a task row that hold JSON, and those that hold text.
_JSON_COLUMNS = ("tags", "script", "hyperparams", "configuration", "container", "runtime")
_TEXT_COLUMNS = ("name", "project", "comment", "status_message", "output_uri", "parent")


def _check_row(row: dict[str, Any]) -> None:
    """Refuse, before any write, a task's value that no backend can store alike."""
    for column in _JSON_COLUMNS:
        if column in row:
            check_json(row[column], column)
    for column in _TEXT_COLUMNS:
        if isinstance(row.get(column), str):
            check_text(row[column], column)


#: Lines a task's log keeps (AGENT_MAX_LOG_LINES); line N says how many more were dropped.
DEFAULT_MAX_LOG_LINES = 1_000_000
_CAP_TEXT = "[agent] the log reached its cap of {cap} lines: {dropped} later line(s) dropped"
_DROPPED = re.compile(r": ([0-9]+) later line")


def _cap_text(cap: int, dropped: int) -> str:
    return _CAP_TEXT.format(cap=cap, dropped=dropped)


def _dropped_count(text: str) -> int:
    match = _DROPPED.search(text)
    return int(match.group(1)) if match else 0


def _max_log_lines() -> int:
    value = os.environ.get("AGENT_MAX_LOG_LINES", "")
    try:
        return max(2, int(value)) if value else DEFAULT_MAX_LOG_LINES
    except ValueError:
        raise InvalidInput(f"AGENT_MAX_LOG_LINES={value!r} is not a number of lines") from None


def _validate_task(task: Task) -> None:
    if not isinstance(task.id, str) or not _TASK_ID.fullmatch(task.id):
        raise InvalidInput(f"bad task id {task.id!r}: use 1 to 64 letters, digits, '_' or '-'")
    if str(task.type) not in _TASK_TYPES:
        raise InvalidInput(f"unknown task type '{task.type}'; one of {sorted(_TASK_TYPES)}")
    if len(task.name) > 255 or len(task.project) > 255:
        raise InvalidInput("task and project names are at most 255 characters")


def _validate_queue_name(name: str) -> None:
    if not name or len(name) > 255 or not isinstance(name, str):
        raise InvalidInput("queue name must be 1 to 255 characters")
