"""Statements of the SQL store's frequent operations, built once.

Building a SQLAlchemy statement and computing its cache key costs more than SQLite
takes to run a small query; a statement built at import skips both on every call
(its cache key is memoized, its compiled form cached per dialect). Values come as
bound parameters: ``task_id`` in the WHERE clause, the columns to set as the other
keys of the parameters (``conn.execute(UPDATE_TASK, {"task_id": id, "status": s})``).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Text,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)  # fmt: skip
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import Delete, Executable, Insert, Select, Update

from agent.core.models import TaskStatus, TaskTypes
from agent.store import schema as t
from agent.store.tx import NEW, query_name

_tasks, _entries, _queues, _workers = t.tasks, t.queue_entries, t.queues, t.workers

TASK = select(_tasks).where(_tasks.c.id == bindparam("task_id"))
#: PostgreSQL: lock the row for a read-modify-write (SQLite's writes are serialized anyway).
TASK_FOR_UPDATE = TASK.with_for_update()
#: PostgreSQL: whether the task has artifacts, read with its row (no read of none).
HAS_ARTIFACTS = exists().where(t.artifacts.c.task_id == _tasks.c.id).label("has_artifacts")
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

#: In-progress tasks whose lease lapsed before ``:now`` (their worker stopped beating).
_LAPSED = (
    _tasks.c.status == TaskStatus.in_progress.value,
    _tasks.c.lease_expires < bindparam("now"),
)
#: Any lapsed lease: the cheap read before a reader's reap takes the write lock.
ANY_LAPSED = select(_tasks.c.id).where(*_LAPSED).limit(1)
LAPSED_TASKS = select(_tasks).where(*_LAPSED)

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


def take_head(dialect_name: str) -> Delete:
    """Delete the head entry of queue ``:queue`` (highest priority, then FIFO), returning
    its ``task_id``. PostgreSQL skips entries that concurrent claims have locked, and
    looks past a top priority whose entries are all locked."""
    if dialect_name == "sqlite":
        head = _HEAD.scalar_subquery()
    else:
        # Lock the entry and its task in one go, skipping either when taken: a status
        # change (abort of a queued task) locks the task first and then the entry, so
        # taking them one after the other here could deadlock with it. COALESCE runs
        # the second look only when the first finds nothing (an empty queue, or every
        # head of the top priority locked): one statement either way.
        head = func.coalesce(
            *(
                look.join(_tasks, _tasks.c.id == _entries.c.task_id)
                .with_for_update(skip_locked=True, of=[_entries, _tasks])
                .scalar_subquery()
                for look in (_HEAD, _ANY_HEAD)
            )
        )
    return delete(_entries).where(_entries.c.id == head).returning(_entries.c.task_id)


def claim_head(dialect_name: str) -> Update:
    """PostgreSQL: take the head entry of queue ``:queue`` (:func:`take_head`) and claim
    its task (the columns of ``CLAIM_COLUMNS``) in one statement, answering the task's
    row and whether it has artifacts: one round trip for what took three."""
    taken = take_head(dialect_name).cte("taken")
    return update(_tasks).where(_tasks.c.id == taken.c.task_id).returning(*_tasks.c, HAS_ARTIFACTS)


def insert_ignoring_duplicates(dialect_name: str, table, key: str) -> Insert:
    """``INSERT ... ON CONFLICT (key) DO NOTHING``: two writers creating the same project
    or queue at once both succeed (PostgreSQL runs them concurrently)."""
    dialect_insert = sqlite.insert if dialect_name == "sqlite" else postgresql.insert
    return dialect_insert(table).on_conflict_do_nothing(index_elements=[key])


# -- named statements -------------------------------------------------------------------
#: The task columns a full-row write sets (the id goes in the WHERE clause).
TASK_COLUMNS = tuple(c.name for c in _tasks.c)
_TASK_VALUES = tuple(name for name in TASK_COLUMNS if name != "id")
#: The columns a claim sets.
CLAIM_COLUMNS = (
    "status",
    "worker",
    "started",
    "completed",
    "last_update",
    "lease_expires",
    "status_message",
)
_logs, _artifacts, _samples = t.logs, t.artifacts, t.worker_stats

#: The in-progress tasks whose lease ``:worker_id`` holds.
_RUNNING_UNDER = (
    _tasks.c.worker == bindparam("worker_id"),
    _tasks.c.status == TaskStatus.in_progress.value,
)
#: A heartbeat: the worker's row, answered as it is now (no rowcount, no second read).
_BEAT = update(_workers).where(_workers.c.id == bindparam("worker_id")).returning(*_workers.c)


def named(dialect_name: str) -> dict[str, tuple[Executable, tuple[str, ...]]]:
    """The statements of SqlBackend's busy paths by name, for a dialect, each with the
    parameter names it is always called with (an INSERT's or UPDATE's columns).

    Statements are called by name so that the embedded SQLite store can run them from
    :mod:`agent.store.sqlite_catalog` (their SQLite form, compiled ahead) without
    importing SQLAlchemy: that import is most of a short pipeline's run time.
    """
    pg = dialect_name != "sqlite"
    statements = {
        "TASK": (TASK, ("task_id",)),
        "TASK_FOR_UPDATE": (
            TASK_FOR_UPDATE.add_columns(HAS_ARTIFACTS) if pg else TASK,
            ("task_id",),
        ),
        "TASK_EXISTS": (TASK_EXISTS, ("task_id",)),
        # A writer of what a task owns (log lines) locks its row without reading it.
        "LOCK_TASK": (TASK_EXISTS.with_for_update() if pg else TASK_EXISTS, ("task_id",)),
        "INSERT_TASK": (INSERT_TASK, TASK_COLUMNS),
        "UPDATE_TASK": (UPDATE_TASK, (*_TASK_VALUES, "task_id")),
        "CLAIM_TASK": (UPDATE_TASK_RETURNING, (*CLAIM_COLUMNS, "task_id")),
        "TOUCH_TASK": (UPDATE_TASK, ("last_update", "task_id")),
        "INSERT_TAGS": (INSERT_TAGS, ("task_id", "tag")),
        "DELETE_TAGS_OF_TASK": (DELETE_TAGS_OF_TASK, ("task_id",)),
        "INSERT_PROPS": (INSERT_PROPS, ("task_id", "key", "value")),
        "DELETE_PROPS_OF_TASK": (DELETE_PROPS_OF_TASK, ("task_id",)),
        "INSERT_PROJECT": (insert_ignoring_duplicates(dialect_name, t.projects, "name"), ()),
        "INSERT_QUEUE": (insert_ignoring_duplicates(dialect_name, _queues, "name"), ()),
        "QUEUE_ID": (QUEUE_ID, ("name",)),
        "INSERT_ENTRY": (INSERT_ENTRY, ("queue_id", "task_id", "priority", "enqueued")),
        "DELETE_ENTRY_OF_TASK": (DELETE_ENTRY_OF_TASK, ("task_id",)),
        "ANY_ENTRY": (ANY_ENTRY, ("queues",)),
        "ANY_LAPSED": (ANY_LAPSED, ("now",)),
        # PostgreSQL: a row another transaction holds (its worker's heartbeat renewing
        # the lease, another reaper) is skipped; the next reap sees it as it is then.
        "LAPSED_TASKS": (
            LAPSED_TASKS.with_for_update(skip_locked=True) if pg else LAPSED_TASKS,
            ("now",),
        ),
        "TAKE_HEAD": (take_head(dialect_name), ("queue",)),
        "ARTIFACTS": (ARTIFACTS, ("task_id",)),
        "DELETE_ARTIFACT": (
            delete(_artifacts).where(
                _artifacts.c.task_id == bindparam("task_id"),
                _artifacts.c.name == bindparam("name"),
            ),
            ("task_id", "name"),
        ),
        "INSERT_ARTIFACT": (insert(_artifacts), tuple(c.name for c in _artifacts.c)),
        "CHILDREN_IN": (
            select(_tasks).where(
                _tasks.c.parent == bindparam("parent"),
                _tasks.c.status.in_(bindparam("statuses", expanding=True)),
            ),
            ("parent", "statuses"),
        ),
        "LAST_LOG_SEQ": (
            select(func.max(_logs.c.seq)).where(_logs.c.task_id == bindparam("task_id")),
            ("task_id",),
        ),
        "INSERT_LOG": (insert(_logs), tuple(c.name for c in _logs.c)),
        "LOG_LINE": (
            select(_logs).where(
                _logs.c.task_id == bindparam("task_id"), _logs.c.seq == bindparam("seq")
            ),
            ("task_id", "seq"),
        ),
        "UPDATE_LOG_TEXT": (
            update(_logs).where(
                _logs.c.task_id == bindparam("log_task"), _logs.c.seq == bindparam("log_seq")
            ),
            ("text", "log_task", "log_seq"),
        ),
        "INSERT_SCALAR": (insert(t.scalars), tuple(c.name for c in t.scalars.c)),
        "BEAT": (_BEAT, ("last_heartbeat", "worker_id")),
        "BEAT_WITH_STATS": (_BEAT, ("last_heartbeat", "stats", "worker_id")),
        "RENEW_LEASES": (
            update(_tasks).where(*_RUNNING_UNDER).returning(_tasks.c.id),
            ("lease_expires", "worker_id"),
        ),
        "INSERT_WORKER": (
            insert(_workers),
            ("id", "name", "queues", "last_heartbeat", "registered", "stats"),
        ),
        "UPDATE_WORKER": (
            update(_workers).where(_workers.c.id == bindparam("worker_id")).returning(*_workers.c),
            ("name", "queues", "last_heartbeat", "stats", "worker_id"),
        ),
        "WORKER": (select(_workers).where(_workers.c.id == bindparam("worker_id")), ("worker_id",)),
        "INSERT_STATS_SAMPLE": (insert(_samples), ("worker_id", "ts", "stats")),
        "TRIM_STATS_SAMPLES": (
            delete(_samples).where(
                _samples.c.worker_id == bindparam("worker_id"),
                _samples.c.ts
                < select(_samples.c.ts)
                .where(_samples.c.worker_id == bindparam("worker_id"))
                .order_by(_samples.c.ts.desc())
                .offset(bindparam("skip"))
                .limit(1)
                .scalar_subquery(),
            ),
            ("worker_id", "skip"),
        ),
        "RUNNING_UNDER": (select(_tasks.c.id).where(*_RUNNING_UNDER), ("worker_id",)),
        "TASK_STATUSES": (
            select(_tasks.c.id, _tasks.c.status).where(
                _tasks.c.id.in_(bindparam("task_ids", expanding=True))
            ),
            ("task_ids",),
        ),
    }
    if pg:
        statements.update(_pg_only())
    if not pg:  # the catalog's; on PostgreSQL SqlBackend builds a query per call
        for shape in QUERY_SHAPES:
            statements[query_name(shape)] = (tasks_query(shape, "sqlite"), _query_keys(shape))
    # The ignoring inserts name their columns through their parameters.
    statements["INSERT_PROJECT"] = (statements["INSERT_PROJECT"][0], ("name", "created"))
    statements["INSERT_QUEUE"] = (statements["INSERT_QUEUE"][0], ("id", "name", "created"))
    return statements


# -- PostgreSQL: one statement for what took a transaction ------------------------------
# On PostgreSQL every statement is a round trip, and so are the BEGIN and COMMIT of a
# transaction: the server's psycopg calls and PostgreSQL's backend each pay for every one.
# The busiest writes are therefore single statements there, run in autocommit (one
# statement is one transaction): a task's create with its tags, properties and queue entry,
# a running task's end, a heartbeat with its stats sample and lease renewals, a log append.
# Measured on
# the 2-core machine, a create with its queue entry took 0.27 ms of client CPU and 0.31 ms
# of PostgreSQL's as a transaction, 0.12 and 0.19 ms as one statement.


def _create_task(queued: bool) -> Select:
    """Insert a task (the columns as ``:new_<column>``), its tags (``:tags``, a list), its
    runtime properties (``:prop_keys`` and ``:prop_values``, two lists) and, when
    ``queued``, its queue entry (``:queue_id``, ``:priority``, ``:enqueued``); answers
    its id. The project and the queue exist already (the caller checks it)."""
    new = (
        insert(_tasks)
        .values({c.name: bindparam(NEW + c.name, type_=c.type) for c in _tasks.c})
        .returning(_tasks.c.id)
        .cte("new_task")
    )
    tags = insert(t.task_tags).from_select(
        ["task_id", "tag"], select(new.c.id, func.unnest(cast(bindparam("tags"), ARRAY(Text))))
    )
    props = insert(t.task_props).from_select(
        ["task_id", "key", "value"],
        select(
            new.c.id,
            func.unnest(cast(bindparam("prop_keys"), ARRAY(Text))),
            func.unnest(cast(bindparam("prop_values"), ARRAY(Text))),
        ),
    )
    ctes = [tags.cte("new_tags"), props.cte("new_props")]
    if queued:
        entry = insert(_entries).from_select(
            ["queue_id", "task_id", "priority", "enqueued"],
            select(
                cast(bindparam("queue_id"), _entries.c.queue_id.type),
                new.c.id,
                cast(bindparam("priority"), _entries.c.priority.type),
                cast(bindparam("enqueued"), _entries.c.enqueued.type),
            ),
        )
        ctes.append(entry.cte("new_entry"))
    return select(new.c.id).add_cte(*ctes)


def _finish_running() -> Update:
    """End a running task that is not a pipeline's controller (whose end also stops its
    steps): ``:end_status`` (completed, failed or stopped) at ``:stamp``, with ``:message`` unless it
    is NULL; its row and whether it has artifacts, or no row when the task is not running
    (the caller then takes the general path, which says why)."""
    c = _tasks.c
    return (
        update(_tasks)
        .where(
            c.id == bindparam("task_id"),
            c.status == TaskStatus.in_progress.value,
            c.type != TaskTypes.controller.value,
        )
        .values(
            status=bindparam("end_status"),
            last_update=bindparam("stamp"),
            completed=bindparam("stamp"),
            lease_expires=None,
            status_message=func.coalesce(bindparam("message", type_=Text), c.status_message),
        )
        .returning(*c, HAS_ARTIFACTS)
    )


def _heartbeat(with_stats: bool) -> Select:
    """A worker's heartbeat (``:beat_at``, and ``:new_stats`` if ``with_stats``), the
    renewal of its running tasks' leases to ``:lease_expires`` and, if ``:sample``, a
    stats sample, keeping ``:skip`` + 2 of them: the worker's row with ``running``, the
    ids it renewed (NULL for none); no row for an unknown worker, and then nothing
    changes."""
    values = {"last_heartbeat": bindparam("beat_at")}
    if with_stats:
        values["stats"] = bindparam("new_stats", type_=_workers.c.stats.type)
    beat = (
        update(_workers)
        .where(_workers.c.id == bindparam("worker_id"))
        .values(values)
        .returning(*_workers.c)
        .cte("beat")
    )
    known = exists(select(beat.c.id))
    renewed = (
        update(_tasks)
        .where(*_RUNNING_UNDER, known)
        .values(lease_expires=bindparam("lease_expires"))
        .returning(_tasks.c.id)
        .cte("renewed")
    )
    running = select(func.array_agg(renewed.c.id)).scalar_subquery().label("running")
    answer = select(beat, running)
    if not with_stats:
        return answer
    # The sample's insert and the trim see the samples as they were before it: keep the
    # newest skip + 1 of those, and the new one.
    sample = insert(_samples).from_select(
        ["worker_id", "ts", "stats"],
        select(beat.c.id, beat.c.last_heartbeat, beat.c.stats).where(
            cast(bindparam("sample"), Boolean) == true()
        ),
    )
    kept_from = (
        select(_samples.c.ts)
        .where(_samples.c.worker_id == bindparam("worker_id"))
        .order_by(_samples.c.ts.desc())
        .offset(bindparam("skip"))
        .limit(1)
        .scalar_subquery()
    )
    trim = delete(_samples).where(
        _samples.c.worker_id == bindparam("worker_id"),
        _samples.c.ts < kept_from,
        cast(bindparam("sample"), Boolean) == true(),
        known,
    )
    return answer.add_cte(sample.cte("sample"), trim.cte("trim"))


def _append_logs() -> Insert:
    """Append lines (``:ts``, ``:levels`` and ``:texts``, three lists) to task ``:task_id``'s
    log after its last line, under a lock of the task's row (appenders of one task one at a
    time), when they fit under ``:cap``; answers the new lines' seqs. No row when the task
    does not exist or the lines do not fit (the caller then takes the general path). The
    last line is read in the statement's snapshot, before the lock is granted: a concurrent
    append of the same task makes this one fail on the key (the caller retries it in a
    transaction)."""
    locked = (
        select(_tasks.c.id)
        .where(_tasks.c.id == bindparam("task_id"))
        .with_for_update()
        .cte("locked")
    )
    last = (
        select(func.coalesce(func.max(_logs.c.seq), 0).label("seq"))
        .where(_logs.c.task_id == bindparam("task_id"))
        .cte("last")
    )
    lines = (
        func.unnest(
            cast(bindparam("ts"), ARRAY(_logs.c.ts.type)),
            cast(bindparam("levels"), ARRAY(Text)),
            cast(bindparam("texts"), ARRAY(Text)),
        )
        .table_valued("ts", "level", "text", with_ordinality="n")
        .render_derived("line")
    )
    rows = select(
        locked.c.id, last.c.seq + lines.c.n, lines.c.ts, lines.c.level, lines.c.text
    ).where(last.c.seq + func.cardinality(cast(bindparam("texts"), ARRAY(Text))) < bindparam("cap"))
    return (
        insert(_logs)
        .from_select(["task_id", "seq", "ts", "level", "text"], rows)
        .returning(_logs.c.seq)
    )


def _append_logs_many() -> Insert:
    """Append lines to the logs of several tasks at once: line ``i`` of the lists
    ``:task_ids``, ``:ts``, ``:levels`` and ``:texts`` goes to the log of task
    ``:task_ids[i]``, after its last line, in the lists' order; answers the new lines'
    ``task_id`` and ``seq``. The tasks' rows are locked in the order of their ids (two
    of these never wait on each other in a cycle). A task gets its lines only when they
    all fit under ``:cap``; a task without rows in the answer (no such task, or its
    lines do not fit) is for the caller's general path. The last lines are read in the
    statement's snapshot, as in :func:`_append_logs`: an append of one of the tasks at
    the same moment makes the whole statement fail on the key."""
    unnested = (
        func.unnest(
            cast(bindparam("task_ids"), ARRAY(Text)),
            cast(bindparam("ts"), ARRAY(_logs.c.ts.type)),
            cast(bindparam("levels"), ARRAY(Text)),
            cast(bindparam("texts"), ARRAY(Text)),
        )
        .table_valued("task_id", "ts", "level", "text", with_ordinality="n")
        .render_derived("line")
    )
    lines = select(unnested).cte("lines")
    wanted = (
        select(lines.c.task_id, func.count().label("lines")).group_by(lines.c.task_id).cte("wanted")
    )
    locked = (
        select(_tasks.c.id)
        .where(_tasks.c.id.in_(select(wanted.c.task_id)))
        .order_by(_tasks.c.id)
        .with_for_update(of=_tasks)
        .cte("locked")
    )
    last_seq = select(func.coalesce(func.max(_logs.c.seq), 0)).where(_logs.c.task_id == locked.c.id)
    last = select(locked.c.id, last_seq.scalar_subquery().label("seq")).cte("last")
    seq = last.c.seq + func.row_number().over(partition_by=lines.c.task_id, order_by=lines.c.n)
    rows = (
        select(lines.c.task_id, seq, lines.c.ts, lines.c.level, lines.c.text)
        .select_from(
            lines.join(last, last.c.id == lines.c.task_id).join(
                wanted, wanted.c.task_id == lines.c.task_id
            )
        )
        .where(last.c.seq + wanted.c.lines < bindparam("cap"))
    )
    return (
        insert(_logs)
        .from_select(["task_id", "seq", "ts", "level", "text"], rows)
        .returning(_logs.c.task_id, _logs.c.seq)
    )


def _stopped_among() -> Select:
    """Those of the tasks ``:task_ids`` (a list) that are not in progress, with their
    status (NULL: no such task). One array parameter, not one per id: the statement's
    text stays the same whatever the ids (psycopg prepares it once), and only the tasks
    that stopped come back, not a row per running task (the server's poller asks this
    for every task its fleet watches, four times a second)."""
    ids = (
        func.unnest(cast(bindparam("task_ids"), ARRAY(Text))).table_valued("id").render_derived("w")
    )
    return (
        select(ids.c.id, _tasks.c.status)
        .select_from(ids.outerjoin(_tasks, _tasks.c.id == ids.c.id))
        .where(_tasks.c.status.is_distinct_from(TaskStatus.in_progress.value))
    )


def _pg_only() -> dict[str, tuple[Executable, tuple[str, ...]]]:
    """The named statements only PostgreSQL has (see above)."""
    return {
        "CLAIM_HEAD": (claim_head("postgresql"), CLAIM_COLUMNS),
        "CREATE_TASK": (_create_task(queued=False), ()),
        "CREATE_QUEUED_TASK": (_create_task(queued=True), ()),
        "FINISH_RUNNING": (_finish_running(), ()),
        "HEARTBEAT": (_heartbeat(with_stats=False), ()),
        "HEARTBEAT_WITH_STATS": (_heartbeat(with_stats=True), ()),
        "APPEND_LOGS": (_append_logs(), ()),
        "APPEND_LOGS_MANY": (_append_logs_many(), ()),
        "STOPPED_AMONG": (_stopped_among(), ()),
    }


# -- task queries -------------------------------------------------------------------------
#: The query_tasks filter shapes the code uses (a step-cache lookup, a task by project and
#: name, a pipeline's steps, an id prefix, the CLI's lists): the SQLite catalog holds
#: these; other shapes are compiled by SQLAlchemy when they come.
QUERY_SHAPES = (
    (),
    ("id_prefix",),
    ("project",),
    ("status",),
    ("parent",),
    ("parent", "status"),
    ("project", "name"),
    ("project", "status"),
    ("project", "name", "status"),
    ("status", "runtime"),
    ("runtime",),
)


def tasks_query(filters: tuple[str, ...], dialect_name: str) -> Executable:
    """The tasks matching ``filters`` (names of SqlBackend.query_tasks' arguments, in
    its order; ``runtime`` once per key), newest first, up to ``:limit``. Parameters:
    ``:project``, ``:name``, ``:statuses`` (a list), ``:tag``, ``:type``, ``:parent``,
    ``:prop_key_N`` / ``:prop_value_N``, ``:text_like`` (a lowercase LIKE pattern matched
    against the id, name, project, comment and tags), ``:offset``; an id prefix is ``:id_low`` <= id < ``:id_high``
    on SQLite (exact, and it uses the index) and ``id LIKE :id_like`` elsewhere."""
    c = _tasks.c
    query = select(_tasks)
    runtime_n = 0
    for name in filters:
        if name == "id_prefix":
            if dialect_name == "sqlite":
                query = query.where(c.id >= bindparam("id_low"), c.id < bindparam("id_high"))
            else:
                query = query.where(c.id.like(bindparam("id_like"), escape="\\"))
        elif name == "status":
            query = query.where(c.status.in_(bindparam("statuses", expanding=True)))
        elif name == "tag":
            tagged = select(t.task_tags.c.task_id).where(t.task_tags.c.tag == bindparam("tag"))
            query = query.where(c.id.in_(tagged))
        elif name == "runtime":
            props = select(t.task_props.c.task_id).where(
                t.task_props.c.key == bindparam(f"prop_key_{runtime_n}"),
                t.task_props.c.value == bindparam(f"prop_value_{runtime_n}"),
            )
            query = query.where(c.id.in_(props))
            runtime_n += 1
        elif name == "text":
            pattern = bindparam("text_like")
            tagged = select(t.task_tags.c.task_id).where(
                func.lower(t.task_tags.c.tag).like(pattern, escape="\\")
            )
            fields = (c.id, c.name, c.project, c.comment)
            query = query.where(
                or_(*(func.lower(f).like(pattern, escape="\\") for f in fields), c.id.in_(tagged))
            )
        else:  # project, name, type, parent: equal
            query = query.where(getattr(c, name) == bindparam(name))
    query = query.order_by(c.created.desc(), c.id)
    return query.limit(bindparam("limit")).offset(bindparam("offset"))


def _query_keys(filters: tuple[str, ...]) -> tuple[str, ...]:
    keys = ["limit", "offset"]
    for name in filters:
        keys += {
            "id_prefix": ["id_low", "id_high"],
            "status": ["statuses"],
            "runtime": ["prop_key_0", "prop_value_0"],
            "text": ["text_like"],
        }.get(name, [name])
    return tuple(keys)


# -- the SQLite catalog -------------------------------------------------------------------
CATALOG_PATH = __file__.rsplit("/", 1)[0] + "/sqlite_catalog.py"


def sqlite_catalog() -> tuple[list[str], dict[str, tuple]]:
    """The schema's DDL and every named statement compiled for SQLite: what
    :mod:`agent.store.sqlite_catalog` holds and :class:`agent.store.tx.SqliteTx` runs.
    Each statement: (sql, parameter order, fixed values, JSON parameters, JSON result
    columns, expanding parameters)."""
    from sqlalchemy import JSON
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialect = sqlite.dialect(paramstyle="qmark")
    ddl = []
    for table in t.metadata.sorted_tables:
        ddl.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)).strip())
        for index in sorted(table.indexes, key=lambda i: i.name or ""):
            ddl.append(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)))
    entries = {}
    for name, (stmt, keys) in sorted(named("sqlite").items()):
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
        binds = compiled.binds
        columns = getattr(stmt, "exported_columns", ())
        entries[name] = (
            compiled.string,
            tuple(compiled.positiontup or ()),
            {k: v for k, v in compiled.params.items() if k not in keys},
            tuple(sorted(k for k, b in binds.items() if isinstance(b.type, JSON))),
            tuple(sorted(c.name for c in columns if isinstance(c.type, JSON))),
            tuple(sorted(k for k, b in binds.items() if b.expanding)),
        )
    return ddl, entries


def sqlite_catalog_source() -> str:
    ddl, entries = sqlite_catalog()
    lines = [
        '"""SqlBackend\'s SQLite statements and schema, compiled by SQLAlchemy ahead of time.',
        "",
        "Generated from agent/store/statements.py and schema.py: do not edit. After changing",
        "either, run ``python -m agent.store.statements`` (a test checks this file is current).",
        "See ``agent.store.statements.sqlite_catalog`` for what each entry holds.",
        '"""',
        "",
        "# fmt: off",
        "DDL = [",
    ]
    lines += [f"    {statement!r}," for statement in ddl]
    lines += ["]", "", "STATEMENTS = {"]
    lines += [f"    {name!r}: {entry!r}," for name, entry in entries.items()]
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    source = sqlite_catalog_source()  # all of it first: a failure leaves the file as it was
    with open(CATALOG_PATH, "w") as out:
        out.write(source)
    print(f"wrote {CATALOG_PATH}")
