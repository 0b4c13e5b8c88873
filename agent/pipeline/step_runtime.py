"""What runs inside a step: load its kwargs, resolve artifact refs, call, upload results.

Every mode ends here. The code of a function step (``task.script.code``) is the
function's own source plus a small ``__main__`` that calls :func:`run_component`;
an agent runs that file, a local pipeline execs it in a forked or spawned
process (:func:`run_task_code`), and debug mode calls :func:`run_component` with
the original function in process. The status of the step's task is set by
whoever launched it (agent runner, local launcher), never here.

``python -m agent.pipeline.step_runtime TASK_ID`` runs a step's inline code in
this interpreter (the local launcher's fallback when it cannot fork).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import linecache
import os
import sys
import traceback
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from agent.core.children import exit_code
from agent.core.models import Task
from agent.pipeline.refs import map_artifact_refs
from agent.pipeline.values import ArtifactIndex, load_artifact, upload_value

#: Hyperparams section that holds a function step's arguments (ClearML's name).
KWARGS_SECTION = "kwargs"
#: Name of the single return value when a component names none (ClearML's default).
DEFAULT_RETURN = "return_object"

#: The task whose code :func:`run_task_code` runs in this process.
_loaded_task: Task | None = None
#: Artifact records of its inputs, handed over by the launcher (see :func:`preload_context`).
_loaded_artifacts: ArtifactIndex | None = None
#: True while :func:`run_task_code` execs a step's code (it ends the process itself).
_in_task_code = False


def _backend():
    from agent.store.factory import get_backend

    return get_backend()


def run_component(
    function: Callable[..., Any],
    return_values: Sequence[str] | None = (DEFAULT_RETURN,),
    task_id: str | None = None,
    task: Task | None = None,
    artifacts: ArtifactIndex | None = None,
    backend: Any = None,
) -> Any:
    """Run a function step: arguments from the task, results to its artifacts.

    Args:
        function: the component's function.
        return_values: artifact names of the results; several names mean the function
            returns a tuple of that many values.
        task_id: the step's task; default ``AGENT_TASK_ID``.
        task: the step's task record, when the caller has it (saves a read).
        artifacts: an index of artifact records to share between steps (debug mode).
        backend: the store (default: this process's).

    Returns:
        The function's result. Outside any task (no id), the function is simply
        called without arguments from a store.
    """
    task_id = task.id if task is not None else task_id or os.environ.get("AGENT_TASK_ID")
    if not task_id:
        return function()
    backend = backend or _backend()
    if task is None and _loaded_task is not None and _loaded_task.id == task_id:
        task = _loaded_task  # run_task_code read it a moment ago, in this process
        artifacts = artifacts or _loaded_artifacts
    task = task if task is not None else backend.get_task(task_id)
    args, kwargs = bind_arguments(function, load_kwargs(backend, task, artifacts))
    with step_task_context(task, backend):
        result = function(*args, **kwargs)
    outputs = list(return_values or [])
    for artifact in upload_results(backend, task.id, outputs, result, task.output_uri):
        if artifacts is not None:
            artifacts.add(task.id, artifact)
    return result


def run_step(function: Callable[..., Any], return_values: Sequence[str] | None) -> None:
    """Entry point of a generated step script: run the component, then end the process.

    A step process ends as soon as its results are stored: exit handlers run (the SDK
    sends its reports there) and streams are flushed, but the interpreter's teardown,
    ~50-100 ms once the store's modules are loaded, is skipped. Exec'd by
    :func:`run_task_code` (a local step), the caller ends the process instead.
    """
    if _in_task_code:
        run_component(function, return_values)
        return
    code = 0
    try:
        run_component(function, return_values)
    except SystemExit as exc:
        code = exit_code(exc.code)
    except BaseException:
        traceback.print_exc()
        code = 1
    end_process(code)


def end_process(code: int) -> None:
    """``os._exit(code)`` after the exit handlers and a flush of stdout and stderr."""
    import atexit

    try:
        atexit._run_exitfuncs()
    except BaseException as exc:  # a failing exit handler must not change the outcome
        print(f"agent: an exit handler failed: {exc!r}", file=sys.stderr)
    _flush_std()
    os._exit(code)


def load_kwargs(backend: Any, task: Task, artifacts: ArtifactIndex | None = None) -> dict[str, Any]:
    """The task's ``kwargs`` section with every artifact reference loaded."""
    index = artifacts or ArtifactIndex(backend)
    stored = dict(task.hyperparams.get(KWARGS_SECTION) or {})
    return map_artifact_refs(stored, lambda tid, name: load_artifact(index.get(tid, name)))


def bind_arguments(
    function: Callable[..., Any], values: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """(args, kwargs) for ``function`` from stored values by parameter name.

    Text written by hand (``agent clone --set kwargs/n=5``) is cast to the type of the
    parameter's default; ``*args`` and ``**kwargs`` parameters hold a list and a dict.
    """
    from agent.sdk.parameters import cast_like

    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    params = _signature(function).parameters
    for name, param in params.items():
        if name not in values:
            continue
        value = values[name]
        if param.kind is param.VAR_POSITIONAL:
            args.extend(value or [])
        elif param.kind is param.VAR_KEYWORD:
            kwargs.update(value or {})
        elif param.kind is param.POSITIONAL_ONLY:
            args.append(value)
        else:
            default = param.default
            if isinstance(value, str) and default is not param.empty and default is not None:
                value = cast_like(value, default, f"{KWARGS_SECTION}/{name}")
            kwargs[name] = value
    accepts_more = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if accepts_more:
        for name, value in values.items():
            if name not in params:
                kwargs[name] = value
    return args, kwargs


@functools.lru_cache(maxsize=256)
def _signature(function: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(function)


def upload_results(
    backend: Any, task_id: str, names: list[str], result: Any, output_uri: str | None = None
) -> list[Any]:
    """Store the function's result as artifacts named by ``names`` (at ``output_uri``
    when the step has one); their records.

    Raises:
        ValueError: several names but the result is not a tuple/list of that length.
    """
    if not names:
        return []
    if len(names) == 1:
        return [upload_value(backend, task_id, names[0], result, output_uri=output_uri)]
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        got = len(result) if isinstance(result, (tuple, list)) else f"one {type(result).__name__}"
        raise ValueError(
            f"the step returned {got} value(s) but return_values names {len(names)} "
            f"({', '.join(names)}): return a tuple of {len(names)} values"
        )
    return [
        upload_value(backend, task_id, name, value, output_uri=output_uri)
        for name, value in zip(names, result, strict=True)
    ]


@contextlib.contextmanager
def step_task_context(task: Task, backend: Any = None) -> Iterator[None]:
    """Make ``Task.current_task()`` the step's task while the function runs; then send
    what it reported (the task's status stays with whoever runs the step)."""
    try:
        from agent.sdk import session
        from agent.sdk.task import Task as SdkTask
    except ImportError:  # an SDK without a session: the step still runs
        yield
        return
    from agent.sdk import frameworks

    frameworks.connect(True)  # a step's saved models register as ClearML's do
    sdk_task = SdkTask(task, backend)
    previous = session.swap_current(sdk_task)
    try:
        yield
    finally:
        session.restore_current(sdk_task, previous)
        sdk_task.close()  # flushes its logger and uploads; the status is not its business


# -- inline code of a task ----------------------------------------------------------------
def preload_context(context: dict[str, Any] | None) -> None:
    """Take the task record and its inputs' artifact records from the launcher (JSON, as
    :func:`launch_context` makes it), so the step does not read them again."""
    global _loaded_task, _loaded_artifacts
    if not context:
        return
    from agent.core.models import artifact_from_dict

    _loaded_task = Task.from_dict(context["task"])
    index = ArtifactIndex(_backend())
    for task_id, records in (context.get("artifacts") or {}).items():
        for record in records.values():
            index.add(task_id, artifact_from_dict(record))
    _loaded_artifacts = index


def launch_context(task: Task, artifacts: ArtifactIndex | None) -> dict[str, Any]:
    """What a launcher hands a step process: its task record and the records of the
    artifacts its kwargs reference (those the index already holds)."""
    wanted: dict[str, dict[str, Any]] = {}
    if artifacts is not None:

        def collect(task_id: str, name: str) -> None:
            record = artifacts.cached(task_id, name)
            if record is not None:
                wanted.setdefault(task_id, {})[name] = dataclasses.asdict(record)

        map_artifact_refs(dict(task.hyperparams.get(KWARGS_SECTION) or {}), collect)
    return {"task": task.to_dict(), "artifacts": wanted}


def run_task_code(task_id: str, cwd: str | None = None) -> int:
    """Exec a task's ``script.code`` as ``__main__`` here; the process exit code.

    ``cwd`` (default: the current directory) is where the code is deemed to live:
    ``__file__`` is ``cwd/entry_point`` and ``cwd`` leads ``sys.path``, as when an
    agent runs the file it wrote there.
    """
    global _loaded_task, _in_task_code
    _in_task_code = True
    os.environ["AGENT_TASK_ID"] = task_id
    try:
        if _loaded_task is None or _loaded_task.id != task_id:
            _loaded_task = _backend().get_task(task_id)
        task = _loaded_task
        cwd = cwd or os.getcwd()
        entry = task.script.entry_point or "task_code.py"
        filename = os.path.join(cwd, entry)
        code = task.script.code
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        if not sys.path or sys.path[0] != cwd:
            sys.path.insert(0, cwd)
        sys.argv = [filename]
        # A real module as __main__ (as `python file.py` has), so that pickle finds the
        # classes the step defines.
        module = types.ModuleType("__main__")
        module.__file__ = filename
        module.__builtins__ = __builtins__
        sys.modules["__main__"] = module
        exec(compile(code, filename, "exec"), module.__dict__)
    except SystemExit as exc:
        return exit_code(exc.code)
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        _flush_std()
    return 0


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m agent.pipeline.step_runtime TASK_ID", file=sys.stderr)
        return 2
    return run_task_code(argv[0])


if __name__ == "__main__":
    end_process(main())
