"""``/workers``: each worker with its queues, running tasks, last heartbeat, and its CPU,
memory and GPU use as small live charts (uPlot), from the short stats history the store
keeps per worker (:meth:`~agent.store.base.Backend.get_worker_stats`).

- ``/workers``: the page.
- ``/workers/stats.json?after=TS``: what the page polls: each worker's running tasks and
  last heartbeat, and its chart points reported after ``TS`` (all of them with 0).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from agent.core import worker_stats as ws
from agent.core.models import Worker
from agent.ui.pages import backend_of, render

router = APIRouter()


@router.get("/workers", response_class=HTMLResponse)
def workers_page(request: Request) -> Response:
    workers = backend_of(request).list_workers()
    return render(request, "workers.html", nav="workers", workers=[worker_row(w) for w in workers])


@router.get("/workers/stats.json")
def workers_stats_json(request: Request, after: float = 0.0) -> JSONResponse:
    backend = backend_of(request)
    workers = backend.list_workers()
    history = backend.get_worker_stats(after=max(0.0, after))
    return JSONResponse(
        {
            "workers": {w.id: worker_row(w) for w in workers},
            "series": {w: chart_series(samples) for w, samples in history.items()},
        }
    )


def worker_row(worker: Worker) -> dict[str, Any]:
    """A worker as the table shows it: its current readings next to its charts."""
    stats = worker.stats
    gpus = ws.gpu_list(stats)
    return {
        "id": worker.id, "name": worker.name or worker.id, "queues": worker.queues,
        "tasks": worker.tasks, "last_heartbeat": worker.last_heartbeat,
        "cpu": _rounded(ws.cpu_percent(stats)), "memory": _rounded(ws.memory_percent(stats)),
        "gpus": [
            {"name": gpu.get("name") or f"GPU {n}", "utilization": _rounded(ws.gpu_utilization(gpu)),
             "memory": _rounded(ws.gpu_memory_percent(gpu))}
            for n, gpu in enumerate(gpus)
        ],
    }  # fmt: skip


def chart_series(samples: list[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    """One worker's samples as uPlot data: ``ts`` (seconds), ``cpu`` and ``memory`` (%),
    and ``gpus``: per GPU (by its place in the list), its utilisation (%). A reading a
    sample lacks is None, a gap in the chart."""
    gpu_count = max((len(ws.gpu_list(stats)) for _, stats in samples), default=0)
    gpus: list[list[float | None]] = [[] for _ in range(gpu_count)]
    for _, stats in samples:
        readings = ws.gpu_list(stats)
        for n, series in enumerate(gpus):
            series.append(_rounded(ws.gpu_utilization(readings[n])) if n < len(readings) else None)
    return {
        "ts": [ts for ts, _ in samples],
        "cpu": [_rounded(ws.cpu_percent(stats)) for _, stats in samples],
        "memory": [_rounded(ws.memory_percent(stats)) for _, stats in samples],
        "gpus": gpus,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
