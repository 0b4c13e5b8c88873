"""PipelineDecorator: pipelines written as decorated Python functions (ClearML's API).

::

    @PipelineDecorator.component(return_values=["data"], cache=True)
    def load(url): ...

    @PipelineDecorator.pipeline(name="etl", project="examples", version="1.0")
    def main(url="file:///data.pkl"):
        data = load(url)          # a proxy, at once; the step runs in the background
        print(len(data))          # using the value waits for the step

    PipelineDecorator.run_locally()   # or debug_pipeline(); default: remote
    main()

Three modes, one data path (tasks, ``kwargs``, artifacts in the same store):
``debug_pipeline()`` runs components in process, synchronously; ``run_locally()``
runs the controller here and each step in a child process; the default (remote)
enqueues the controller on ``pipeline_execution_queue`` (``services``) and ends this
process; run by an agent, the controller enqueues each step on its queue.
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent.core.models import Script
from agent.pipeline import pipeline_task as ptask
from agent.pipeline.components import build_function_step, resolve_packages, steps_script
from agent.pipeline.controller import PipelineController, _backend
from agent.pipeline.dag import Node
from agent.pipeline.errors import PipelineDefinitionError
from agent.pipeline.proxy import StepProxy, is_proxy, proxy_origin, resolve
from agent.pipeline.refs import artifact_ref
from agent.pipeline.source import split_return_values, step_script
from agent.pipeline.step_runtime import step_task_context
from agent.pipeline.steps import RetryPolicy, StepOutput
from agent.pipeline.values import is_json_value, upload_value

_MODES = ("remote", "local", "debug")


class Component:
    """A function decorated with ``PipelineDecorator.component``.

    Called inside a running pipeline it becomes a step and returns proxies; called
    anywhere else it is the plain function.
    """

    #: Every component defined in this process (a pipeline launched for agents records
    #: the requirements of each, resolved here).
    defined: ClassVar[weakref.WeakSet[Component]] = weakref.WeakSet()

    def __init__(self, function: Callable[..., Any], options: dict[str, Any]):
        functools.update_wrapper(self, function)
        self.function = function
        self.name = options.pop("name", None) or function.__name__
        self.return_values = split_return_values(options.pop("return_values"))
        self.options = options
        self.signature = inspect.signature(function)
        self._code: str | None = None
        self._packages: list[str] | None = None
        self._lock = threading.Lock()
        Component.defined.add(self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        controller = PipelineDecorator._active
        if controller is None or controller._run is None:
            return self.function(*args, **kwargs)
        return controller._call_component(self, args, kwargs)

    @property
    def code(self) -> str:
        """The step's script: helpers, the function without decorators, a ``__main__``."""
        with self._lock:
            if self._code is None:
                self._code = step_script(
                    self.function, self.return_values, self.options.get("helper_functions") or ()
                )
            return self._code

    @property
    def packages(self) -> list[str]:
        code = self.code
        with self._lock:
            if self._packages is None:
                self._packages = resolve_packages(
                    self.options.get("packages"), code, _search_dirs(self.function)
                )
            return self._packages


