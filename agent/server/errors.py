"""The JSON of error answers, shared by the FastAPI handlers and the fast paths."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DataError

from agent.core.errors import AgentError, IllegalTransition


class InputProblem(BaseModel):
    """One thing wrong with a request (a 422 from request validation has a list of them)."""

    loc: str  #: where: ``body.queues.0``, ``query.limit``, ``path.task_id``
    msg: str
    type: str


class ErrorInfo(BaseModel):
    """What failed: the error's ``type`` (``NotFound``, ``Conflict``, ``InvalidInput``,
    ``IllegalTransition``, ...) and a message for people."""

    model_config = ConfigDict(extra="allow")

    type: str
    message: str
    #: Request validation: each problem found.
    details: list[InputProblem] | None = None
    #: IllegalTransition: the task's status, and the one asked for.
    current: str | None = None
    new: str | None = None


class ErrorBody(BaseModel):
    """The JSON of every error answer (see :func:`error_body`)."""

    error: ErrorInfo
    detail: str


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON of every error answer. ``detail`` repeats the message for generic clients."""
    return {"error": {"type": kind, "message": message, **extra}, "detail": message}


def agent_error_response(exc: AgentError) -> JSONResponse:
    """The answer to an AgentError: its type and message, with its HTTP status."""
    extra = {}
    if isinstance(exc, IllegalTransition):
        extra = {"current": exc.current, "new": exc.new}
    body = error_body(type(exc).__name__, str(exc), **extra)
    return JSONResponse(body, status_code=exc.http_status)


#: What the database raises for a value it cannot store (SQLAlchemy's, or the driver's
#: on the store's raw paths).
UNSTORABLE = (DataError, sqlite3.DataError, psycopg.DataError)


def unstorable_response(exc: Exception) -> JSONResponse:
    """The answer when the database refused a value (a NUL byte in PostgreSQL text, a
    number out of range, a string too big): the client's mistake, not the server's."""
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0] or "bad value"
    return JSONResponse(error_body("InvalidInput", f"value cannot be stored: {reason}"), 422)


def internal_error_response() -> JSONResponse:
    """The answer to a request that failed on the server's side (its log has why)."""
    body = error_body("InternalError", "internal server error; see the server's log")
    return JSONResponse(body, status_code=500)
