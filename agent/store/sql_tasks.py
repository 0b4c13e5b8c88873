"""Tasks and projects of :class:`~agent.store.sql.SqlBackend`: create, read, change,
move through their statuses, clone, query and delete tasks; and a task's row <-> record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from agent.core.errors import Conflict, InvalidInput, NotFound
from agent.core.lazy import LazyModule
from agent.core.models import (
    ALLOWED_TRANSITIONS,
    Script,
    Task,
    TaskStatus,
    TaskTypes,
    now,
    transition,
)  # fmt: skip
from agent.core.secrets import redact, strip_url_credentials
from agent.core.values import check_json, check_text
from agent.store.base import UPDATABLE_FIELDS
from agent.store.sql_queues import _validate_queue_name
from agent.store.sqlite_catalog import STATEMENTS as CATALOG
from agent.store.tx import NEW, Tx, query_name

log = logging.getLogger("agent.store")

if TYPE_CHECKING:
    from sqlalchemy import Connection

sa = LazyModule("sqlalchemy")
t = LazyModule("agent.store.schema")
q = LazyModule("agent.store.statements")

_TASK_TYPES = {t_.value for t_ in TaskTypes}
_SCRIPT_FIELDS = tuple(f.name for f in dataclasses.fields(Script))
#: The task columns a Task gives (artifacts live in their own table).
_TASK_COLUMNS = tuple(f.name for f in dataclasses.fields(Task) if f.name != "artifacts")
#: What a task row's full update sets: the table's columns but its id.
_UPDATE_COLUMNS = (*(c for c in _TASK_COLUMNS if c != "id"), "lease_expires")
#: Task ids: what fits the id column and a URL path segment (uuid4 hex and more).
_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class SqlTasks:
    """Mixed into SqlBackend: projects and tasks (the plumbing is SqlBackend's)."""

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
            if not self._create_in_one(row, queue, priority):
                self._create_in_transaction(row, queue, priority)
        except Exception as exc:
            if not _is_integrity_error(exc):
                raise
            if self._task_exists(task.id):
                raise Conflict(f"task {task.id} already exists") from None
            raise
        self._known_projects.add(task.project)
        if queue is not None:
            self.claim_signals.notify(queue)
            self._ring()
        # The row as stored, read back as get_task would (a new task has no artifacts).
        return _row_to_task(row)

    def _create_in_one(self, row: dict[str, Any], queue: str | None, priority: int) -> bool:
        """PostgreSQL, once the project and the queue are known: the task with its tags,
        properties and queue entry in one statement (see ``statements.CREATE_TASK``).
        False when this takes the transaction instead."""
        if self.is_sqlite or (row["project"] and row["project"] not in self._known_projects):
            return False
        if queue is not None and queue not in self._known_queues:
            return False
        params = {NEW + k: v for k, v in row.items()}
        params["tags"] = _unique_tags(row["tags"])
        props = _props(row["runtime"])
        params["prop_keys"] = [k for k, _ in props]
        params["prop_values"] = [v for _, v in props]
        name = "CREATE_TASK"
        if queue is not None:
            name = "CREATE_QUEUED_TASK"
            params.update(
                queue_id=self._known_queues[queue], priority=int(priority), enqueued=now()
            )
        with self._pg_pool().autocommit() as tx:
            tx.run(name, params)
        return True

    def _create_in_transaction(self, row: dict[str, Any], queue: str | None, priority: int) -> None:
        task_id = row["id"]
        with self._tx_write() as tx:
            self._ensure_project(tx, row["project"])
            tx.run("INSERT_TASK", row)
            self._write_tags(tx, task_id, row["tags"], new=True)
            self._write_props(tx, task_id, row["runtime"], new=True)
            if queue is not None:
                queue_id = self._ensure_queue(tx, queue)
                self._insert_entry(tx, queue_id, task_id, priority)
        if queue is not None:
            self._known_queues[queue] = queue_id

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
        """The task of a row just read or written, with its artifacts (none to read where
        the row says it has none: PostgreSQL's locking read and claim tell)."""
        task = _row_to_task(row)
        task.artifacts = self._artifacts(tx, task.id) if row.get("has_artifacts", True) else {}
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
        unique = _unique_tags(tags)
        if unique:
            tx.run("INSERT_TAGS", [{"task_id": task_id, "tag": tag} for tag in unique])

    def _write_props(
        self, tx: Tx, task_id: str, runtime: dict[str, Any], new: bool = False
    ) -> None:
        if not new:
            tx.run("DELETE_PROPS_OF_TASK", {"task_id": task_id})
        rows = [{"task_id": task_id, "key": k, "value": v} for k, v in _props(runtime)]
        if rows:
            tx.run("INSERT_PROPS", rows)

    def set_status(
        self,
        task_id: str,
        status: str,
        message: str | None = None,
        expected: Sequence[str] | None = None,
    ) -> Task:
        task = self._finish_running(task_id, status, message, expected)
        if task is None:
            with self._tx_write() as tx:
                row = self._require(tx, task_id, lock=True)
                row = self._set_status(tx, row, status, message, expected)
                task = self._with_artifacts(tx, row)
        self.task_stops.changed({task_id: task.status})
        if task.type == TaskTypes.controller.value and task.status in _ENDS_ITS_STEPS:
            self.task_stops.changed(None)  # its running steps were stopped too
        self._ring()  # a pipeline watching this task, a claim waiting for a requeue
        return task

    def _finish_running(
        self, task_id: str, status: str, message: str | None, expected: Sequence[str] | None
    ) -> Task | None:
        """PostgreSQL: a running task's end (completed, failed, stopped) in one statement
        (``statements.FINISH_RUNNING``), as :meth:`_set_status` would make it; None when
        the task is not running, is a controller, or this is not such an end: the caller
        then takes the general path, which also says what is wrong."""
        if self.is_sqlite or status not in FINISHES:
            return None
        if expected is not None and TaskStatus.in_progress.value not in {str(s) for s in expected}:
            return None
        params = {
            "task_id": task_id,
            "end_status": str(status),
            "stamp": now(),
            "message": None if message is None else redact(message),
        }
        with self._pg_pool().autocommit() as tx:
            row = tx.first("FINISH_RUNNING", params)
            if row is None:
                return None
            try:
                return self._with_artifacts(tx, row)
            except Exception:  # the end is committed: read the task again, not fail it
                log.warning("reading task %s's artifacts failed; reading it again", task_id)
        return self.get_task(task_id)

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
        offset: int = 0,
        text: str | None = None,
    ) -> list[Task]:
        if id_prefix is not None and len(id_prefix) > 64:
            raise InvalidInput("an id prefix is at most 64 characters (as long as an id)")
        if id_prefix and not _TASK_ID.fullmatch(id_prefix):
            return []  # no id holds anything but letters, digits, '_' and '-'
        given = (("project", project), ("name", name), ("tag", tag), ("parent", parent))
        for what, value in (*given, ("text", text)):
            if isinstance(value, str):
                check_text(value, what)
        self._reap_on_read()
        filters: list[str] = []
        params: dict[str, Any] = {
            "limit": max(1, min(int(limit), 100000)),
            "offset": max(0, int(offset)),
        }
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
        if text:
            filters.append("text")
            params["text_like"] = "%" + _like_prefix(text.lower())
        for n, (key, value) in enumerate((runtime or {}).items()):
            filters.append("runtime")
            params[f"prop_key_{n}"], params[f"prop_value_{n}"] = str(key), _prop(value)
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
        self.task_stops.changed({task_id: None})


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


