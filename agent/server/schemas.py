"""Request bodies of the HTTP API, with the bounds the store can hold.

Field names are DESIGN.md's (``Task.to_dict()`` and friends). Bodies ignore keys
they do not know, so a client may send a whole ``Task.to_dict()`` to create a task,
except where an unknown key is a mistake the store would refuse too (``PATCH`` of a
task: :class:`TaskUpdate`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

from agent.core.models import TaskTypes
from agent.store.stops import MAX_STOP_IDS

#: Longest claim long-poll one request may ask for; clients loop for longer waits.
MAX_CLAIM_TIMEOUT_S = 60.0
#: Longest lease one claim or heartbeat may ask for (a week).
MAX_LEASE_S = 7 * 24 * 3600.0
#: Integers the store keeps in 32-bit columns (priority, iteration, seq).
INT32_MAX = 2**31 - 1
#: Large free text: diffs, inline code, configuration files, log lines.
MAX_TEXT = 64 * 1024 * 1024
#: The largest integer every JSON reader carries exactly (JavaScript's MAX_SAFE_INTEGER):
#: sizes and counters above it would be rounded on the way.
MAX_SAFE_INT = 2**53 - 1


def _not_text_or_bool(value: Any) -> Any:
    """Refuse what pydantic's lax mode would turn into a number: ``"3"``, ``true``."""
    if isinstance(value, (str, bytes, bool)):
        raise ValueError("should be a JSON number")
    return value


#: Put after the bounds of an integer: ``3`` or ``3.0``, never ``"3"`` or ``true`` (strict
#: mode would refuse ``3.0``, which JSON Schema calls an integer). After them, as the
#: bounds would leave the schema otherwise.
_JSON_INT = BeforeValidator(_not_text_or_bool)
#: A number, never a string or a boolean.
JsonFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]

Id = Annotated[str, Field(min_length=1, max_length=64)]
#: The id of a new task: the store takes only these (ids it makes are hex).
NewTaskId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Name = Annotated[str, Field(max_length=255)]
NonEmptyName = Annotated[str, Field(min_length=1, max_length=255)]
Status = Annotated[str, Field(min_length=1, max_length=32)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Int32 = Annotated[int, Field(ge=-INT32_MAX, le=INT32_MAX), _JSON_INT]
Size = Annotated[int, Field(ge=0, le=MAX_SAFE_INT), _JSON_INT]
Seconds = Annotated[JsonFloat, Field(ge=0)]
Lease = Annotated[JsonFloat, Field(ge=0, le=MAX_LEASE_S)]
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

    id: NewTaskId | None = None


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
    limit: Annotated[int, Field(ge=1, le=100_000), _JSON_INT] = 1000
    id_prefix: Annotated[str, Field(max_length=64)] | None = None
    offset: Annotated[int, Field(ge=0), _JSON_INT] = 0
    text: Name | None = None


class ProjectIn(Body):
    name: NonEmptyName


class QueueIn(Body):
    name: NonEmptyName


class EnqueueRequest(Body):
    queue: NonEmptyName
    priority: Int32 = 0


class QueuePosition(Body):
    position: Int32


class ClaimRequest(Body):
    queues: list[NonEmptyName] = Field(min_length=1, max_length=100)
    worker_id: NonEmptyName
    timeout: JsonFloat = Field(default=0.0, ge=0, le=MAX_CLAIM_TIMEOUT_S)
    lease_s: Lease = 60.0


class StopWait(Body):
    task_ids: list[Id] = Field(max_length=MAX_STOP_IDS)
    timeout: JsonFloat = Field(default=0.0, ge=0, le=MAX_CLAIM_TIMEOUT_S)


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
    value: JsonFloat | Literal["NaN", "Infinity", "-Infinity"]


class ScalarReport(Body):
    points: list[ScalarPoint] = Field(max_length=100_000)


class PlotIn(Body):
    title: Name
    series: Name
    iteration: Int32 = 0
    figure: JsonObject


#: What the store takes as an artifact name: one path part, not '.' or '..'. In the schema
#: only, so that a bad name gets the store's message, which says what to do.
ARTIFACT_NAME_PATTERN = r"^(?:[^/\\.][^/\\]*|\.[^/\\.][^/\\]*|\.\.[^/\\]+)$"


class ArtifactIn(Body):
    name: Annotated[NonEmptyName, Field(json_schema_extra={"pattern": ARTIFACT_NAME_PATTERN})]
    uri: Text
    sha256: Annotated[str, Field(max_length=64)] = ""
    size: Size = 0
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
    size: Size = 0
    filename: Name = ""
    package: StrictBool = False
    tags: list[Name] = Field(default_factory=list, max_length=1000)
    comment: Text = ""
    design: Text = ""
    labels: dict[Name, Int32] = Field(default_factory=dict)
    metadata: JsonObject = Field(default_factory=dict)
    iteration: Annotated[int, Field(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT), _JSON_INT] | None = None
    published: StrictBool = False
    archived: StrictBool = False


class ModelIn(ModelFields):
    id: Id
    task: Id | None = None
    created: Seconds = 0.0


class ModelUpdate(ModelFields):
    """``PATCH /models/{id}``: only the fields sent change; an unknown field is refused."""

    model_config = ConfigDict(extra="forbid")
