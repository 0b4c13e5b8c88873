"""Clone with edits: any task, its name, hyperparameters (every section) and queue.

Routes: ``GET /tasks/{id}/clone`` (the form), ``POST /tasks/{id}/clone`` (clone, edit,
optionally enqueue, then open the clone). "New run" of a pipeline
(:func:`agent.ui.actions.start_new_run`) is the same clone with only ``Args`` edited.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from agent.core.models import Task
from agent.ui import views
from agent.ui.pages import backend_of, render

router = APIRouter()
#: Prefix of the form fields that carry hyperparameters: ``hp:SECTION:NAME``.
PARAM_FIELD = "hp:"


def editable(section: str, name: str) -> bool:
    """Names starting with ``_`` in ``Args`` are internal: shown nowhere, kept as they were."""
    return not (section == views.ARGS_SECTION and str(name).startswith("_"))


def edited_value(old: Any, text: str) -> Any:
    """A form field back to a value: a string stays a string, anything else is JSON when
    it parses (``0.1``, ``true``), else text."""
    return text if isinstance(old, str) else views.parse_value(text)


def clone_with_edits(
    backend: Any,
    task_id: str,
    params: dict[str, dict[str, str]],
    name: str | None = None,
    queue: str | None = None,
) -> Task:
    """Clone ``task_id``, set ``params`` (form text by section and name) in its
    hyperparameters, and enqueue the clone on ``queue`` when one is given.

    The source's DAG report (``runtime.pipeline``) is of its own run, so the clone
    does not inherit it. Internal ``Args`` (``_`` names) are kept as they were.

    Returns:
        The clone (``queued`` with a queue, else ``created``).
    """
    clone = backend.clone_task(task_id, name=name or None)
    hyperparams = {section: dict(values or {}) for section, values in clone.hyperparams.items()}
    for section, values in params.items():
        target = hyperparams.setdefault(section, {})
        for key, text in values.items():
            if editable(section, key):
                target[key] = edited_value(target.get(key), text)
    runtime = {k: v for k, v in clone.runtime.items() if k != "pipeline"}
    clone = backend.update_task(clone.id, hyperparams=hyperparams, runtime=runtime)
    return backend.enqueue(clone.id, queue) if queue else clone


def params_of(form: dict[str, str]) -> dict[str, dict[str, str]]:
    """The ``hp:SECTION:NAME`` fields of a form, by section."""
    params: dict[str, dict[str, str]] = {}
    for key, value in form.items():
        if key.startswith(PARAM_FIELD) and ":" in key[len(PARAM_FIELD) :]:
            section, name = key[len(PARAM_FIELD) :].split(":", 1)
            params.setdefault(section, {})[name] = value
    return params


@router.get("/tasks/{task_id}/clone", response_class=HTMLResponse)
def clone_form(request: Request, task_id: str) -> Response:
    backend = backend_of(request)
    task = backend.get_task(task_id)
    sections = [
        (section, {k: views.text_value(v) for k, v in values.items() if editable(section, k)})
        for section, values in views.sorted_hyperparams(task)
    ]
    return render(
        request, "clone.html", nav="tasks", task=task, sections=sections,
        queue=views.default_queue(task), queues=backend.list_queues(),
    )  # fmt: skip


@router.post("/tasks/{task_id}/clone")
async def clone(request: Request, task_id: str) -> Response:
    from agent.ui.actions import form_of

    form = await form_of(request)
    queue = form.get("queue", "").strip() if form.get("enqueue") else ""
    made = await run_in_threadpool(
        clone_with_edits, backend_of(request), task_id, params_of(form),
        form.get("name", "").strip(), queue or None,
    )  # fmt: skip
    return RedirectResponse(f"/tasks/{made.id}", status_code=303)
