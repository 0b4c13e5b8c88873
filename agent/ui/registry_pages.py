"""The UI's model and dataset registries (all GET).

Routes (stable: tests and users link to them):

- ``/models?q=TEXT``: registered models, the last updated first.
- ``/models/{id}/download``: a model's weights (its blob in the file store).
- ``/datasets?q=TEXT``: dataset versions, newest first, with their parents.
- ``/datasets/{id}``: one version: its summary, the other versions and its files.
- ``/datasets/{id}/files/{path}``: one file of a final version.
"""

from __future__ import annotations

from collections import Counter
from pathlib import PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from agent.core.errors import NotFound
from agent.core.models import Model
from agent.ui.pages import backend_of, file_response, render

router = APIRouter()
#: Models ``/models`` reads at most (the last updated first).
MODEL_SCAN_LIMIT = 5000


def model_rows(models: list[Model], text: str = "") -> list[dict[str, Any]]:
    """Models with ``versions``: how many models share their project and name."""
    versions = Counter((m.project, m.name) for m in models)
    text = text.strip().lower()
    rows = []
    for model in models:
        haystack = " ".join((model.id, model.name, model.project, model.framework, *model.tags))
        if text and text not in haystack.lower():
            continue
        rows.append({"model": model, "versions": versions[(model.project, model.name)]})
    return rows


def dataset_summaries(backend: Any) -> list[dict[str, Any]]:
    """Every dataset version's summary (newest first), with ``versions``: how many
    versions its name has."""
    from agent.datasets.dataset import dataset_records, summary

    found = [summary(record) for record in dataset_records(backend)]
    versions = Counter((d["project"], d["name"]) for d in found)
    for details in found:
        details["versions"] = versions[(details["project"], details["name"])]
    return found


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, q: str = "") -> Response:
    backend = backend_of(request)
    models = backend.query_models(include_archived=True, limit=MODEL_SCAN_LIMIT)
    return render(request, "models.html", nav="models", rows=model_rows(models, q), q=q)


@router.get("/models/{model_id}/download")
def model_download(request: Request, model_id: str) -> Response:
    model = backend_of(request).get_model(model_id)
    if not model.uri:
        return Response(f"model {model_id} has no weights (no uri)", 404)
    filename = model.filename or PurePosixPath(model.uri.rstrip("/")).name or model.name
    return file_response(model.uri, filename)


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, q: str = "") -> Response:
    found = dataset_summaries(backend_of(request))
    text = q.strip().lower()
    if text:
        found = [d for d in found if text in " ".join((d["id"], d["name"], d["project"])).lower()]
    names = {d["id"]: f"{d['name']} v{d['version']}" for d in found}
    return render(request, "datasets.html", nav="datasets", datasets=found, names=names, q=q)


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_page(request: Request, dataset_id: str) -> Response:
    from agent.datasets.dataset import read_state

    backend = backend_of(request)
    every = dataset_summaries(backend)
    details = next((d for d in every if d["id"] == dataset_id), None)
    if details is None:
        return render(request, "not_found.html", 404, what=f"dataset {dataset_id}")
    siblings = [
        d for d in every if (d["project"], d["name"]) == (details["project"], details["name"])
    ]
    names = {d["id"]: f"{d['name']} v{d['version']}" for d in every}
    files, problem = [], ""
    if details["final"]:
        try:
            files = sorted(read_state(backend, backend.get_task(dataset_id)).values(),
                           key=lambda e: e.path)  # fmt: skip
        except NotFound as exc:
            problem = str(exc)
    return render(
        request, "dataset.html", nav="datasets", d=details, versions=siblings, names=names,
        files=files, problem=problem,
    )  # fmt: skip


@router.get("/datasets/{dataset_id}/files/{path:path}")
def dataset_file(request: Request, dataset_id: str, path: str) -> Response:
    from agent.datasets.dataset import read_state

    backend = backend_of(request)
    entry = read_state(backend, backend.get_task(dataset_id)).get(path)
    if entry is None or not entry.uri:
        return Response(f"dataset {dataset_id} has no stored file {path!r}", 404)
    return file_response(entry.uri, PurePosixPath(path).name)