#: Longest runtime value (canonical JSON, ASCII) that ``task_props`` holds as it is; a
#: longer one is held as its digest. PostgreSQL's btree index takes rows up to ~2.7 kB only:
#: a pipeline's report of a few hundred steps is past that.
PROP_INLINE_MAX = 1024


def _prop(value: Any) -> str:
    """``value`` as its ``task_props`` row holds it, for an indexed ``runtime=`` lookup: its
    canonical JSON, or ``sha256:HEX`` of that past :data:`PROP_INLINE_MAX` (no JSON text
    starts so: the two never meet)."""
    canonical = _canon(value)
    if len(canonical) <= PROP_INLINE_MAX:
        return canonical
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


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


#: What a task's row may hold besides the Task's fields.
_NOT_TASK_FIELDS = frozenset({"lease_expires", "has_artifacts"})


def _row_to_task(row: Any) -> Task:
    data = {k: row[k] for k in row.keys() if k not in _NOT_TASK_FIELDS}
    data["script"] = _script(data["script"])
    return Task.from_dict(data)


def _unique_tags(tags: Iterable[Any]) -> list[str]:
    """A task's tags as its tag rows hold them: each once, sorted."""
    return sorted({str(tag) for tag in tags})


def _props(runtime: dict[str, Any]) -> list[tuple[str, str]]:
    """A task's runtime as its property rows hold it: (key, value as stored)."""
    return [(str(k), _prop(v)) for k, v in runtime.items()]


#: A controller moving to one of these stops its queued and running steps.
_ENDS_ITS_STEPS = frozenset({TaskStatus.failed, TaskStatus.stopped})
#: The statuses a running task ends in: PostgreSQL moves it there in one statement.
FINISHES = frozenset(
    s.value for s in ALLOWED_TRANSITIONS[TaskStatus.in_progress] if s.is_terminal
)  # fmt: skip

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


def _validate_task(task: Task) -> None:
    if not isinstance(task.id, str) or not _TASK_ID.fullmatch(task.id):
        raise InvalidInput(f"bad task id {task.id!r}: use 1 to 64 letters, digits, '_' or '-'")
    if str(task.type) not in _TASK_TYPES:
        raise InvalidInput(f"unknown task type '{task.type}'; one of {sorted(_TASK_TYPES)}")
    if len(task.name) > 255 or len(task.project) > 255:
        raise InvalidInput("task and project names are at most 255 characters")
