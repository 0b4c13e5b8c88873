"""Compare 2 to 5 runs (of a pipeline, or any tasks): their hyperparameters side by side
with the differences marked, and their scalars overlaid (one chart per title, a series
per run).

Routes: ``/compare?ids=A,B,C`` (``ids`` may also repeat: a form's checkboxes) and
``/compare/scalars.json?ids=...`` (the charts, in the shape of ``scalars.json``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from agent.cli.render import short_id
from agent.core.errors import InvalidInput, NotFound
from agent.core.models import Task
from agent.ui import views
from agent.ui.pages import backend_of, render

router = APIRouter()
MIN_RUNS, MAX_RUNS = 2, 5


def picked_ids(request: Request) -> list[str]:
    """The ids asked for, in order, without repeats: ``ids=a,b`` and/or ``ids=a&ids=b``."""
    ids: dict[str, None] = {}
    for value in request.query_params.getlist("ids"):
        ids.update(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    return list(ids)


def runs_of(backend: Any, ids: list[str]) -> list[Task]:
    """The tasks to compare. Raises InvalidInput (too few or many) or NotFound."""
    if not MIN_RUNS <= len(ids) <= MAX_RUNS:
        raise InvalidInput(f"pick {MIN_RUNS} to {MAX_RUNS} runs to compare (got {len(ids)})")
    return [backend.get_task(task_id) for task_id in ids]


def param_rows(runs: list[Task]) -> list[dict[str, Any]]:
    """One row per (section, name) any run has, ``Args`` first: each run's value as text
    ("" where it has none) and whether they differ."""
    keys: dict[tuple[str, str], None] = {}
    for run in runs:
        for section, values in views.sorted_hyperparams(run):
            for name in sorted(values):
                if not (section == views.ARGS_SECTION and str(name).startswith("_")):
                    keys[(section, name)] = None
    ordered = sorted(keys, key=lambda k: (k[0] != views.ARGS_SECTION, k[0], k[1]))
    rows = []
    for section, name in ordered:
        cells = []
        for run in runs:
            values = run.hyperparams.get(section) or {}
            cells.append(views.text_value(values[name]) if name in values else "")
        rows.append({"section": section, "name": name, "cells": cells,
                     "differs": len(set(cells)) > 1})  # fmt: skip
    return rows


def overlaid_scalars(backend: Any, runs: list[Task]) -> list[dict[str, Any]]:
    """Every run's scalars, one chart per title, a series per run (per run and series
    where a title has several)."""
    by_run = [(run, backend.get_scalars(run.id)) for run in runs]
    merged: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for title in sorted({title for _, scalars in by_run for title in scalars}):
        names = {series for _, scalars in by_run for series in scalars.get(title, {})}
        for run, scalars in by_run:
            for series, points in scalars.get(title, {}).items():
                label = short_id(run.id) if len(names) == 1 else f"{short_id(run.id)} · {series}"
                merged.setdefault(title, {})[label] = points
    charts = views.scalar_charts(merged)
    order = {short_id(run.id): n for n, run in enumerate(runs)}
    for chart in charts:  # series in the order the runs were picked
        pairs = sorted(zip(chart["series"], chart["data"][1:], strict=True),
                       key=lambda p: (order.get(p[0].split(" · ")[0], 0), p[0]))  # fmt: skip
        chart["series"] = [name for name, _ in pairs]
        chart["data"] = [chart["data"][0], *(row for _, row in pairs)]
    return charts


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request) -> Response:
    ids = picked_ids(request)
    try:
        runs = runs_of(backend_of(request), ids)
    except (InvalidInput, NotFound) as exc:
        return render(request, "compare.html", 400 if isinstance(exc, InvalidInput) else 404,
                      nav="pipelines", error=str(exc), runs=[], rows=[], ids="")  # fmt: skip
    return render(
        request, "compare.html", nav="pipelines", error="", runs=runs,
        rows=param_rows(runs), ids=",".join(run.id for run in runs),
    )  # fmt: skip


@router.get("/compare/scalars.json")
def compare_scalars(request: Request) -> JSONResponse:
    backend = backend_of(request)
    return JSONResponse(overlaid_scalars(backend, runs_of(backend, picked_ids(request))))
