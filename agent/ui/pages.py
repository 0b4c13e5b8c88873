"""The UI's pages and the cheap fragments and JSON they poll (all GET).

Routes (stable: tests and users link to them):

- ``/``, ``/pipelines``: pipelines grouped by project and name.
- ``/pipelines/runs?project=P&name=N``: one pipeline's runs (filter ``status``, ``q``).
- ``/tasks``: every task (filter ``project``, ``type``, ``status``, ``tag``, ``q``; ``page``).
- ``/tasks/{id}?tab=info|configuration|console|scalars|plots|artifacts|code``: one task;
  ``&fragment=1``: that tab alone (the DAG's side panel loads it).
- ``/tasks/{id}/console?after=SEQ[&panel=1]``: new log lines (an htmx fragment);
  ``/tasks/{id}/console/earlier?before=SEQ``: the page before; ``.../console/search?q=``.
- ``/tasks/{id}/status.json``, ``/tasks/{id}/dag.json``, ``/tasks/{id}/dag-status.json``,
  ``/tasks/{id}/scalars.json``.
- ``/tasks/{id}/artifacts/{name}``, ``/tasks/{id}/plots/{n}/image``: files.
- ``/queues``, ``/login`` (``/workers``: :mod:`agent.ui.workers`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.background import BackgroundTask

from agent.core.errors import NotFound
from agent.core.models import TaskStatus, TaskTypes
from agent.ui import views

router = APIRouter()

TABS = ("info", "configuration", "console", "scalars", "plots", "artifacts", "code")
#: Rows of ``/tasks`` per page.
PAGE_SIZE = 50
#: Log lines one console fragment carries at most; the console tab opens on the last of
#: them, and "Load earlier" adds as many again.
CONSOLE_BATCH = 5000
#: Lines a search of the console's not yet loaded lines shows at most (the newest).
CONSOLE_MATCHES = 500
LIVE = frozenset({TaskStatus.queued.value, TaskStatus.in_progress.value})


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    templates = request.app.state.templates
    context.setdefault("nav", "")
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def backend_of(request: Request) -> Any:
    return request.app.state.backend


@router.get("/", response_class=HTMLResponse)
@router.get("/pipelines", response_class=HTMLResponse)
def pipelines_page(request: Request, q: str = "") -> Response:
    groups = views.pipeline_groups(views.query_controllers(backend_of(request)))
    text = q.strip().lower()
    if text:
        groups = [g for g in groups if text in f"{g.project} {g.name}".lower()]
    return render(request, "pipelines.html", nav="pipelines", groups=groups, q=q)


@router.get("/pipelines/runs", response_class=HTMLResponse)
def pipeline_runs_page(
    request: Request, project: str, name: str, status: str = "", q: str = ""
) -> Response:
    runs = views.query_controllers(backend_of(request), project=project, name=name)
    latest = runs[0] if runs else None
    if status:
        runs = [run for run in runs if run.status == status]
    text = q.strip().lower()
    if text:
        runs = [
            run
            for run in runs
            if views.matches_text(run, text) or text in str(views.visible_args(run)).lower()
        ]
    return render(
        request, "pipeline_runs.html", nav="pipelines", project=project, name=name,
        runs=runs, latest=latest, columns=views.arg_columns(runs), status=status, q=q,
        statuses=[s.value for s in TaskStatus],
    )  # fmt: skip


@router.get("/tasks", response_class=HTMLResponse)
def tasks_page(
    request: Request,
    project: str = "",
    type: str = "",
    status: str = "",
    tag: str = "",
    q: str = "",
    page: int = 1,
) -> Response:
    backend = backend_of(request)
    page = max(1, page)
    # One page, and one row more to know whether a next page exists.
    found = backend.query_tasks(
        project=project or None, type=type or None, status=status or None, tag=tag or None,
        text=q.strip() or None, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1,
    )  # fmt: skip
    rows = found[:PAGE_SIZE]
    filters = {"project": project, "type": type, "status": status, "tag": tag, "q": q}
    return render(
        request, "tasks.html", nav="tasks", tasks=rows, page=page,
        has_next=len(found) > PAGE_SIZE, filters=filters,
        projects=backend.list_projects(), types=[t.value for t in TaskTypes],
        statuses=[s.value for s in TaskStatus],
    )  # fmt: skip


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
def task_page(request: Request, task_id: str, tab: str = "info", fragment: int = 0) -> Response:
    backend = backend_of(request)
    task = _task_or_none(backend, task_id)
    if task is None:
        return render(request, "not_found.html", 404, what=f"task {task_id}")
    tab = tab if tab in TABS else "info"
    context: dict[str, Any] = {}
    if tab == "console":
        context.update(console_page(backend, task.id))
        context["after"] = context["lines"][-1].seq if context["lines"] else 0
    elif tab == "plots":
        context["plots"] = list(enumerate(backend.get_plots(task.id)))
    # fragment=1: the tab alone, for the DAG's side panel (ids there are ``panel-*``).
    return render(
        request, "task_fragment.html" if fragment else "task.html",
        nav="pipelines" if task.type == "controller" else "tasks",
        task=task, tab=tab, tabs=TABS, panel=bool(fragment),
        live=task.status in LIVE, dag=views.has_dag(task),
        args=views.visible_args(task), sections=views.sorted_hyperparams(task),
        duration=views.duration(task), queues=backend.list_queues(),
        default_queue=views.default_queue(task), **context,
    )  # fmt: skip


@router.get("/tasks/{task_id}/console", response_class=HTMLResponse)
def console_fragment(request: Request, task_id: str, after: int = 0, panel: int = 0) -> Response:
    backend = backend_of(request)
    task = backend.get_task(task_id)
    lines = backend.get_logs(task.id, after=after, limit=CONSOLE_BATCH)
    last = lines[-1].seq if lines else after
    return render(
        request, "console_fragment.html", task=task, lines=lines, after=last, panel=bool(panel),
        live=task.status in LIVE or len(lines) == CONSOLE_BATCH,
    )  # fmt: skip


@router.get("/tasks/{task_id}/status.json")
def status_json(request: Request, task_id: str) -> JSONResponse:
    """The cheap poll of a live task's page: when the status changes, the page reloads
    its header, actions and Info tab."""
    return JSONResponse({"status": backend_of(request).get_task(task_id).status})


def console_page(backend: Any, task_id: str, before: int | None = None) -> dict[str, Any]:
    """The last :data:`CONSOLE_BATCH` lines (before ``before``), whether earlier ones
    exist, and the seq of the first line shown (the next page ends there)."""
    lines = backend.get_logs(task_id, limit=CONSOLE_BATCH + 1, before=before, newest=True)
    has_earlier = len(lines) > CONSOLE_BATCH
    lines = lines[1:] if has_earlier else lines
    first = lines[0].seq if lines else before or 0
    return {"lines": lines, "has_earlier": has_earlier, "first": first, "batch": CONSOLE_BATCH}


@router.get("/tasks/{task_id}/console/earlier", response_class=HTMLResponse)
def console_earlier(request: Request, task_id: str, before: int, panel: int = 0) -> Response:
    """The page of lines before ``before`` (prepended to the console) and the button
    for the page before that."""
    backend = backend_of(request)
    task = backend.get_task(task_id)
    page = console_page(backend, task.id, before=max(1, before))
    return render(request, "console_earlier.html", task=task, panel=bool(panel), **page)


@router.get("/tasks/{task_id}/console/search", response_class=HTMLResponse)
def console_search(request: Request, task_id: str, q: str = "", before: int = 0) -> Response:
    """Lines holding ``q`` among those before ``before``: the ones the page has not loaded
    (the page filters its own)."""
    backend = backend_of(request)
    task = backend.get_task(task_id)
    text = q.strip()
    lines = []
    if text and before > 1:
        lines = backend.get_logs(
            task.id, limit=CONSOLE_MATCHES, before=before, newest=True, contains=text
        )
    return render(
        request, "console_matches.html", task=task, lines=lines, q=text, limit=CONSOLE_MATCHES
    )


@router.get("/tasks/{task_id}/dag.json")
def dag_json(request: Request, task_id: str) -> JSONResponse:
    task = backend_of(request).get_task(task_id)
    if not views.has_dag(task):
        return JSONResponse({"error": f"task {task_id} reported no pipeline DAG"}, 404)
    return JSONResponse(views.dag_graph(task) or {"nodes": [], "edges": []})


@router.get("/tasks/{task_id}/dag-status.json")
def dag_status_json(request: Request, task_id: str) -> JSONResponse:
    return JSONResponse(views.dag_status(backend_of(request).get_task(task_id)))


@router.get("/tasks/{task_id}/scalars.json")
def scalars_json(request: Request, task_id: str) -> JSONResponse:
    return JSONResponse(views.scalar_charts(backend_of(request).get_scalars(task_id)))


@router.get("/tasks/{task_id}/artifacts/{name}")
def artifact_download(request: Request, task_id: str, name: str) -> Response:
    artifact = backend_of(request).get_artifacts(task_id).get(name)
    if artifact is None:
        return Response(f"task {task_id} has no artifact {name!r}", 404)
    filename = Path(artifact.uri.rstrip("/")).name or name
    return file_response(artifact.uri, filename)


@router.get("/tasks/{task_id}/plots/{index}/image")
def plot_image(request: Request, task_id: str, index: int) -> Response:
    plots = backend_of(request).get_plots(task_id)
    if not 0 <= index < len(plots):
        return Response(f"task {task_id} has no plot #{index}", 404)
    media = plots[index]["figure"].get("media") or {}
    if not media.get("url"):
        return Response(f"plot #{index} of task {task_id} is not an image", 404)
    return file_response(
        media["url"], media.get("filename") or "image", media.get("content_type"), inline=True
    )


def file_response(
    uri: str, filename: str, media_type: str | None = None, inline: bool = False
) -> Response:
    """The blob at ``uri``, read in place where the store is local, else copied to a temp
    file that is removed once sent."""
    from agent.files.factory import open_uri

    store, _key = open_uri(uri)
    disposition = "inline" if inline else "attachment"
    try:
        local = store.local_path(uri)
        if local is not None:
            return FileResponse(
                local,
                media_type=media_type,
                filename=filename,
                content_disposition_type=disposition,
            )
        tmp = Path(tempfile.mkdtemp(prefix="agent-ui-"))
        path = store.get_file(uri, tmp / "blob")
    except NotFound:
        return Response(f"the file of {filename!r} is gone from its store ({uri})", 404)
    return FileResponse(
        path, media_type=media_type, filename=filename, content_disposition_type=disposition,
        background=BackgroundTask(_remove_tree, tmp),
    )  # fmt: skip


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@router.get("/queues", response_class=HTMLResponse)
def queues_page(request: Request) -> Response:
    from agent.ui.queue_actions import queue_rows

    return render(request, "queues.html", nav="queues", rows=queue_rows(backend_of(request)))


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/", error: str = "") -> Response:
    return render(request, "login.html", next=next, error=error)


def _task_or_none(backend: Any, task_id: str):
    try:
        return backend.get_task(task_id)
    except NotFound:
        return None
