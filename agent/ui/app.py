"""The web UI as an ASGI application, for ``agent ui`` and for ``agent server`` at ``/``.

Server-rendered pages (Jinja2) with htmx for the live parts; the DAG is laid out in the
browser by dagre, scalars are drawn by uPlot. Everything ships in the package
(``templates/``, ``static/``): no Node.js at install or run time.

:func:`create_ui_app` builds it over any :class:`~agent.store.base.Backend`;
:class:`UIDispatch` puts it in front of the API, taking only the UI's paths
(:func:`is_ui_path`), so ``/api/v1`` and ``/openapi.json`` stay the API's.
"""

from __future__ import annotations

import time
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.cli.render import format_age, format_duration, format_size, format_time, short_id
from agent.core.errors import AgentError
from agent.ui import actions, clone, compare, pages, queue_actions, registry_pages, workers
from agent.ui.auth import STATIC_PREFIX, Sessions, UIAuth, csrf_token
from agent.ui.views import duration, short

#: First path segments that belong to the UI (``/`` too); everything else is the API's.
UI_ROOTS = frozenset(
    {"pipelines", "tasks", "queues", "workers", "models", "datasets", "compare", "login", "logout",
     "ui"}
)  # fmt: skip


def is_ui_path(path: str) -> bool:
    """Whether ``path`` is one of the UI's (pages, fragments, static files)."""
    return path == "/" or path.split("/", 2)[1] in UI_ROOTS


def create_ui_app(backend: Any, token: str | None = None, secure_cookies: bool = False) -> ASGIApp:
    """The UI over ``backend``.

    Args:
        backend: the store (``SqlBackend`` in the server, any Backend for ``agent ui``).
        token: the server's token: with one, the UI asks for it once (login form); None =
            no login (``agent ui`` on loopback).
        secure_cookies: mark the cookies ``Secure`` (behind https).
    """
    sessions = Sessions(token, secure_cookies)
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.backend = backend
    app.state.sessions = sessions
    app.state.templates = make_templates()
    app.mount(STATIC_PREFIX.rstrip("/"), StaticFiles(packages=[("agent.ui", "static")]), "static")
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.include_router(registry_pages.router)
    app.include_router(clone.router)
    app.include_router(queue_actions.router)
    app.include_router(compare.router)
    app.include_router(workers.router)

    @app.exception_handler(AgentError)
    async def agent_error(request: Request, exc: AgentError) -> Response:
        return PlainTextResponse(str(exc), exc.http_status)

    return UIAuth(app, sessions)


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("agent.ui", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        age=format_age, time=format_time, duration=format_duration, size=format_size,
        short_id=short_id, short=short, run_duration=duration,
    )  # fmt: skip
    env.globals["csrf_token"] = csrf_token
    env.globals["server_now"] = time.time
    return Jinja2Templates(env=env)


class UIDispatch:
    """ASGI: the UI's paths to the UI app, everything else (and lifespan) to the API."""

    def __init__(self, api: ASGIApp, ui: ASGIApp):
        self.api = api
        self.ui = ui

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_ui_path(scope["path"]):
            await self.ui(scope, receive, send)
        else:
            await self.api(scope, receive, send)
