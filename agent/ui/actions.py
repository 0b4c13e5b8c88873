"""What the UI changes: abort, enqueue, "New run" of a pipeline, login and logout.

Every POST here has passed the CSRF check of :class:`agent.ui.auth.UIAuth`. Forms are
urlencoded and parsed here (no python-multipart needed); the store's calls run in the
thread pool, as FastAPI's sync endpoints do.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from agent.cli.control import abort_task
from agent.core.errors import AgentError, IllegalTransition
from agent.core.models import Task
from agent.ui import views
from agent.ui.auth import CSRF_FIELD, SESSION_COOKIE
from agent.ui.pages import backend_of, render

router = APIRouter()
#: Prefix of the form fields that carry a new run's Args (``arg:NAME``).
ARG_FIELD = "arg:"


async def form_of(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v for k, v in parse_qsl(body, keep_blank_values=True) if k != CSRF_FIELD}


def back_to(task_id: str, tab: str = "info", note: str = "") -> RedirectResponse:
    url = f"/tasks/{task_id}?tab={tab}" + (f"&note={quote(note)}" if note else "")
    return RedirectResponse(url, status_code=303)


@router.post("/tasks/{task_id}/abort")
async def abort(request: Request, task_id: str) -> Response:
    backend = backend_of(request)

    def run() -> str:
        _task, done = abort_task(backend, backend.get_task(task_id))
        return done

    return back_to(task_id, note=await _attempt(run))


@router.post("/tasks/{task_id}/enqueue")
async def enqueue(request: Request, task_id: str) -> Response:
    backend = backend_of(request)
    queue = (await form_of(request)).get("queue", "").strip()

    def run() -> str:
        if not queue:
            return "pick a queue to enqueue on"
        try:
            backend.enqueue(task_id, queue)
        except IllegalTransition:
            status = backend.get_task(task_id).status
            return f"cannot enqueue a task that is {status}: use New run / clone instead"
        return f"queued on '{queue}'"

    return back_to(task_id, note=await _attempt(run))


@router.get("/tasks/{task_id}/new-run", response_class=HTMLResponse)
def new_run_form(request: Request, task_id: str) -> Response:
    backend = backend_of(request)
    task = backend.get_task(task_id)
    args = {name: views.text_value(value) for name, value in views.visible_args(task).items()}
    return render(
        request, "new_run.html", nav="pipelines", task=task, args=args,
        queue=views.default_queue(task), queues=backend.list_queues(),
    )  # fmt: skip


@router.post("/tasks/{task_id}/new-run")
async def new_run(request: Request, task_id: str) -> Response:
    form = await form_of(request)
    args = {k[len(ARG_FIELD) :]: v for k, v in form.items() if k.startswith(ARG_FIELD)}
    queue = form.get("queue", "").strip() or views.DEFAULT_CONTROLLER_QUEUE
    run = await run_in_threadpool(start_new_run, backend_of(request), task_id, args, queue)
    return RedirectResponse(f"/tasks/{run.id}", status_code=303)


def start_new_run(backend: Any, task_id: str, args: dict[str, str], queue: str) -> Task:
    """Clone the pipeline run ``task_id`` with ``args`` (form text) set in its Args, and
    enqueue the clone on ``queue`` (:func:`agent.ui.clone.clone_with_edits`). Args names
    starting with ``_`` are kept as they were.

    Returns:
        The new run, queued.
    """
    from agent.ui.clone import clone_with_edits

    return clone_with_edits(backend, task_id, {views.ARGS_SECTION: args}, queue=queue)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await form_of(request)
    sessions = request.app.state.sessions
    target = form.get("next") or "/"
    if not target.startswith("/") or target.startswith("//"):
        target = "/"  # only this site's pages
    if not sessions.token_matches(form.get("token", "")):
        return render(request, "login.html", 401, next=target, error="wrong token")
    response = RedirectResponse(target, status_code=303)
    sessions.login_cookie(response)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def _attempt(action) -> str:
    """Run ``action`` in the thread pool; an expected error becomes its message."""
    try:
        return await run_in_threadpool(action)
    except AgentError as exc:
        return str(exc)
