"""The bodies of the HTTP API's answers, for its OpenAPI schema.

Endpoints return plain dicts (``to_dict()`` of the core records); these models only
describe them, so the schema says what the server sends and clients can check it. The
records are the core dataclasses themselves (:mod:`agent.core.models`), so a field added
there shows up here. Answers may grow fields; clients ignore the ones they do not know.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from agent.core.models import Artifact, LogLine, Model, Queue, Task, Worker

#: A scalar as JSON carries it: a number, or one of the three strings JSON has no number for.
ScalarValue = float | Literal["NaN", "Infinity", "-Infinity"]


class ProjectList(BaseModel):
    projects: list[str]


class ProjectName(BaseModel):
    name: str


class TaskList(BaseModel):
    tasks: list[Task]


class ClaimAnswer(BaseModel):
    #: None when no task came within the timeout.
    task: Task | None


class StoppedTasks(BaseModel):
    #: The tasks asked about that are no longer in progress, with their status (null:
    #: no such task); empty when all still ran at the timeout.
    stopped: dict[str, str | None]


class QueueList(BaseModel):
    queues: list[Queue]


class TaskIds(BaseModel):
    task_ids: list[str]


class WorkerList(BaseModel):
    workers: list[Worker]


#: ``[ts, stats]``: a pair, not a tuple schema (see ScalarPair).
StatsSample = Annotated[list[float | dict[str, Any]], Field(min_length=2, max_length=2)]


class WorkerStatsHistory(BaseModel):
    #: Per worker: its samples as ``[ts, stats]``, oldest first.
    workers: dict[str, list[StatsSample]]


class UnregisteredWorker(BaseModel):
    worker_id: str


class LastSeq(BaseModel):
    last_seq: int


class LogLines(BaseModel):
    lines: list[LogLine]


class ScalarCount(BaseModel):
    count: int


#: ``[iteration, value]`` (a pair, not a tuple schema: schema readers disagree on those).
ScalarPair = Annotated[list[ScalarValue], Field(min_length=2, max_length=2)]


class Scalars(BaseModel):
    #: {title: {series: [[iteration, value], ...]}}, ordered by iteration.
    scalars: dict[str, dict[str, list[ScalarPair]]]


class PlotRef(BaseModel):
    title: str
    series: str
    iteration: int


class Plots(BaseModel):
    #: [{title, series, iteration, figure}] in report order.
    plots: list[dict[str, Any]]


class ArtifactMap(BaseModel):
    artifacts: dict[str, Artifact]


class ArtifactFound(BaseModel):
    artifact: Artifact | None


class ModelList(BaseModel):
    models: list[Model]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    version: str | None = None
    database: str | None = None
    #: The server process that answered (one of several with ``--workers N``).
    pid: int | None = None
    #: PostgreSQL: whether enqueues by other processes wake this one's waiting claims
    #: (LISTEN/NOTIFY); while not, they poll.
    enqueues_heard: bool | None = None


class ServerConfig(BaseModel):
    files_url: str | None
    files_hosted: bool
    version: str


__all__ = ["Artifact", "Model", "Queue", "Task", "Worker"]
