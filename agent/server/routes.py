"""The ``/api/v1`` endpoints: one per Backend method, JSON in and out.

Every endpoint is a plain (sync) function: FastAPI runs it in the thread pool, so
a long-polling claim holds a thread, never the event loop. Records are sent as
``to_dict()`` (DESIGN.md's field names); lists come wrapped in an object
(``{"tasks": [...]}``) so they can grow fields later.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import StringConstraints

from agent.core.errors import InvalidInput
from agent.core.models import (
    Artifact,
    Model,
    Queue,
    Task,
    Worker,
    scalar_from_json,
    scalar_to_json,
)
from agent.server import answers as a
from agent.server import schemas as s
from agent.store.sql import SqlBackend

TaskId = Annotated[str, Path(min_length=1, max_length=64)]
QueueName = Annotated[str, Query(min_length=1, max_length=255)]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]

#: The error answers an endpoint may give, by status (their body is ``ErrorBody``, see
#: :func:`agent.server.app.document_errors`). 401, and 400/413/422 for endpoints that
#: take a body or parameters, are added to every endpoint; the others it names itself.
ERROR_RESPONSES: dict[int, dict[str, Any]] = {
    400: {
        "description": "The request cannot be read: a body that is not JSON (an ErrorBody), "
        "or a request line the HTTP layer refuses before the API sees it, such as a URL "
        "over 64 KiB (uvicorn's plain-text answer)"
    },
    401: {"description": "Missing or wrong API token (on a server started with one)"},
    404: {"description": "No such task, model, queue or worker"},
    409: {
        "description": "The request clashes with the current state: a taken id, an "
        "illegal status change, a status other than the expected one"
    },
    413: {"description": "The request body is over the server's limit (--max-body-mb)"},
    422: {
        "description": "Invalid input: the request breaks this schema, or holds a value "
        "the store cannot keep; ``error.details`` lists what, for schema errors"
    },
}


def answers(model: Any, *errors: int) -> dict[str, Any]:
    """Decorator arguments for an endpoint that answers ``model`` (None: no body), or one
    of ``errors`` besides those every endpoint may give.

    The model describes the answer in the OpenAPI schema and is not enforced: the endpoint's
    dict goes out as it is, as the fast paths (:mod:`agent.server.fast`) send it.
    """
    responses = {code: ERROR_RESPONSES[code] for code in errors}
    if model is not None:
        responses[200] = {"model": model, "description": "Success"}
    return {"response_model": None, "responses": responses}


#: The query parameters that take several values (``?ids=a&ids=b``); any other one given
#: twice is refused, where FastAPI would silently keep the last value.
MULTI_VALUED_QUERY = frozenset({"ids"})


def no_repeated_query(request: Request) -> None:
    """Refuse a single-valued query parameter given more than once (422)."""
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name in seen and name not in MULTI_VALUED_QUERY:
            raise InvalidInput(f"query parameter {name!r} is given more than once; give it once")
        seen.add(name)


def make_api_router(backend: SqlBackend) -> APIRouter:
    """The Backend methods as HTTP endpoints, over ``backend``."""
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(no_repeated_query)])
    _project_routes(router, backend)
    _task_routes(router, backend)
    _status_routes(router, backend)
    _queue_routes(router, backend)
    _worker_routes(router, backend)
    _metric_routes(router, backend)
    _artifact_routes(router, backend)
    _model_routes(router, backend)
    return router


def _project_routes(router: APIRouter, backend: SqlBackend) -> None:
    @router.get("/projects", tags=["projects"], **answers(a.ProjectList))
    def list_projects() -> dict[str, Any]:
        return {"projects": backend.list_projects()}

    @router.post("/projects", tags=["projects"], **answers(a.ProjectName))
    def create_project(body: s.ProjectIn) -> dict[str, Any]:
        return {"name": backend.create_project(body.name)}


def _task_routes(router: APIRouter, backend: SqlBackend) -> None:
    @router.post("/tasks", tags=["tasks"], **answers(Task, 404, 409))
    def create_task(
        body: s.TaskIn,
        queue: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
        priority: Annotated[int, Query(ge=-s.INT32_MAX, le=s.INT32_MAX)] = 0,
    ) -> dict[str, Any]:
        """Create a task; with ``queue``, also enqueue it there (one transaction)."""
        return backend.create_task(task_from_body(body), queue, priority).to_dict()

    @router.get("/tasks/{task_id}", tags=["tasks"], **answers(Task, 404))
    def get_task(task_id: TaskId) -> dict[str, Any]:
        return backend.get_task(task_id).to_dict()

    @router.patch("/tasks/{task_id}", tags=["tasks"], **answers(Task, 404))
    def update_task(task_id: TaskId, body: s.TaskUpdate) -> dict[str, Any]:
        return backend.update_task(task_id, **body.model_dump(exclude_unset=True)).to_dict()

    @router.delete("/tasks/{task_id}", tags=["tasks"], status_code=204, **answers(None, 404))
    def delete_task(task_id: TaskId) -> Response:
        backend.delete_task(task_id)
        return Response(status_code=204)

    @router.post("/tasks/{task_id}/runtime", tags=["tasks"], **answers(Task, 404))
    def merge_runtime(task_id: TaskId, body: s.RuntimeMerge) -> dict[str, Any]:
        return backend.merge_runtime(task_id, body.values).to_dict()

    @router.post("/tasks/{task_id}/clone", tags=["tasks"], **answers(Task, 404))
    def clone_task(task_id: TaskId, body: s.CloneRequest) -> dict[str, Any]:
        clone = backend.clone_task(
            task_id, name=body.name, parent=body.parent, project=body.project
        )
        return clone.to_dict()

    @router.post("/tasks/query", tags=["tasks"], **answers(a.TaskList))
    def query_tasks(body: s.TaskQuery) -> dict[str, Any]:
        tasks = backend.query_tasks(**body.model_dump())
        return {"tasks": [task.to_dict() for task in tasks]}


def _status_routes(router: APIRouter, backend: SqlBackend) -> None:
    @router.post("/tasks/{task_id}/status", tags=["tasks"], **answers(Task, 404, 409))
    def set_status(task_id: TaskId, body: s.StatusChange) -> dict[str, Any]:
        task = backend.set_status(task_id, body.status, body.message, body.expected)
        return task.to_dict()

    @router.post("/tasks/wait-for-stop", tags=["tasks"], **answers(a.StoppedTasks))
    def wait_for_stop(body: s.StopWait) -> dict[str, Any]:
        """Long-poll: those of ``task_ids`` no longer in progress, waiting up to ``timeout``
        seconds for one to leave it (an agent's abort check for all its tasks at once)."""
        return {"stopped": backend.wait_for_stop(body.task_ids, body.timeout)}

    @router.post("/tasks/{task_id}/enqueue", tags=["queues"], **answers(Task, 404, 409))
    def enqueue(task_id: TaskId, body: s.EnqueueRequest) -> dict[str, Any]:
        return backend.enqueue(task_id, body.queue, body.priority).to_dict()

    @router.post("/tasks/{task_id}/dequeue", tags=["queues"], **answers(Task, 404, 409))
    def dequeue(task_id: TaskId) -> dict[str, Any]:
        return backend.dequeue(task_id).to_dict()

    @router.post("/tasks/{task_id}/queue-position", tags=["queues"], **answers(a.TaskIds, 404, 409))
    def move_queue_entry(task_id: TaskId, body: s.QueuePosition) -> dict[str, Any]:
        """Move a queued task to ``position`` in its queue; answers the new order."""
        return {"task_ids": backend.move_queue_entry(task_id, body.position)}


def _queue_routes(router: APIRouter, backend: SqlBackend) -> None:
    # Queue names go in the query string or the body, never the path: a name may hold '/'.
    @router.get("/queues", tags=["queues"], **answers(a.QueueList))
    def list_queues() -> dict[str, Any]:
        return {"queues": [queue.to_dict() for queue in backend.list_queues()]}

    @router.post("/queues", tags=["queues"], **answers(Queue))
    def create_queue(body: s.QueueIn) -> dict[str, Any]:
        return backend.create_queue(body.name).to_dict()

    @router.get("/queues/by-name", tags=["queues"], **answers(Queue, 404))
    def get_queue(name: QueueName) -> dict[str, Any]:
        return backend.get_queue(name).to_dict()

    @router.get("/queues/entries", tags=["queues"], **answers(a.TaskIds, 404))
    def queue_entries(name: QueueName) -> dict[str, Any]:
        return {"task_ids": backend.queue_entries(name)}

    @router.post("/queues/claim", tags=["queues"], **answers(a.ClaimAnswer, 404))
    def claim(body: s.ClaimRequest) -> dict[str, Any]:
        """Long-poll: wait up to ``timeout`` seconds for a task; ``{"task": null}`` if none."""
        task = backend.claim(body.queues, body.worker_id, body.timeout, body.lease_s)
        return {"task": task.to_dict() if task else None}


def _worker_routes(router: APIRouter, backend: SqlBackend) -> None:
    # Worker ids go in the body: they are free-form ("host:gpu0/1").
    @router.get("/workers", tags=["workers"], **answers(a.WorkerList))
    def list_workers(
        alive_within: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    ) -> dict[str, Any]:
        return {"workers": [w.to_dict() for w in backend.list_workers(alive_within)]}

    @router.get("/workers/stats", tags=["workers"], **answers(a.WorkerStatsHistory))
    def worker_stats(
        after: Annotated[float, Query(ge=0, allow_inf_nan=False)] = 0.0,
    ) -> dict[str, Any]:
        """The workers' last stats samples (one per heartbeat), those after ``after``."""
        history = backend.get_worker_stats(after)
        return {"workers": {w: [list(sample) for sample in kept] for w, kept in history.items()}}

    @router.post("/workers", tags=["workers"], **answers(Worker))
    def register_worker(body: s.WorkerIn) -> dict[str, Any]:
        worker = backend.register_worker(body.worker_id, body.queues, body.name, body.stats)
        return worker.to_dict()

    @router.post("/workers/heartbeat", tags=["workers"], **answers(Worker, 404))
    def heartbeat(body: s.HeartbeatRequest) -> dict[str, Any]:
        return backend.heartbeat(body.worker_id, body.stats, body.lease_s).to_dict()

    @router.post("/workers/unregister", tags=["workers"], **answers(a.UnregisteredWorker, 404))
    def unregister_worker(body: s.WorkerRef) -> dict[str, Any]:
        backend.unregister_worker(body.worker_id)
        return {"worker_id": body.worker_id}

    @router.post("/workers/reap", tags=["workers"], **answers(a.TaskIds))
    def reap_expired() -> dict[str, Any]:
        """Fail now the in-progress tasks whose lease lapsed (the server also does it each second)."""
        return {"task_ids": backend.reap_expired()}


def _metric_routes(router: APIRouter, backend: SqlBackend) -> None:
    @router.post("/tasks/{task_id}/logs", tags=["logs"], **answers(a.LastSeq, 404))
    def append_logs(task_id: TaskId, body: s.LogAppend) -> dict[str, Any]:
        lines = [
            line if isinstance(line, str) else line.model_dump(exclude_none=True)
            for line in body.lines
        ]
        return {"last_seq": backend.append_logs(task_id, lines)}

    @router.get("/tasks/{task_id}/logs", tags=["logs"], **answers(a.LogLines, 404))
    def get_logs(
        task_id: TaskId,
        after: Annotated[int, Query(ge=0, le=s.MAX_SAFE_INT)] = 0,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
        before: Annotated[int | None, Query(ge=0, le=s.MAX_SAFE_INT)] = None,
        newest: bool = False,
        contains: Annotated[str | None, Query(max_length=1000)] = None,
    ) -> dict[str, Any]:
        """Lines after ``after`` (and before ``before``): the first ``limit``, or with
        ``newest`` the last; with ``contains``, those holding that text (any case)."""
        lines = backend.get_logs(task_id, after, limit, before, newest, contains)
        return {"lines": [line.to_dict() for line in lines]}

    @router.post("/tasks/{task_id}/scalars", tags=["metrics"], **answers(a.ScalarCount, 404))
    def report_scalars(task_id: TaskId, body: s.ScalarReport) -> dict[str, Any]:
        points = [(p.title, p.series, p.iteration, scalar_from_json(p.value)) for p in body.points]
        backend.report_scalars(task_id, points)
        return {"count": len(points)}

    @router.get("/tasks/{task_id}/scalars", tags=["metrics"], **answers(a.Scalars, 404))
    def get_scalars(task_id: TaskId) -> dict[str, Any]:
        scalars = backend.get_scalars(task_id)
        return {
            "scalars": {
                title: {
                    name: [(i, scalar_to_json(v)) for i, v in points]
                    for name, points in series.items()
                }
                for title, series in scalars.items()
            }
        }

    @router.post("/tasks/{task_id}/plots", tags=["metrics"], **answers(a.PlotRef, 404))
    def report_plot(task_id: TaskId, body: s.PlotIn) -> dict[str, Any]:
        backend.report_plot(task_id, body.title, body.series, body.iteration, body.figure)
        return {"title": body.title, "series": body.series, "iteration": body.iteration}

    @router.get("/tasks/{task_id}/plots", tags=["metrics"], **answers(a.Plots, 404))
    def get_plots(task_id: TaskId) -> dict[str, Any]:
        return {"plots": backend.get_plots(task_id)}


def _artifact_routes(router: APIRouter, backend: SqlBackend) -> None:
    @router.post("/tasks/{task_id}/artifacts", tags=["artifacts"], **answers(Artifact, 404))
    def add_artifact(task_id: TaskId, body: s.ArtifactIn) -> dict[str, Any]:
        return _artifact_dict(backend.add_artifact(task_id, Artifact(**body.model_dump())))

    @router.get("/tasks/{task_id}/artifacts", tags=["artifacts"], **answers(a.ArtifactMap, 404))
    def get_artifacts(task_id: TaskId) -> dict[str, Any]:
        artifacts = backend.get_artifacts(task_id)
        return {"artifacts": {name: _artifact_dict(a) for name, a in artifacts.items()}}

    @router.get("/artifacts/by-hash/{sha256}", tags=["artifacts"], **answers(a.ArtifactFound))
    def find_artifact_by_hash(
        sha256: Annotated[str, Path(min_length=1, max_length=64)],
    ) -> dict[str, Any]:
        artifact = backend.find_artifact_by_hash(sha256)
        return {"artifact": _artifact_dict(artifact) if artifact else None}


def _artifact_dict(artifact: Artifact) -> dict[str, Any]:
    return dataclasses.asdict(artifact)


def task_from_body(body: s.TaskIn) -> Task:
    """The Task a create request describes (a new id unless it names one)."""
    data = body.model_dump()
    if data["id"] is None:
        del data["id"]
    return Task.from_dict(data)


def _model_routes(router: APIRouter, backend: SqlBackend) -> None:
    @router.post("/models", tags=["models"], **answers(Model))
    def create_model(body: s.ModelIn) -> dict[str, Any]:
        return backend.create_model(Model(**body.model_dump())).to_dict()

    @router.get("/models", tags=["models"], **answers(a.ModelList))
    def query_models(
        project: Annotated[str | None, Query(max_length=255)] = None,
        name: Annotated[str | None, Query(max_length=255)] = None,
        task: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        ids: Annotated[list[NonEmpty] | None, Query(max_length=1000)] = None,
        sha256: Annotated[str | None, Query(max_length=64)] = None,
        only_published: bool = False,
        include_archived: bool = False,
        limit: Annotated[int | None, Query(ge=0, le=100_000)] = None,
    ) -> dict[str, Any]:
        models = backend.query_models(
            project, name, task, ids, sha256, only_published, include_archived, limit
        )
        return {"models": [m.to_dict() for m in models]}

    @router.get("/models/{model_id}", tags=["models"], **answers(Model, 404))
    def get_model(model_id: TaskId) -> dict[str, Any]:
        return backend.get_model(model_id).to_dict()

    @router.patch("/models/{model_id}", tags=["models"], **answers(Model, 404))
    def update_model(model_id: TaskId, body: s.ModelUpdate) -> dict[str, Any]:
        return backend.update_model(model_id, **body.model_dump(exclude_unset=True)).to_dict()

    @router.delete("/models/{model_id}", tags=["models"], status_code=204, **answers(None, 404))
    def delete_model(model_id: TaskId) -> Response:
        backend.delete_model(model_id)
        return Response(status_code=204)
