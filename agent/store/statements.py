"""Statements of the SQL store's frequent operations, built once.

Building a SQLAlchemy statement and computing its cache key costs more than SQLite
takes to run a small query; a statement built at import skips both on every call
(its cache key is memoized, its compiled form cached per dialect). Values come as
bound parameters: ``task_id`` in the WHERE clause, the columns to set as the other
keys of the parameters (``conn.execute(UPDATE_TASK, {"task_id": id, "status": s})``).
"""

from __future__ import annotations

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Delete, Insert

from agent.store import schema as t

_tasks, _entries, _queues = t.tasks, t.queue_entries, t.queues

TASK = select(_tasks).where(_tasks.c.id == bindparam("task_id"))
#: PostgreSQL: lock the row for a read-modify-write (SQLite's writes are serialized anyway).
TASK_FOR_UPDATE = TASK.with_for_update()
TASK_EXISTS = select(_tasks.c.id).where(_tasks.c.id == bindparam("task_id"))
ARTIFACTS = (
    select(t.artifacts)
    .where(t.artifacts.c.task_id == bindparam("task_id"))
    .order_by(t.artifacts.c.created)
)

INSERT_TASK = insert(_tasks)
INSERT_TAGS = insert(t.task_tags)
DELETE_TAGS_OF_TASK = delete(t.task_tags).where(t.task_tags.c.task_id == bindparam("task_id"))
INSERT_PROPS = insert(t.task_props)
DELETE_PROPS_OF_TASK = delete(t.task_props).where(t.task_props.c.task_id == bindparam("task_id"))
UPDATE_TASK = update(_tasks).where(_tasks.c.id == bindparam("task_id"))
#: The update of a claim, answering the task's row (no second read).
UPDATE_TASK_RETURNING = UPDATE_TASK.returning(*_tasks.c)

INSERT_ENTRY = insert(_entries)
DELETE_ENTRY_OF_TASK = delete(_entries).where(_entries.c.task_id == bindparam("task_id"))
#: Any entry on any of the queues: the cheap read before a claim takes the write lock.
ANY_ENTRY = (
    select(_entries.c.id)
    .select_from(_entries.join(_queues, _queues.c.id == _entries.c.queue_id))
    .where(_queues.c.name.in_(bindparam("queues", expanding=True)))
    .limit(1)
)
QUEUE_ID = select(_queues.c.id).where(_queues.c.name == bindparam("name"))

_QUEUE_OF_NAME = select(_queues.c.id).where(_queues.c.name == bindparam("queue")).scalar_subquery()
_top = _entries.alias("top")
#: The head: highest priority first, then FIFO. ``ORDER BY priority DESC, id`` would
#: sort a whole priority level on every claim (the index is ascending on both), so
#: this finds the top priority, then its first entry: two index lookups.
_HEAD = (
    select(_entries.c.id)
    .where(
        _entries.c.queue_id == _QUEUE_OF_NAME,
        _entries.c.priority
        == select(func.max(_top.c.priority))
        .where(_top.c.queue_id == _QUEUE_OF_NAME)
        .scalar_subquery(),
    )
    .order_by(_entries.c.id)
    .limit(1)
)
#: Any entry, in claim order: when concurrent claims hold every head of the top priority.
_ANY_HEAD = (
    select(_entries.c.id)
    .where(_entries.c.queue_id == _QUEUE_OF_NAME)
    .order_by(_entries.c.priority.desc(), _entries.c.id)
    .limit(1)
)


def take_head(dialect_name: str, skip_top: bool = False) -> Delete:
    """Delete the head entry of queue ``:queue`` (highest priority, then FIFO), returning
    its ``task_id``. PostgreSQL skips entries that concurrent claims have locked; there,
    ``skip_top`` looks past a top priority whose entries are all locked."""
    head = _ANY_HEAD if skip_top else _HEAD
    if dialect_name != "sqlite":
        # Lock the entry and its task in one go, skipping either when taken: a status
        # change (abort of a queued task) locks the task first and then the entry, so
        # taking them one after the other here could deadlock with it.
        head = head.join(_tasks, _tasks.c.id == _entries.c.task_id).with_for_update(
            skip_locked=True, of=[_entries, _tasks]
        )
    return (
        delete(_entries)
        .where(_entries.c.id == head.scalar_subquery())
        .returning(_entries.c.task_id)
    )


def insert_ignoring_duplicates(dialect_name: str, table, key: str) -> Insert:
    """``INSERT ... ON CONFLICT (key) DO NOTHING``: two writers creating the same project
    or queue at once both succeed (PostgreSQL runs them concurrently)."""
    dialect_insert = sqlite.insert if dialect_name == "sqlite" else postgresql.insert
    return dialect_insert(table).on_conflict_do_nothing(index_elements=[key])
