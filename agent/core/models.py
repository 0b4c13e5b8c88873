"""Task, Queue, Worker and the task status machine.

The records are plain dataclasses that round-trip through JSON (``to_dict`` /
``from_dict``) with DESIGN.md's field names, so the SQL store, the HTTP API and
the ``--json`` output of the CLI all speak the same shape.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from agent.core.errors import IllegalTransition, InvalidInput


def new_id() -> str:
    """A fresh 32-hex-digit id, as ClearML uses."""
    return uuid.uuid4().hex


def now() -> float:
    """Wall clock in seconds since the epoch (the store's time unit)."""
    return time.time()


class TaskTypes(str, Enum):
    """ClearML's task types."""

    training = "training"
    testing = "testing"
    inference = "inference"
    data_processing = "data_processing"
    application = "application"
    monitor = "monitor"
    controller = "controller"
    optimizer = "optimizer"
    service = "service"
    qc = "qc"
    custom = "custom"

    def __str__(self) -> str:
        return self.value


class TaskStatus(str, Enum):
    """Lifecycle of a task. Change it only through :func:`transition`."""

    created = "created"
    queued = "queued"
    in_progress = "in_progress"
    completed = "completed"
    failed = "failed"
    stopped = "stopped"
    cached = "cached"
    skipped = "skipped"
    published = "published"
    archived = "archived"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def is_success(self) -> bool:
        return self in SUCCESS_STATES


S = TaskStatus
#: States in which a task has finished running (for good or bad).
TERMINAL_STATES = frozenset({S.completed, S.failed, S.stopped, S.cached, S.skipped, S.published})
#: States that count as success for a pipeline step (a cached step is a success).
SUCCESS_STATES = frozenset({S.completed, S.cached, S.published})

#: The only legal moves: FROM -> allowed TO states.
ALLOWED_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.created: frozenset({S.queued, S.in_progress, S.stopped, S.cached, S.skipped, S.archived}),
    S.queued: frozenset({S.created, S.in_progress, S.stopped, S.failed, S.skipped}),
    S.in_progress: frozenset({S.completed, S.failed, S.stopped}),
    S.completed: frozenset({S.published, S.archived, S.created}),
    S.failed: frozenset({S.archived, S.created, S.queued}),
    S.stopped: frozenset({S.archived, S.created, S.queued}),
    S.cached: frozenset({S.archived}),
    S.skipped: frozenset({S.archived, S.created}),
    S.published: frozenset({S.archived}),
    S.archived: frozenset({S.created}),
}


def transition(
    current: TaskStatus | str, new: TaskStatus | str, task_id: str | None = None
) -> TaskStatus:
    """Check a status change and return the new status.

    ``created``/``failed``/``stopped`` -> ``queued`` (re)enqueue, ``completed``/``failed``/
    ``stopped`` -> ``created`` is a reset, ``archived`` -> ``created`` an un-archive.

    Raises:
        IllegalTransition: the move is not in :data:`ALLOWED_TRANSITIONS`.
    """
    try:
        cur, nxt = TaskStatus(current), TaskStatus(new)
    except ValueError as exc:
        raise IllegalTransition(str(current), str(new), task_id) from exc
    if nxt not in ALLOWED_TRANSITIONS[cur]:
        raise IllegalTransition(cur.value, nxt.value, task_id)
    return nxt


@dataclass
class Script:
    """Where a task's code comes from: a git checkout (+ diff) or inline code."""

    repository: str = ""
    branch: str = ""
    commit: str = ""
    entry_point: str = ""
    working_dir: str = "."
    diff: str = ""
    requirements: list[str] = field(default_factory=list)
    code: str = ""
    binary: str = "python"


@dataclass
class Artifact:
    """Metadata of one artifact; the blob itself lives in file storage."""

    name: str
    uri: str
    sha256: str = ""
    size: int = 0
    type: str = ""
    preview: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0


@dataclass
class Model:
    """A registered model: weights (one file, or a zipped folder) and what describes them.

    ClearML's model record: ``task`` is the task that made it (None for an imported
    one); ``uri``/``sha256``/``size``/``filename`` say where the weights are, content-
    addressed (see :mod:`agent.files.blobs`); ``design`` is the configuration text;
    ``labels`` maps class names to ids; ``package`` is True for a zipped folder.
    """

    id: str = field(default_factory=new_id)
    name: str = ""
    project: str = ""
    framework: str = ""
    task: str | None = None
    uri: str = ""
    sha256: str = ""
    size: int = 0
    filename: str = ""
    package: bool = False
    tags: list[str] = field(default_factory=list)
    comment: str = ""
    design: str = ""
    labels: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    iteration: int | None = None
    published: bool = False
    archived: bool = False
    created: float = 0.0
    last_update: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Model fields that ``update_model`` may change.
MODEL_UPDATABLE_FIELDS = frozenset(
    {
        "name", "project", "framework", "uri", "sha256", "size", "filename", "package",
        "tags", "comment", "design", "labels", "metadata", "iteration", "published", "archived",
    }
)  # fmt: skip


