"""Errors raised by the control plane; each maps to one HTTP status."""

from __future__ import annotations


class AgentError(Exception):
    """Base class of the errors users are meant to see (no traceback at the CLI)."""

    http_status = 400


class NotFound(AgentError):
    """A task, queue, worker or artifact that does not exist."""

    http_status = 404


class InvalidInput(AgentError):
    """Bad arguments: a malformed id, an unsafe artifact name, a bad field."""

    http_status = 422


class Conflict(AgentError):
    """The request clashes with the current state (e.g. enqueue of a running task)."""

    http_status = 409


class IllegalTransition(Conflict):
    """A status change that TaskStatus.transition refuses."""

    def __init__(self, current: str, new: str, task_id: str | None = None):
        who = f"task {task_id}: " if task_id else ""
        super().__init__(f"{who}cannot move from '{current}' to '{new}'")
        self.current = current
        self.new = new


ERRORS_BY_NAME = {
    cls.__name__: cls for cls in (AgentError, NotFound, InvalidInput, Conflict, IllegalTransition)
}
