"""Errors a pipeline raises to its user: each says what failed, why, and what to do."""

from __future__ import annotations

from agent.core.errors import AgentError, InvalidInput


def log_hint(message: str, task_id: str | None) -> str:
    """`` (see `agent logs TASK`)`` to follow ``message``, or "" where it names a log
    already (a step's status message often does) or there is no task."""
    return f" (see `agent logs {task_id}`)" if task_id and "agent logs" not in message else ""


class PipelineError(AgentError):
    """A pipeline cannot be built or run as written."""


class PipelineDefinitionError(PipelineError, InvalidInput):
    """A cycle, an unknown parent or a bad ``${...}`` reference: found before any step runs."""


class StepFailedError(PipelineError):
    """The value of a step that failed, was skipped or stopped was asked for.

    Attributes:
        step: the step's name in the pipeline.
        status: its final status (``failed``, ``skipped``, ``stopped``).
        task_id: its task, when it has one.
    """

    def __init__(self, step: str, status: str, task_id: str | None, reason: str = ""):
        self.step = step
        self.status = status
        self.task_id = task_id
        where = log_hint(reason, task_id) if status == "failed" else ""
        why = f": {reason}" if reason else ""
        super().__init__(f"pipeline step '{step}' {status}{why}{where}")
