"""Tables of the SQL store (SQLAlchemy Core; the same schema on SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

ID = String(64)

projects = Table(
    "projects",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("created", Float, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(255), nullable=False, default=""),
    Column("project", String(255), nullable=False, default=""),
    Column("type", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("parent", ID),
    Column("tags", JSON, nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("script", JSON, nullable=False),
    Column("hyperparams", JSON, nullable=False),
    Column("configuration", JSON, nullable=False),
    Column("container", JSON, nullable=False),
    Column("runtime", JSON, nullable=False),
    Column("created", Float, nullable=False),
    Column("started", Float),
    Column("completed", Float),
    Column("last_update", Float, nullable=False),
    Column("worker", String(255)),
    Column("queue", String(255)),
    Column("status_message", Text, nullable=False, default=""),
    Column("output_uri", Text),
    Column("lease_expires", Float),
    Index("ix_tasks_project_name", "project", "name"),
    Index("ix_tasks_status", "status"),
    Index("ix_tasks_parent", "parent"),
    Index("ix_tasks_worker", "worker"),
)

task_tags = Table(
    "task_tags",
    metadata,
    Column("task_id", ID, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(255), primary_key=True),
    Index("ix_task_tags_tag", "tag"),
)

# Runtime properties, one row per key with its JSON-encoded value, so that
# "find the task whose runtime cache_key is X" is an indexed lookup.
task_props = Table(
    "task_props",
    metadata,
    Column("task_id", ID, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_task_props_kv", "key", "value"),
)

queues = Table(
    "queues",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("created", Float, nullable=False),
)

queue_entries = Table(
    "queue_entries",
    metadata,
    Column(
        "id", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True
    ),
    Column("queue_id", ID, ForeignKey("queues.id", ondelete="CASCADE"), nullable=False),
    Column("task_id", ID, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("priority", Integer, nullable=False, default=0),
    Column("enqueued", Float, nullable=False),
    Index("ix_queue_entries_order", "queue_id", "priority", "id"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("name", String(255), nullable=False, default=""),
    Column("queues", JSON, nullable=False),
    Column("last_heartbeat", Float, nullable=False),
    Column("registered", Float, nullable=False),
    Column("stats", JSON, nullable=False),
)

#: The last stats a worker reported (:data:`agent.store.base.WORKER_STATS_KEPT` of them).
worker_stats = Table(
    "worker_stats",
    metadata,
    Column("worker_id", String(255), ForeignKey("workers.id", ondelete="CASCADE"), nullable=False),
    Column("ts", Float, nullable=False),
    Column("stats", JSON, nullable=False),
    Index("ix_worker_stats_worker_ts", "worker_id", "ts"),
    Index("ix_worker_stats_ts", "ts"),
)

logs = Table(
    "logs",
    metadata,
    Column("task_id", ID, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("level", String(16), nullable=False),
    Column("text", Text, nullable=False),
)

scalars = Table(
    "scalars",
    metadata,
    Column("task_id", ID, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("title", String(255), nullable=False),
    Column("series", String(255), nullable=False),
    Column("iteration", Integer, nullable=False),
    # NULL is NaN (SQLite cannot store a NaN; infinities it can). Stores made before NaN
    # was recorded have NOT NULL here: agent.store.tx / SqlBackend upgrade them on open.
    Column("value", Float, nullable=True),
    Index("ix_scalars_task", "task_id", "title", "series", "iteration"),
)

plots = Table(
    "plots",
    metadata,
    Column("task_id", ID, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("title", String(255), primary_key=True),
    Column("series", String(255), primary_key=True),
    Column("iteration", Integer, primary_key=True, autoincrement=False),
    Column("figure", JSON, nullable=False),
    Column("reported", Float, nullable=False),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("task_id", ID, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("uri", Text, nullable=False),
    Column("sha256", String(64), nullable=False, default=""),
    Column("size", BigInteger, nullable=False, default=0),
    Column("type", String(64), nullable=False, default=""),
    Column("preview", Text, nullable=False, default=""),
    Column("metadata", JSON, nullable=False),
    Column("created", Float, nullable=False),
    Index("ix_artifacts_sha", "sha256"),
)

models = Table(
    "models",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(255), nullable=False, default=""),
    Column("project", String(255), nullable=False, default=""),
    Column("framework", String(64), nullable=False, default=""),
    # the task that made the model; a model outlives its task, as in ClearML
    Column("task", ID),
    Column("uri", Text, nullable=False, default=""),
    Column("sha256", String(64), nullable=False, default=""),
    Column("size", BigInteger, nullable=False, default=0),
    Column("filename", String(255), nullable=False, default=""),
    Column("package", Integer, nullable=False, default=0),
    Column("tags", JSON, nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("design", Text, nullable=False, default=""),
    Column("labels", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("iteration", BigInteger),
    Column("published", Integer, nullable=False, default=0),
    Column("archived", Integer, nullable=False, default=0),
    Column("created", Float, nullable=False),
    Column("last_update", Float, nullable=False),
    Index("ix_models_project_name", "project", "name"),
    Index("ix_models_task", "task"),
    Index("ix_models_sha", "sha256"),
)
