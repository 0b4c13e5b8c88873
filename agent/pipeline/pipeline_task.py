"""The pipeline's own task (type ``controller``): create it, attach to it under an
agent, merge its stored ``Args``, enqueue it, close it.

A pipeline task records the pipeline file as its script (repository + commit + diff
in git, else inline code), its arguments in hyperparams section ``Args`` and its
version in runtime ``version``, so cloning it and enqueuing the clone on the
services queue runs the same pipeline again, with the clone's arguments.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from agent.core.models import Script, Task, TaskStatus, TaskTypes
from agent.store.base import Backend
from agent.store.serving import warn_if_unserved

#: Hyperparams section of the pipeline's arguments.
ARGS_SECTION = "Args"
#: Runtime property: {step: requirements} resolved where the pipeline was launched.
STEP_REQUIREMENTS = "step_requirements"
#: Tag every pipeline task carries.
PIPELINE_TAG = "pipeline"
TASK_ID_ENV = "AGENT_TASK_ID"


def attached_controller(backend: Backend) -> Task | None:
    """The controller task this process runs for an agent (``AGENT_TASK_ID``), or None."""
    task_id = os.environ.get(TASK_ID_ENV)
    if not task_id:
        return None
    try:
        task = backend.get_task(task_id)
    except Exception:
        return None
    return task if task.type == TaskTypes.controller.value else None


def create_pipeline_task(
    backend: Backend,
    name: str,
    project: str,
    script: Script,
    args: dict[str, Any],
    version: str | None = None,
    kind: str = "controller",
    descriptions: dict[str, str] | None = None,
    step_requirements: dict[str, list[str]] | None = None,
    argv: list[str] | None = None,
    output_uri: str | None = None,
) -> Task:
    """A new ``created`` controller task for a run of the pipeline.

    ``step_requirements`` travel with the task (and its clones) to the agent that runs
    the controller, which gives them to the steps it creates; ``argv``, the launching
    command line, is passed again to the script there."""
    from agent.sdk.parameters import to_stored

    runtime: dict[str, Any] = {"pipeline_kind": kind}
    if version is not None:
        runtime["version"] = str(version)
    if descriptions:
        runtime["arg_descriptions"] = dict(descriptions)
    if step_requirements:
        runtime[STEP_REQUIREMENTS] = {k: list(v) for k, v in step_requirements.items()}
    if argv:
        runtime["argv"] = [str(arg) for arg in argv]
    return backend.create_task(
        Task(
            name=name,
            project=project,
            type=TaskTypes.controller.value,
            tags=[PIPELINE_TAG],
            script=script,
            hyperparams={ARGS_SECTION: {k: to_stored(v) for k, v in args.items()}},
            runtime=runtime,
            output_uri=output_uri,
        )
    )


def merge_stored_args(task: Task, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with the values stored on the task winning, cast to the code's types."""
    from agent.sdk.parameters import cast_like

    stored = dict(task.hyperparams.get(ARGS_SECTION) or {})
    merged = dict(args)
    for name, value in stored.items():
        original = args.get(name)
        merged[name] = (
            cast_like(value, original, f"{ARGS_SECTION}/{name}") if original is not None else value
        )
    return merged


def script_of_file(path: str | os.PathLike[str] | None, warn: bool = False) -> Script:
    """The script of a pipeline file (see :func:`agent.pipeline.source.pipeline_script`)."""
    if path is None:
        return Script(entry_point="", working_dir=os.getcwd())
    from agent.pipeline.source import pipeline_script

    return pipeline_script(path, warn=warn)


def main_file() -> Path | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return Path(path).resolve() if path and Path(path).is_file() else None


def start_here(backend: Backend, task: Task) -> Task:
    """Mark a pipeline task that this process runs ``in_progress`` (unless an agent did)."""
    if task.status == TaskStatus.in_progress.value:
        return task
    return backend.set_status(task.id, TaskStatus.in_progress.value)


def finish(backend: Backend, task_id: str, status: str, message: str = "") -> None:
    """End the pipeline task (only from ``in_progress``: a stop from outside wins)."""
    try:
        backend.set_status(
            task_id, status, message=message, expected=[TaskStatus.in_progress.value]
        )
    except Exception:
        pass


def enqueue_and_exit(backend: Backend, task: Task, queue: str, exit_process: bool = True) -> None:
    """Send the pipeline task to ``queue`` for a services agent and end this process
    (as ClearML does); ``AGENT_PIPELINE_NO_EXIT=1`` returns instead."""
    backend.enqueue(task.id, queue)
    print(
        f"pipeline '{task.name}' enqueued on '{queue}' as task {task.id} "
        f"(follow it with `agent show {task.id}`)",
        flush=True,
    )
    warn_if_unserved(backend, queue)
    if exit_process and not os.environ.get("AGENT_PIPELINE_NO_EXIT"):
        sys.exit(0)


def interrupted(name: str, task_id: str | None) -> None:
    """Ctrl-C stopped a pipeline run in this process (its steps stopped already): have the
    KeyboardInterrupt, once it reaches the top, print one line instead of a traceback.

    The interrupt is still raised (the user's ``try/except KeyboardInterrupt`` sees it);
    only its report at exit changes. A task of ``Task.init`` records it as before.
    """
    from agent.sdk import session

    where = f" ({task_id}): its steps were stopped; see `agent show {task_id}`" if task_id else ""
    note = f"pipeline '{name}' interrupted{where}"
    previous = sys.excepthook
    if getattr(previous, "_agent_interrupt_note", False):
        previous = previous.__wrapped__  # type: ignore[attr-defined]

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            session.exit_info().exception = exc
            print(note, file=sys.stderr)
            return
        previous(exc_type, exc, tb)

    excepthook._agent_interrupt_note = True  # type: ignore[attr-defined]
    excepthook.__wrapped__ = previous  # type: ignore[attr-defined]
    sys.excepthook = excepthook
