"""Reporting to the running pipeline's task from anywhere: its logic, or one of its steps.

``PipelineController.get_logger()`` / ``upload_artifact()`` / ``upload_model()`` find
the pipeline task here: the controller running in this process, else the parent of the
step this process runs (``AGENT_TASK_ID``; a step task's ``parent`` is its pipeline).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from agent.pipeline.errors import PipelineError

_sdk_tasks: dict[str, Any] = {}
_lock = threading.Lock()


def pipeline_task_id() -> str:
    """The task of the running pipeline.

    Raises:
        PipelineError: this process runs no pipeline and no step of one.
    """
    from agent.pipeline.controller import PipelineController

    running = PipelineController._running
    if running is not None and running.task is not None:
        return running.task.id
    task_id = os.environ.get("AGENT_TASK_ID")
    if task_id:
        from agent.store.factory import get_backend

        task = get_backend().get_task(task_id)
        if task.type == "controller":
            return task.id
        if task.parent:
            return task.parent
    raise PipelineError(
        "no running pipeline: call this from a pipeline step or from the pipeline's logic"
    )


def pipeline_sdk_task() -> Any:
    """The SDK :class:`~agent.sdk.task.Task` of the running pipeline (one per process)."""
    from agent.sdk.task import Task

    task_id = pipeline_task_id()
    with _lock:
        if task_id not in _sdk_tasks:
            _sdk_tasks[task_id] = Task.get_task(task_id)
        return _sdk_tasks[task_id]


def upload_model(model_name: str, model_local_path: str, upload_uri: str | None = None) -> Any:
    """Register a model file as output model ``model_name`` of the pipeline task."""
    from agent.sdk.model import OutputModel

    model = OutputModel(task=pipeline_sdk_task(), name=model_name)
    model.update_weights(model_local_path, upload_uri=upload_uri, auto_delete_file=False)
    return model


def forget() -> None:
    """Drop the cached SDK tasks (tests, a new store)."""
    with _lock:
        _sdk_tasks.clear()
