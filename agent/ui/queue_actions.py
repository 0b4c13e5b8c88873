"""The queues page's entries and what changes them: remove (dequeue) and move up/down.

Routes: ``POST /queues/remove`` (``task``) and ``POST /queues/move`` (``task``,
``position``: the place to move it to, 0 = next to run); both go back to ``/queues``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from agent.core.errors import NotFound
from agent.ui.pages import backend_of

router = APIRouter()
#: Entries of each queue that ``/queues`` lists (the next ones to run).
ENTRIES_SHOWN = 100


def queue_rows(backend: Any) -> list[dict[str, Any]]:
    """Each queue with its next entries (tasks, in claim order) and the workers serving it."""
    workers = backend.list_workers()
    rows = []
    for queue in backend.list_queues():
        ids = backend.queue_entries(queue.name)[:ENTRIES_SHOWN]
        rows.append(
            {
                "queue": queue,
                "entries": [task for task in map(_task_or_none(backend), ids) if task],
                "workers": [w for w in workers if queue.name in w.queues],
            }
        )
    return rows


def _task_or_none(backend: Any):
    def get(task_id: str):
        try:
            return backend.get_task(task_id)
        except NotFound:  # claimed and gone between the two reads
            return None

    return get


def back(note: str) -> RedirectResponse:
    return RedirectResponse(f"/queues?note={quote(note)}", status_code=303)


@router.post("/queues/remove")
async def remove(request: Request) -> Response:
    from agent.ui.actions import _attempt, form_of

    task_id = (await form_of(request)).get("task", "")
    backend = backend_of(request)

    def run() -> str:
        task = backend.dequeue(task_id)
        return f"removed {task.name or task.id} from '{task.queue or 'its queue'}'"

    return back(await _attempt(run))


@router.post("/queues/move")
async def move(request: Request) -> Response:
    from agent.ui.actions import _attempt, form_of

    form = await form_of(request)
    backend = backend_of(request)

    def run() -> str:
        position = int(form.get("position", "0"))
        order = backend.move_queue_entry(form.get("task", ""), position)
        return f"moved to position {order.index(form['task']) + 1} of {len(order)}"

    return back(await _attempt(run))