class PipelineFunction:
    """A function decorated with ``PipelineDecorator.pipeline``: calling it runs the pipeline."""

    def __init__(self, function: Callable[..., Any], options: dict[str, Any]):
        functools.update_wrapper(self, function)
        self.function = function
        self.options = options
        self.signature = inspect.signature(function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        controller = PipelineDecorator._for_function(self)
        for name, value in arguments.items():
            controller.add_parameter(name, value)
        return controller._run_function(self.function, self.signature)


class PipelineDecorator(PipelineController):
    """Pipelines from decorated functions; see the module documentation."""

    _mode: ClassVar[str] = "remote"
    _default_execution_queue: ClassVar[str | None] = None
    _active: ClassVar[PipelineDecorator | None] = None

    _kind = "decorator"

    def __init__(self, *args: Any, **kwargs: Any):
        self._execution_queue = kwargs.pop("pipeline_execution_queue", "services")
        self._return_value_name = kwargs.pop("return_value", None)
        super().__init__(*args, **kwargs)
        self._names_lock = threading.Lock()
        self._reserved: set[str] = set()
        self._steps_script = Script()
        self._steps_dir: str | None = None

    # -- decorators ---------------------------------------------------------------------------
    @classmethod
    def component(
        cls,
        _func: Callable[..., Any] | None = None,
        *,
        return_values: Sequence[str] | str | None = ("return_object",),
        name: str | None = None,
        cache: bool = False,
        packages: str | Sequence[str] | None = None,
        parents: Sequence[str] | None = None,
        execution_queue: str | None = None,
        continue_on_fail: bool = False,
        docker: str | None = None,
        docker_args: str | None = None,
        docker_bash_setup_script: str | None = None,
        task_type: Any = None,
        auto_connect_frameworks: Any = None,
        auto_connect_arg_parser: Any = None,
        repo: str | None = None,
        repo_branch: str | None = None,
        repo_commit: str | None = None,
        helper_functions: Sequence[Callable[..., Any]] | None = None,
        monitor_metrics: Any = None,
        monitor_artifacts: Any = None,
        monitor_models: Any = None,
        retry_on_failure: int | Callable[..., bool] | RetryPolicy | None = None,
        retry_delay: float | None = None,
        retry_backoff: float | None = None,
        time_limit: float | None = None,
        pre_execute_callback: Callable[..., Any] | None = None,
        post_execute_callback: Callable[..., Any] | None = None,
        output_uri: str | bool | None = None,
        **_clearml_only: Any,
    ) -> Any:
        """Make a function a pipeline component (a step when called in a pipeline).

        Args:
            return_values: names of the returned objects, stored as artifacts; several
                names mean a tuple (``['a, b']``, one string with commas, means two).
            name: the step's name (default: the function's).
            cache: reuse an identical earlier step (same code, inputs, requirements).
            packages: requirements (a list, or a requirements file); default: the
                third-party imports inside the function.
            parents: steps that must finish first (besides those whose outputs it takes).
            execution_queue: the step's queue (default: the pipeline's ``default_queue``).
            continue_on_fail: a failure skips the step's descendants but does not fail
                the pipeline.
            docker, docker_args, docker_bash_setup_script: the step's container.
            task_type: the step task's type (:class:`~agent.core.models.TaskTypes`).
            repo, repo_branch, repo_commit: run inside this repository's checkout (a
                url, or a local path recorded as its remote and commit).
            helper_functions: functions the step's code needs besides this one.
            monitor_metrics, monitor_artifacts, monitor_models: copy these from the step
                onto the pipeline task.
            retry_on_failure: retries (a count or ``(pipeline, node, retries) -> bool``),
                ``retry_delay`` s apart, multiplied by ``retry_backoff`` each time.
            time_limit: seconds the step may run.
            pre_execute_callback, post_execute_callback: as in ``add_step``.
            output_uri: where the step's artifacts go (default: the pipeline's).
        """
        options = dict(
            return_values=return_values,
            name=name,
            cache=cache,
            packages=packages,
            parents=list(parents or []),
            execution_queue=execution_queue,
            continue_on_fail=continue_on_fail,
            docker=docker,
            docker_args=docker_args,
            docker_bash_setup_script=docker_bash_setup_script,
            task_type=task_type,
            repo=repo,
            repo_branch=repo_branch,
            repo_commit=repo_commit,
            helper_functions=list(helper_functions or []),
            monitor_metrics=monitor_metrics,
            monitor_artifacts=monitor_artifacts,
            monitor_models=monitor_models,
            retry=RetryPolicy.coerce(retry_on_failure, retry_delay, retry_backoff),
            time_limit=time_limit,
            pre_execute_callback=pre_execute_callback,
            post_execute_callback=post_execute_callback,
            output_uri=output_uri if isinstance(output_uri, str) and output_uri else None,
        )

        def decorate(function: Callable[..., Any]) -> Component:
            return Component(function, dict(options))

        return decorate(_func) if _func is not None else decorate

    @classmethod
    def pipeline(
        cls,
        _func: Callable[..., Any] | None = None,
        *,
        name: str,
        project: str,
        version: str | None = None,
        return_value: str | None = None,
        default_queue: str | None = None,
        pool_frequency: float = 0.2,
        add_pipeline_tags: bool = False,
        target_project: str | None = None,
        abort_on_failure: bool = False,
        pipeline_execution_queue: str | None = "services",
        retry_on_failure: int | Callable[..., bool] | RetryPolicy | None = None,
        force_rerun: bool | None = None,
        output_uri: str | bool | None = None,
        **_clearml_only: Any,
    ) -> Any:
        """Make a function the pipeline's logic; its arguments are the pipeline's ``Args``.

        Args:
            name, project, version: of the pipeline task.
            return_value: an artifact name to store the function's return value under
                on the pipeline task (default: not stored).
            default_queue: queue of components that name none.
            pool_frequency: minutes (ClearML); caps the status poll interval here.
            add_pipeline_tags: tag the steps ``pipe: <pipeline task id>``.
            target_project: project of the step tasks.
            abort_on_failure: a failed step stops the running ones at once.
            pipeline_execution_queue: where the controller runs in remote mode
                (``services``); None runs it here (steps still go to their queues).
            retry_on_failure: default retries of the components.
            force_rerun: ignore caches (default: ``AGENT_PIPELINE_FORCE_RERUN``).
            output_uri: where the pipeline's and its steps' artifacts go.
        """
        options = dict(
            name=name,
            project=project,
            version=version,
            return_value=return_value,
            default_queue=default_queue,
            pool_frequency=pool_frequency,
            add_pipeline_tags=add_pipeline_tags,
            target_project=target_project,
            abort_on_failure=abort_on_failure,
            pipeline_execution_queue=pipeline_execution_queue,
            retry_on_failure=retry_on_failure,
            force_rerun=force_rerun,
            output_uri=output_uri,
        )

        def decorate(function: Callable[..., Any]) -> PipelineFunction:
            return PipelineFunction(function, dict(options))

        return decorate(_func) if _func is not None else decorate

    # -- modes ----------------------------------------------------------------------------------
    @classmethod
    def run_locally(cls) -> None:
        """Run the next pipeline here: the controller in this process, each step a
        child process with this interpreter."""
        cls._mode = "local"
        from agent.pipeline import zygote

        zygote.prewarm()  # warms up while this process imports the store and builds the DAG

    @classmethod
    def debug_pipeline(cls) -> None:
        """Run the next pipeline in this process, components as plain synchronous calls
        (breakpoints work); tasks and artifacts are still recorded."""
        cls._mode = "debug"

    @classmethod
    def set_default_execution_queue(cls, default_execution_queue: str | None) -> None:  # type: ignore[override]
        """Queue of components that name none (unless the pipeline sets ``default_queue``)."""
        cls._default_execution_queue = default_execution_queue

    @classmethod
    def get_current_pipeline(cls) -> PipelineDecorator | None:
        """The pipeline whose logic runs now in this process."""
        return cls._active

    @classmethod
    def _for_function(cls, function: PipelineFunction) -> PipelineDecorator:
        options = dict(function.options)
        options["default_queue"] = options.get("default_queue") or cls._default_execution_queue
        controller = cls(**options)
        source = inspect.getsourcefile(function.function)
        controller._script_path = Path(source).resolve() if source else None
        return controller

    def _component_requirements(self, component: Component) -> list[str]:
        """What the launch recorded for ``component`` (run by an agent), else its own."""
        recorded = self._recorded_requirements()
        return list(recorded[component.name]) if component.name in recorded else component.packages

    def _step_requirements(self) -> dict[str, list[str]]:
        """{component name: its requirements} of every component defined here."""
        return {c.name: list(c.packages) for c in list(Component.defined)}

    # -- running the logic ------------------------------------------------------------------------
    def _run_function(self, function: Callable[..., Any], signature: inspect.Signature) -> Any:
        backend = _backend()
        attached = ptask.attached_controller(backend)
        mode = PipelineDecorator._mode if PipelineDecorator._mode in _MODES else "remote"
        if attached is None and mode == "remote" and self._execution_queue:
            task = self._create_task(backend, remote=True)
            self._task = task
            ptask.enqueue_and_exit(backend, task, self._execution_queue)
            return None
        run = self._launch(backend, attached, mode, None, None, steps_from_specs=False)
        self._steps_script = steps_script(self._task.script if self._task else Script())
        self._steps_dir = str(self._script_path.parent) if self._script_path else None
        previous, PipelineDecorator._active = PipelineDecorator._active, self
        try:
            with step_task_context(self._task, backend):  # Task.current_task(): the pipeline
                result = function(**_call_arguments(signature, self._args))
            run.wait()
            if self._return_value_name and result is not None and run.succeeded:
                upload_value(backend, run.pipeline_id, self._return_value_name, resolve(result))
        except KeyboardInterrupt:
            run.stop()  # Ctrl-C: the local step processes have their own sessions
            run.wait()
            self._finalize()
            ptask.interrupted(self._name, self._task.id if self._task else None)
            raise
        except BaseException as exc:
            run.wait()
            self._finalize(error=f"the pipeline logic raised {type(exc).__name__}: {exc}")
            raise
        finally:
            PipelineDecorator._active = previous
        self.wait()
        return result

    def _call_component(self, component: Component, args: tuple, kwargs: dict) -> Any:
        run = self._run
        assert run is not None
        bound = component.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        with self._names_lock:
            taken = set(run.dag.nodes) | self._reserved
            name = component.name
            index = 0
            while name in taken:
                index += 1
                name = f"{component.name}_{index}"
            self._reserved.add(name)
        parents: list[str] = []
        stored = {
            key: self._stored_argument(value, parents, name, key)
            for key, value in bound.arguments.items()
        }
        options = dict(component.options)
        if options.get("retry") is None:  # the pipeline's retry_on_failure, as in ClearML
            options["retry"] = self._retry_policy(None, None, None)
        for parent in options.pop("parents", []):
            if parent in run.dag and parent not in parents:
                parents.append(parent)
        spec = build_function_step(
            name=name,
            function=component.function,
            kwargs=stored,
            return_values=component.return_values,
            code=component.code,
            resolved_packages=self._component_requirements(component),
            parents=parents,
            local_dir=None,
            resolve_references=False,
            **options,
        )
        if not spec.explicit_repo:
            spec.script = self._steps_script
            spec.local_dir = self._steps_dir or spec.local_dir
        queue = spec.execution_queue or self._default_queue
        node = Node(name=name, spec=spec, parents=parents, queue=queue)
        run.add(node)
        with self._names_lock:
            self._reserved.discard(name)
        proxies = [StepProxy(run, name, value) for value in component.return_values]
        if not proxies:
            return None
        return proxies[0] if len(proxies) == 1 else tuple(proxies)

    def _stored_argument(self, value: Any, parents: list[str], step: str, key: str) -> Any:
        """How an argument goes into the step's ``kwargs``: proxies become outputs of
        their steps (and parents), JSON values stay, anything else is uploaded."""
        if is_proxy(value):
            origin, output = proxy_origin(value)
            if origin not in parents:
                parents.append(origin)
            return StepOutput(origin, output)
        if type(value) in (list, tuple) and _has_proxy(value):
            return [
                self._stored_argument(v, parents, step, f"{key}_{i}") for i, v in enumerate(value)
            ]
        if type(value) is dict and _has_proxy(value):
            return {
                k: self._stored_argument(v, parents, step, f"{key}_{k}") for k, v in value.items()
            }
        if is_json_value(value):
            return value
        assert self._run is not None
        name = "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in f"{step}_{key}")
        upload_value(self._run.backend, self._run.pipeline_id, name, value)
        return artifact_ref(self._run.pipeline_id, name)


def _search_dirs(function: Callable[..., Any]) -> list[Path]:
    """Where the user's own modules are, for a component defined in ``function``'s file."""
    from agent.pipeline.components import function_dir

    directory = function_dir(function)
    return [Path(directory)] if directory else []


def _has_proxy(value: Any) -> bool:
    if is_proxy(value):
        return True
    if type(value) in (list, tuple):
        return any(_has_proxy(v) for v in value)
    if type(value) is dict:
        return any(_has_proxy(v) for v in value.values())
    return False


def _call_arguments(signature: inspect.Signature, args: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for the pipeline function (``*args``/``**kwargs`` unpacked)."""
    call: dict[str, Any] = {}
    for name, param in signature.parameters.items():
        if name not in args:
            continue
        if param.kind is param.VAR_KEYWORD:
            call.update(args[name] or {})
        elif param.kind is param.VAR_POSITIONAL:
            if args[name]:
                raise PipelineDefinitionError(
                    "a pipeline function's *args cannot be pipeline arguments: name them"
                )
        else:
            call[name] = args[name]
    return call
