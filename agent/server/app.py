"""The FastAPI application of ``agent server``: a thin HTTP shell over ``SqlBackend``.

- ``/api/v1/...``: one endpoint per Backend method (:mod:`agent.server.routes`); the
  busiest ones (create, enqueue, claim, status, logs) are answered by
  :mod:`agent.server.fast` when the request is well-formed, alike but cheaper.
- Errors: every error answers ``{"error": {"type": "NotFound", "message": "..."}}``
  with the AgentError's ``http_status``; bad input is 422 ``InvalidInput``; an
  unexpected exception is a logged 500 ``InternalError``.
- Auth: with a token, every request but ``GET /api/v1/health`` needs
  ``Authorization: Bearer <token>`` (401 otherwise).
- A reaper thread fails, each second, the tasks whose worker's lease lapsed (with
  ``--workers N`` each worker has one: a lapsed task is failed once, by whichever
  locks it first).
- On PostgreSQL, an enqueue listener on the event loop wakes waiting claims for tasks
  that other processes enqueued (:mod:`agent.store.pg_notify`).
- ``/api/v1/files/...``: blobs under ``files_root``, when the server hosts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.core.errors import AgentError
from agent.server import answers as a
from agent.server.errors import (
    UNSTORABLE,
    ErrorBody,
    agent_error_response,
    error_body,
    internal_error_response,
    unstorable_response,
)
from agent.server.fast import FastPaths
from agent.server.limits import DEFAULT_MAX_BODY_MB, BodyLimit
from agent.server.routes import ERROR_RESPONSES, make_api_router
from agent.store.sql import SqlBackend

log = logging.getLogger("agent.server")

HEALTH_PATH = "/api/v1/health"
#: Worker threads for sync endpoints: long-polling claims each hold one while they wait.
THREAD_LIMIT = 200
#: Seconds between two passes of the lease reaper.
REAP_INTERVAL_S = 1.0

_TYPE_BY_STATUS = {
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    422: "InvalidInput",
}


def create_app(
    backend: SqlBackend,
    token: str | None = None,
    files_root: Path | None = None,
    files_url: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_MB * 2**20,
    ui: bool = True,
) -> FastAPI:
    """The API over ``backend``.

    Args:
        backend: the store every request goes to.
        token: bearer token every request but the health check must carry; None = open.
        files_root: a directory whose blobs the server hosts at ``/api/v1/files``.
        files_url: the default artifact destination advertised at ``/api/v1/config``
            when the server does not host the files itself (``s3://bucket/prefix``).
        max_body_bytes: the largest request body (file uploads aside) before a 413.
        ui: also serve the web UI (:mod:`agent.ui`) at ``/``; it asks for ``token`` in a
            login form and checks its own cookie, so the bearer check is not in its way.
    """

    def outer_layers(inner: ASGIApp) -> ASGIApp:
        layers: ASGIApp = BodyLimit(FastPaths(inner, backend), max_body_bytes)
        if token:
            layers = BearerTokenAuth(layers, token=token, open_paths=frozenset({HEALTH_PATH}))
        if ui:
            from agent.ui.app import UIDispatch, create_ui_app

            layers = UIDispatch(layers, create_ui_app(backend, token=token))
        return layers

    app = _AgentAPI(
        outer_layers,
        title="pipeline-agent",
        version=_version(),
        lifespan=_lifespan(backend),
        openapi_url="/openapi.json",
    )
    _add_error_handlers(app)
    _add_service_routes(app, backend, files_root, files_url)
    app.include_router(make_api_router(backend))
    if files_root is not None:
        _include_files_router(app, Path(files_root))
    return app


class _AgentAPI(FastAPI):
    """FastAPI with ASGI layers in front of its whole middleware stack: the token check,
    then the fast paths (:mod:`agent.server.fast`), which answer the busy endpoints before
    FastAPI's own per-request layers (error, telemetry and body-limit middleware) run."""

    def __init__(self, outer_layers: Callable[[ASGIApp], ASGIApp], **kwargs: Any):
        self._outer_layers = outer_layers
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        return self._outer_layers(super().build_middleware_stack())

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            spec = super().openapi()
            document_errors(spec)
            document_links(spec)
            drop_null_from_parameters(spec)
        return self.openapi_schema


def document_errors(spec: dict[str, Any]) -> None:
    """Give every operation of ``spec`` its error answers, with the body they all have
    (:class:`~agent.server.errors.ErrorBody`, FastAPI's 422 included): those it names
    (404, 409), 401 (all but the health check), 413 where it takes a body, 422 where it
    takes a body or parameters, and 400 everywhere: the HTTP layer answers it, in plain text,
    to a request line it cannot parse (a URL over 64 KiB) on any path."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for fastapi_default in ("HTTPValidationError", "ValidationError"):
        schemas.pop(fastapi_default, None)
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorBody"] = error_schema
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    unparsed = {**content, "text/plain": {"schema": {"type": "string"}}}
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            codes = {
                int(code) for code in responses if code.isdigit() and int(code) in ERROR_RESPONSES
            }
            codes.add(400)
            if path != HEALTH_PATH:
                codes.add(401)
            if "requestBody" in operation:
                codes |= {413, 422}
            if operation.get("parameters"):
                codes.add(422)
            for code in sorted(codes):
                answer = responses.setdefault(str(code), {})
                if code == 422 or "description" not in answer:
                    answer["description"] = ERROR_RESPONSES[code]["description"]
                answer["content"] = unparsed if code == 400 else content


def document_links(spec: dict[str, Any]) -> None:
    """OpenAPI links from a worker's registration to its heartbeats and its unregistering,
    on the id the server answered: clients and fuzzers (schemathesis' stateful phase) then
    chain a worker's calls on it."""
    paths = spec.get("paths", {})
    answer = paths["/api/v1/workers"]["post"]["responses"]["200"]
    answer["links"] = {
        name: {
            "operationRef": f"#/paths/~1api~1v1~1workers~1{name}/post",
            "requestBody": {"worker_id": "$response.body#/id"},
        }
        for name in ("heartbeat", "unregister")
    }


def drop_null_from_parameters(spec: dict[str, Any]) -> None:
    """A parameter's schema says what a value may be; FastAPI's ``anyOf [X, null]`` for an
    optional one says it may be null, which a query string cannot carry (left out, it is
    None). Keep X only, so clients and fuzzers know what the server takes."""
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", ()):
                schema = parameter.get("schema", {})
                branches = [b for b in schema.get("anyOf", ()) if b.get("type") != "null"]
                if len(branches) == 1 and len(schema["anyOf"]) == 2:
                    del schema["anyOf"]
                    schema.update(branches[0])


def _version() -> str:
    try:
        return metadata.version("pipeline-agent")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _lifespan(backend: SqlBackend):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each waiting claim holds a worker thread; anyio's default of 40 would let a
        # handful of daemons starve every other request.
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREAD_LIMIT
        reaper = LeaseReaper(backend, REAP_INTERVAL_S)
        reaper.start()
        # PostgreSQL: other processes' enqueues (other workers, daemons on the database)
        # wake this one's waiting claims, heard on this loop (agent.store.pg_notify).
        listening = None
        if not backend.is_sqlite:
            listening = asyncio.get_running_loop().create_task(backend.serve_enqueue_listener())
        try:
            yield
        finally:
            if listening is not None:
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listening
            reaper.stop()

    return lifespan


class LeaseReaper:
    """A thread that calls ``backend.reap_expired()`` every ``interval`` seconds."""

    def __init__(self, backend: SqlBackend, interval: float):
        self.backend = backend
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.reap_once()

    def reap_once(self) -> list[str]:
        """One pass; errors are logged, never raised (the loop must go on)."""
        try:
            lost = self.backend.reap_expired()
        except Exception:
            log.exception("lease reaper: reap_expired failed")
            return []
        if lost:
            log.warning("worker lost: failed %d task(s) whose lease lapsed: %s", len(lost), lost)
        return lost


def _add_service_routes(
    app: FastAPI, backend: SqlBackend, files_root: Path | None, files_url: str | None
) -> None:
    @app.get(
        HEALTH_PATH,
        tags=["service"],
        responses={
            200: {"model": a.Health, "description": "Up, with its version"},
            503: {"model": a.Health, "description": "The database is unreachable"},
        },
    )
    def health() -> JSONResponse:
        """Liveness and database reachability; needs no token."""
        try:
            with backend.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("health check: database unreachable: %s", exc)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
        answer = {"status": "ok", "version": app.version, "pid": os.getpid()}
        if not backend.is_sqlite:
            answer["enqueues_heard"] = backend.enqueues_heard
        return JSONResponse(answer)

    @app.get(
        "/api/v1/config",
        tags=["service"],
        response_model=None,
        responses={200: {"model": a.ServerConfig, "description": "Success"}},
    )
    def config(request: Request) -> dict[str, Any]:
        """Where artifacts go by default (``files_url``), and whether this server hosts them."""
        from agent.files.base import FILES_API_PATH

        hosted = files_root is not None
        url = f"{str(request.base_url).rstrip('/')}{FILES_API_PATH}" if hosted else files_url
        return {"files_url": url, "files_hosted": hosted, "version": app.version}


def _include_files_router(app: FastAPI, root: Path) -> None:
    try:
        from agent.files.server_routes import make_files_router
    except ModuleNotFoundError as exc:
        if exc.name != "agent.files.server_routes":
            raise
        log.warning("file hosting unavailable: agent.files.server_routes is not installed")
        return
    router = make_files_router(root)
    prefixed = any(getattr(r, "path", "").startswith("/api/v1/files") for r in router.routes)
    app.include_router(router, prefix="" if prefixed else "/api/v1/files")


# -- errors -------------------------------------------------------------------------------
def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AgentError)
    async def agent_error(request: Request, exc: AgentError) -> JSONResponse:
        return agent_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [_validation_detail(e) for e in exc.errors()]
        message = "; ".join(f"{d['loc']}: {d['msg']}" for d in details[:5]) or "invalid request"
        return JSONResponse(error_body("InvalidInput", message, details=details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _TYPE_BY_STATUS.get(exc.status_code, "HTTPError")
        message = str(exc.detail)
        headers = exc.headers
        if exc.status_code == 404 and message == "Not Found":
            message = f"no endpoint {request.method} {request.url.path} (see /docs)"
        elif exc.status_code == 405:
            allowed = ", ".join(_allowed_methods(request))
            headers = {**(headers or {}), "Allow": allowed}
            if message == "Method Not Allowed":
                message = f"{request.url.path} takes no {request.method}: use {allowed} (see /docs)"
        body = error_body(kind, message)
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    async def unstorable(request: Request, exc: Exception) -> JSONResponse:
        return unstorable_response(exc)

    for kind in UNSTORABLE:
        app.add_exception_handler(kind, unstorable)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this answer, so the server logs the traceback once.
        log.error("%s %s failed: %r", request.method, request.url.path, exc)
        return internal_error_response()


#: The methods a 405's ``Allow`` may name (OPTIONS and TRACE have no endpoint here).
_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route takes at the request's path. Starlette's 405 names only the
    first route that matched the path, and a path may have one route per method."""
    routes = request.app.router.routes
    methods = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    # A fixed path wins over a template that also matches it: /tasks/query is the query,
    # not the task named "query" (which GET /tasks/{task_id} would look for).
    fixed = request.app.openapi()["paths"].get(request.url.path)
    return [m for m in methods if m.lower() in fixed] if fixed else methods


def _validation_detail(error: dict[str, Any]) -> dict[str, Any]:
    loc = ".".join(str(part) for part in error.get("loc", ()))
    return {"loc": loc, "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}


# -- auth ---------------------------------------------------------------------------------
class BearerTokenAuth:
    """ASGI middleware: 401 for any request without ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str, open_paths: frozenset[str]):
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        message = (
            "missing or wrong API token: send 'Authorization: Bearer <token>' "
            "(set AGENT_API_TOKEN on the client)"
        )
        response = JSONResponse(
            error_body("Unauthorized", message),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)
