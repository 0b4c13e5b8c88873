"""Request bodies of the HTTP API, with the bounds the store can hold.

Field names are DESIGN.md's (``Task.to_dict()`` and friends). Bodies ignore keys
they do not know, so a client may send a whole ``Task.to_dict()`` to create a task,
except where an unknown key is a mistake the store would refuse too (``PATCH`` of a
task: :class:`TaskUpdate`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.core.models import TaskTypes

#: Longest claim long-poll one request may ask for; clients loop for longer waits.
MAX_CLAIM_TIMEOUT_S = 60.0
#: Longest lease one claim or heartbeat may ask for (a week).
MAX_LEASE_S = 7 * 24 * 3600.0
#: Integers the store keeps in 32-bit columns (priority, iteration, seq).
INT32_MAX = 2**31 - 1
#: Large free text: diffs, inline code, configuration files, log lines.
MAX_TEXT = 64 * 1024 * 1024

Id = Annotated[str, Field(min_length=1, max_length=64)]
Name = Annotated[str, Field(max_length=255)]
NonEmptyName = Annotated[str, Field(min_length=1, max_length=255)]
Status = Annotated[str, Field(min_length=1, max_length=32)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Int32 = Annotated[int, Field(ge=-INT32_MAX, le=INT32_MAX)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Lease = Annotated[float, Field(ge=0, le=MAX_LEASE_S, allow_inf_nan=False)]
JsonObject = dict[str, Any]


class Body(BaseModel):
    """Base of request bodies: unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore")


class ScriptIn(Body):
    repository: Text = ""
    branch: Name = ""
    commit: Name = ""
    entry_point: Text = ""
    working_dir: Text = "."
    diff: Text = ""
    requirements: list[Text] = Field(default_factory=list, max_length=10_000)
    code: Text = ""
    binary: Name = "python"


class ContainerIn(Body):
    model_config = ConfigDict(extra="allow")

    image: Text = ""
    arguments: Text | list[Text] = ""
    setup_script: Text = ""


class TaskFields(Body):
    """The fields a client may set on a task (status, timestamps, worker and queue are
    the store's)."""

    name: Name = ""
    project: Name = ""
    type: TaskTypes = TaskTypes.custom
    parent: Id | None = None
    tags: list[Name] = Field(default_factory=list, max_length=1000)
    comment: Text = ""
    script: ScriptIn = Field(default_factory=ScriptIn)
    hyperparams: dict[Name, JsonObject] = Field(default_factory=dict)
    configuration: dict[Name, Text] = Field(default_factory=dict)
    container: ContainerIn = Field(default_factory=ContainerIn)
    runtime: dict[Name, Any] = Field(default_factory=dict)
    status_message: Text = ""
    output_uri: Text | None = None


class TaskIn(TaskFields):
    """A new task; the store sets status, timestamps, worker and queue."""

    id: Id | None = None


class TaskUpdate(TaskFields):
    """``update_task`` fields; only the keys sent are changed, unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class RuntimeMerge(Body):
    values: dict[Name, Any]


class StatusChange(Body):
    status: Status
    message: Text | None = None
    expected: list[Status] | None = Field(default=None, max_length=20)


class CloneRequest(Body):
    name: Name | None = None
    parent: Id | None = None
    project: Name | None = None


class TaskQuery(Body):
    project: Name | None = None
    name: Name | None = None
    status: Status | list[Status] | None = None
    tag: Name | None = None
    type: Status | None = None
    parent: Id | None = None
    runtime: dict[Name, Any] | None = Field(default=None, max_length=50)
    limit: int = Field(default=1000, ge=1, le=100_000)
    id_prefix: Annotated[str, Field(max_length=64)] | None = None


class ProjectIn(Body):
    name: NonEmptyName


class QueueIn(Body):
    name: NonEmptyName


class EnqueueRequest(Body):
    queue: NonEmptyName
    priority: Int32 = 0


class ClaimRequest(Body):
    queues: list[NonEmptyName] = Field(min_length=1, max_length=100)
    worker_id: NonEmptyName
    timeout: float = Field(default=0.0, ge=0, le=MAX_CLAIM_TIMEOUT_S, allow_inf_nan=False)
    lease_s: Lease = 60.0


class WorkerIn(Body):
    worker_id: NonEmptyName
    queues: list[NonEmptyName] = Field(default_factory=list, max_length=100)
    name: Name = ""
    stats: JsonObject | None = None


class HeartbeatRequest(Body):
    worker_id: NonEmptyName
    stats: JsonObject | None = None
    lease_s: Lease = 60.0


class WorkerRef(Body):
    worker_id: NonEmptyName


class LogLineIn(Body):
    ts: Seconds | None = None
    level: Annotated[str, Field(max_length=16)] = "info"
    text: Text


class LogAppend(Body):
    lines: list[Text | LogLineIn] = Field(max_length=100_000)


class ScalarPoint(Body):
    title: Name
    series: Name
    iteration: Int32
    #: JSON has no NaN or infinities: a diverging loss comes as one of the three strings.
    value: Annotated[float, Field(allow_inf_nan=False)] | Literal["NaN", "Infinity", "-Infinity"]


class ScalarReport(Body):
    points: list[ScalarPoint] = Field(max_length=100_000)


class PlotIn(Body):
    title: Name
    series: Name
    iteration: Int32 = 0
    figure: JsonObject


class ArtifactIn(Body):
    name: NonEmptyName
    uri: Text
    sha256: Annotated[str, Field(max_length=64)] = ""
    size: int = Field(default=0, ge=0, le=2**63 - 1)
    type: Annotated[str, Field(max_length=64)] = ""
    preview: Text = ""
    metadata: JsonObject = Field(default_factory=dict)
    created: Seconds = 0.0


class ModelFields(Body):
    """What a model record may say (its id and timestamps are the store's to set)."""

    name: Name = ""
    project: Name = ""
    framework: Annotated[str, Field(max_length=64)] = ""
    uri: Text = ""
    sha256: Annotated[str, Field(max_length=64)] = ""
    size: int = Field(default=0, ge=0, le=2**63 - 1)
    filename: Name = ""
    package: bool = False
    tags: list[Name] = Field(default_factory=list, max_length=1000)
    comment: Text = ""
    design: Text = ""
    labels: dict[Name, Int32] = Field(default_factory=dict)
    metadata: JsonObject = Field(default_factory=dict)
    iteration: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    published: bool = False
    archived: bool = False


class ModelIn(ModelFields):
    id: Id
    task: Id | None = None
    created: Seconds = 0.0


class ModelUpdate(ModelFields):
    """``PATCH /models/{id}``: only the fields sent change; an unknown field is refused."""

    model_config = ConfigDict(extra="forbid")