def _container() -> dict[str, Any]:
    return {"image": "", "arguments": "", "setup_script": ""}


#: ``runtime`` key of where a task runs when that is not the worker holding its lease:
#: ``{"worker": <the lease holder>, "node": <what to show as the worker>}``. The Slurm
#: glue holds the lease (its heartbeat renews it) while a batch job runs the task on the
#: node Slurm picked, ``slurm:<node>``. A node recorded under another worker (the task was
#: enqueued again and claimed elsewhere since) is stale and not shown.
RUNS_ON_KEY = "runs_on"


@dataclass
class Task:
    """One unit of work: a script or function step, a pipeline controller, ..."""

    id: str = field(default_factory=new_id)
    name: str = ""
    project: str = ""
    type: str = TaskTypes.custom.value
    status: str = TaskStatus.created.value
    parent: str | None = None
    tags: list[str] = field(default_factory=list)
    comment: str = ""
    script: Script = field(default_factory=Script)
    hyperparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    configuration: dict[str, str] = field(default_factory=dict)
    container: dict[str, Any] = field(default_factory=_container)
    runtime: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    created: float = 0.0
    started: float | None = None
    completed: float | None = None
    last_update: float = 0.0
    worker: str | None = None
    queue: str | None = None
    status_message: str = ""
    output_uri: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with DESIGN.md's field names."""
        return dataclasses.asdict(self)

    def to_json_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` for encoding at once: it shares the task's nested values
        instead of deep-copying them, so it must not be changed."""
        data = {name: getattr(self, name) for name in _TASK_FIELDS}
        data["script"] = {name: getattr(self.script, name) for name in _SCRIPT_FIELDS}
        data["artifacts"] = {name: dataclasses.asdict(a) for name, a in self.artifacts.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("script"), dict):
            values["script"] = _from_dict(Script, values["script"])
        if isinstance(values.get("artifacts"), dict):
            values["artifacts"] = {
                k: (_from_dict(Artifact, v) if isinstance(v, dict) else v)
                for k, v in values["artifacts"].items()
            }
        if values.get("container") is None:
            values["container"] = _container()
        for key in ("type", "status"):
            if isinstance(values.get(key), Enum):
                values[key] = values[key].value
        return cls(**values)

    @property
    def task_status(self) -> TaskStatus:
        return TaskStatus(self.status)

    @property
    def shown_worker(self) -> str | None:
        """The worker people see: the node that runs (ran) the task for the worker holding
        its lease (see :data:`RUNS_ON_KEY`), else that worker."""
        runs_on = self.runtime.get(RUNS_ON_KEY)
        node = runs_on.get("node") if isinstance(runs_on, dict) else None
        return str(node) if node and runs_on.get("worker") == self.worker else self.worker

    @property
    def worker_label(self) -> str | None:
        """:attr:`shown_worker`, naming the lease holder when that is another worker:
        ``slurm:node1 (via slurm:login:gpu)``."""
        shown = self.shown_worker
        return f"{shown} (via {self.worker})" if shown != self.worker else shown


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Queue:
    """A named queue; ``length`` is the number of waiting entries."""

    id: str
    name: str
    created: float = 0.0
    length: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TASK_FIELDS = tuple(f.name for f in dataclasses.fields(Task))
_SCRIPT_FIELDS = tuple(f.name for f in dataclasses.fields(Script))


@dataclass
class Worker:
    """An agent daemon (or any claimer) as the store knows it."""

    id: str
    name: str = ""
    queues: list[str] = field(default_factory=list)
    last_heartbeat: float = 0.0
    registered: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class LogLine:
    """One line of a task's log. ``seq`` increases per task, for ``--follow``."""

    seq: int
    ts: float
    level: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def artifact_from_dict(data: dict[str, Any]) -> Artifact:
    return _from_dict(Artifact, data)


def model_from_dict(data: dict[str, Any]) -> Model:
    return _from_dict(Model, data)


def worker_from_dict(data: dict[str, Any]) -> Worker:
    return _from_dict(Worker, data)


def queue_from_dict(data: dict[str, Any]) -> Queue:
    return _from_dict(Queue, data)


def logline_from_dict(data: dict[str, Any]) -> LogLine:
    return _from_dict(LogLine, data)


#: JSON has no NaN or infinities: over HTTP a non-finite scalar travels as one of these.
NON_FINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def scalar_number(value: Any) -> float:
    """A reported scalar as a float (NaN and infinities included).

    Raises:
        InvalidInput: ``value`` is not a number.
    """
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"scalar value {value!r} is not a number") from None


def scalar_to_json(value: Any) -> float | str:
    """A scalar value as standard JSON: non-finite ones as "NaN", "Infinity", "-Infinity"."""
    number = scalar_number(value)
    if math.isfinite(number):
        return number
    return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")


def scalar_from_json(value: float | str) -> float:
    """The inverse of :func:`scalar_to_json`."""
    if isinstance(value, str):
        return NON_FINITE[value]
    return float(value)
