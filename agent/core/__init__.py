"""Core models shared by every part of pipeline-agent."""

from agent.core.errors import (
    AgentError,
    Conflict,
    IllegalTransition,
    InvalidInput,
    NotFound,
)
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
    transition,
)

__all__ = [
    "AgentError",
    "Artifact",
    "Conflict",
    "IllegalTransition",
    "InvalidInput",
    "LogLine",
    "NotFound",
    "Queue",
    "Script",
    "Task",
    "TaskStatus",
    "TaskTypes",
    "Worker",
    "new_id",
    "transition",
]
