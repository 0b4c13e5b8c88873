"""PipelineController: a pipeline built from steps (existing tasks or functions).

Usage follows ClearML::

    pipe = PipelineController(name="etl", project="examples", version="1.0")
    pipe.add_parameter("url", "file:///data/iris.pkl")
    pipe.add_step("load", base_task_id=load_task.id, parameter_override={"Args/url": "${pipeline.url}"})
    pipe.add_step("train", base_task_id=train_task.id, parents=["load"],
                  parameter_override={"Args/data": "${load.artifacts.data.url}"})
    pipe.start()              # the controller runs on the services queue
    # pipe.start_locally()    # the controller runs here, steps on their queues
    # pipe.start_locally(run_pipeline_steps_locally=True)   # everything here

The DAG is checked (cycles, unknown parents, bad ``${...}`` references) before any
step launches. Steps from tasks are clones of their base task; a base task that is
itself a pipeline runs as a sub-pipeline on the services queue.
"""

from __future__ import annotations

import gc
import inspect
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent.core.models import Task, TaskStatus
from agent.pipeline import pipeline_task as ptask
from agent.pipeline import reporting
from agent.pipeline.cache import force_rerun_requested
from agent.pipeline.dag import Dag, Node
from agent.pipeline.engine import PipelineRun, RunOptions
from agent.pipeline.errors import PipelineDefinitionError
from agent.pipeline.launchers import launcher_for, local_parallelism
from agent.pipeline.refs import artifact_ref
from agent.pipeline.source import split_return_values
from agent.pipeline.steps import (
    FunctionStep,
    RetryPolicy,
    StepSpec,
    TaskStep,
    check_references,
)
from agent.pipeline.values import is_json_value, upload_value

logger = logging.getLogger(__name__)

DEFAULT_QUEUE = "default"


_gc_frozen = False


def _backend():
    """The store of this process. The first call also freezes the objects alive so far
    (``gc.freeze``): the store's modules are then never traversed by the collector, which
    keeps collections short while steps run and saves ~50-100 ms at interpreter exit."""
    global _gc_frozen
    from agent.store.factory import get_backend

    backend = get_backend()
    if not _gc_frozen:
        _gc_frozen = True
        gc.freeze()
    return backend


class PipelineController:
    """A pipeline whose steps are added explicitly (ClearML's ``PipelineController``).

    Args:
        name: the pipeline's name (its controller task's name).
        project: the project of the controller task (and of the steps).
        version: identifies the pipeline's code (kept in runtime ``version``).
        pool_frequency: minutes between status checks, in ClearML; here steps are
            watched continuously and this caps the poll interval.
        add_pipeline_tags: tag every step ``pipe: <pipeline task id>``.
        target_project: project of the step tasks (default: ``project``).
        abort_on_failure: stop all running steps when one fails (default: unrelated
            branches go on; the pipeline still ends failed).
        retry_on_failure: default retry policy of the steps (count or callable).
        force_rerun: ignore every cache (default: ``AGENT_PIPELINE_FORCE_RERUN``).
        default_queue: queue of steps that name none.
        output_uri: where the pipeline's and its steps' artifacts go (a directory,
            ``s3://...``, the server); default ``AGENT_FILES_URL``, else the store's.
    """

    #: The pipeline this process runs (for ``get_logger`` & co. in debug mode).
    _running: ClassVar[PipelineController | None] = None
    #: ClearML's ``PipelineController.Node``: what callbacks and ``get_pipeline_dag`` get.
    Node = Node

    def __init__(
        self,
        name: str,
        project: str,
        version: str | None = None,
        pool_frequency: float = 0.2,
        add_pipeline_tags: bool = False,
        target_project: str | bool | None = None,
        auto_version_bump: bool | None = None,
        abort_on_failure: bool = False,
        add_run_number: bool = True,
        retry_on_failure: int | Callable[..., bool] | RetryPolicy | None = None,
        docker: str | None = None,
        docker_args: str | None = None,
        docker_bash_setup_script: str | None = None,
        packages: str | Sequence[str] | None = None,
        repo: str | None = None,
        repo_branch: str | None = None,
        repo_commit: str | None = None,
        force_rerun: bool | None = None,
        default_queue: str | None = None,
        output_uri: str | bool | None = None,
        **_clearml_only: Any,
    ):
        self._name = name
        self._project = project
        self._version = version
        self._pool_frequency = pool_frequency
        self._add_pipeline_tags = add_pipeline_tags
        self._target_project = (
            target_project if isinstance(target_project, str) and target_project else None
        )
        self._abort_on_failure = abort_on_failure
        self._retry_on_failure = retry_on_failure
        self._force_rerun = force_rerun
        self._default_queue = default_queue
        self._output_uri = output_uri if isinstance(output_uri, str) and output_uri else None
        self._function_defaults = {
            "docker": docker,
            "docker_args": docker_args,
            "docker_bash_setup_script": docker_bash_setup_script,
            "packages": packages,
            "repo": repo,
            "repo_branch": repo_branch,
            "repo_commit": repo_commit,
        }
        self._parameters: dict[str, dict[str, Any]] = {}
        self._specs: dict[str, StepSpec] = {}
        self._task: Task | None = None
        self._run: PipelineRun | None = None
        self._finished = threading.Event()
        self._finish_lock = threading.Lock()
        self._outcome: str | None = None
        self._script_path: Path | None = None
        self._args: dict[str, Any] = {}

    # -- identity ---------------------------------------------------------------------------
    @property
    def id(self) -> str | None:
        """The pipeline task's id (once started)."""
        return self._task.id if self._task else None

    @property
    def task(self) -> Task | None:
        return self._task

    # -- definition -------------------------------------------------------------------------
    def add_parameter(
        self,
        name: str,
        default: Any = None,
        description: str | None = None,
        param_type: Any = None,
    ) -> None:
        """A pipeline argument (hyperparams ``Args/name``), usable as ``${pipeline.name}``."""
        self._parameters[name] = {"default": default, "description": description or ""}

    def get_parameters(self) -> dict[str, Any]:
        """The pipeline's arguments (their values once the run started)."""
        if self._args:
            return dict(self._args)
        return {k: v["default"] for k, v in self._parameters.items()}

    def set_default_execution_queue(self, default_execution_queue: str | None) -> None:
        """Queue of the steps that name none."""
        self._default_queue = default_execution_queue

    def add_step(
        self,
        name: str,
        base_task_id: str | None = None,
        parents: Sequence[str] | None = None,
        parameter_override: dict[str, Any] | None = None,
        configuration_overrides: dict[str, Any] | None = None,
        task_overrides: dict[str, Any] | None = None,
        execution_queue: str | None = None,
        monitor_metrics: Any = None,
        monitor_artifacts: Any = None,
        monitor_models: Any = None,
        time_limit: float | None = None,
        base_task_project: str | None = None,
        base_task_name: str | None = None,
        clone_base_task: bool = True,
        continue_on_fail: bool = False,
        pre_execute_callback: Callable[..., Any] | None = None,
        post_execute_callback: Callable[..., Any] | None = None,
        cache_executed_step: bool = False,
        base_task_factory: Callable[..., Any] | None = None,
        retry_on_failure: int | Callable[..., bool] | RetryPolicy | None = None,
        retry_delay: float | None = None,
        retry_backoff: float | None = None,
        **_clearml_only: Any,
    ) -> bool:
        """A step that runs a clone of an existing task.

        Args:
            name: the step's unique name.
            base_task_id: the task to clone (or ``base_task_project`` + ``base_task_name``).
            parents: steps that must succeed first (steps named in references are added).
            parameter_override: ``{"Section/name": value}``; values may hold ``${...}``.
            configuration_overrides: ``{name: text or dict}``.
            task_overrides: ``{"script.branch": ..., "container.image": ...}``.
            execution_queue: the step's queue (default: the pipeline's; a base task
                that is a pipeline goes to ``services``).
            time_limit: seconds the step may run; past it the step is stopped and fails.
            continue_on_fail: the pipeline goes on (and does not fail) if this step
                fails; its descendants are skipped.
            pre_execute_callback: ``(pipeline, node, parameters) -> bool``; False skips
                the step and its subtree.
            post_execute_callback: ``(pipeline, node)`` once the step completed.
            cache_executed_step: reuse an identical earlier step.
            retry_on_failure: retries (a count or ``(pipeline, node, retries) -> bool``),
                ``retry_delay`` s apart, multiplied by ``retry_backoff`` each time.
            monitor_metrics, monitor_artifacts, monitor_models: copy these from the
                step onto the pipeline task.

        Returns:
            True.
        """
        if not base_task_id and not (base_task_project and base_task_name):
            if base_task_factory is None:
                raise PipelineDefinitionError(
                    f"step '{name}': give base_task_id, or base_task_project and base_task_name"
                )
            base_task_id = _task_id(base_task_factory(None))
        spec = TaskStep(
            name=name,
            parents=list(parents or []),
            execution_queue=execution_queue,
            cache=cache_executed_step,
            continue_on_fail=continue_on_fail,
            retry=self._retry_policy(retry_on_failure, retry_delay, retry_backoff),
            time_limit=time_limit,
            monitor_metrics=monitor_metrics,
            monitor_artifacts=monitor_artifacts,
            monitor_models=monitor_models,
            pre_execute_callback=pre_execute_callback,
            post_execute_callback=post_execute_callback,
            base_task_id=_task_id(base_task_id) if base_task_id else None,
            base_task_project=base_task_project,
            base_task_name=base_task_name,
            parameter_override=dict(parameter_override or {}),
            configuration_overrides=dict(configuration_overrides or {}),
            task_overrides=dict(task_overrides or {}),
        )
        self._add_spec(spec)
        return True

    def add_function_step(
        self,
        name: str,
        function: Callable[..., Any],
        function_kwargs: dict[str, Any] | None = None,
        function_return: Sequence[str] | None = None,
        project_name: str | None = None,
        task_name: str | None = None,
        task_type: str | None = None,
        auto_connect_frameworks: Any = None,
        auto_connect_arg_parser: Any = None,
        packages: str | Sequence[str] | None = None,
        repo: str | None = None,
        repo_branch: str | None = None,
        repo_commit: str | None = None,
        helper_functions: Sequence[Callable[..., Any]] | None = None,
        docker: str | None = None,
        docker_args: str | None = None,
        docker_bash_setup_script: str | None = None,
        parents: Sequence[str] | None = None,
        execution_queue: str | None = None,
        monitor_metrics: Any = None,
        monitor_artifacts: Any = None,
        monitor_models: Any = None,
        time_limit: float | None = None,
        continue_on_fail: bool = False,
        pre_execute_callback: Callable[..., Any] | None = None,
        post_execute_callback: Callable[..., Any] | None = None,
        cache_executed_step: bool = False,
        retry_on_failure: int | Callable[..., bool] | RetryPolicy | None = None,
        retry_delay: float | None = None,
        retry_backoff: float | None = None,
        output_uri: str | bool | None = None,
        **_clearml_only: Any,
    ) -> bool:
        """A step made from a function: its source runs as the step's code.

        ``function_kwargs`` values may be ``${pipeline.arg}``, ``${step.return_name}``
        (another function step's return value, passed as an artifact) or
        ``${step.artifacts.name}``; ``function_return`` names the return values.
        Other arguments are those of :meth:`add_step` and of
        ``PipelineDecorator.component``.
        """
        from agent.pipeline.components import build_function_step

        defaults = self._function_defaults
        spec = build_function_step(
            name=name,
            function=function,
            kwargs=dict(function_kwargs or {}),
            return_values=split_return_values(function_return if function_return else []),
            task_type=task_type,
            packages=packages if packages is not None else defaults["packages"],
            repo=repo or defaults["repo"],
            repo_branch=repo_branch or defaults["repo_branch"],
            repo_commit=repo_commit or defaults["repo_commit"],
            helper_functions=helper_functions,
            docker=docker or defaults["docker"],
            docker_args=docker_args or defaults["docker_args"],
            docker_bash_setup_script=docker_bash_setup_script
            or defaults["docker_bash_setup_script"],
            execution_queue=execution_queue,
            cache=cache_executed_step,
            continue_on_fail=continue_on_fail,
            retry=self._retry_policy(retry_on_failure, retry_delay, retry_backoff),
            time_limit=time_limit,
            monitor_metrics=monitor_metrics,
            monitor_artifacts=monitor_artifacts,
            monitor_models=monitor_models,
            pre_execute_callback=pre_execute_callback,
            post_execute_callback=post_execute_callback,
            parents=list(parents or []),
            local_dir=str(Path(inspect.getsourcefile(function) or ".").resolve().parent),
            output_uri=output_uri if isinstance(output_uri, str) and output_uri else None,
        )
        self._add_spec(spec)
        return True

    def _retry_policy(
        self, retry_on_failure: Any, retry_delay: float | None, retry_backoff: float | None
    ) -> RetryPolicy:
        """A step's retries: its own ``retry_on_failure``, else the pipeline's default."""
        if retry_on_failure is None:
            retry_on_failure = self._retry_on_failure
        return RetryPolicy.coerce(retry_on_failure, retry_delay, retry_backoff)

    def _add_spec(self, spec: StepSpec) -> None:
        if spec.name in self._specs:
            raise PipelineDefinitionError(f"pipeline step '{spec.name}' is added twice")
        if not spec.name or "/" in spec.name or "." in spec.name:
            raise PipelineDefinitionError(
                f"bad step name {spec.name!r}: use letters, digits, '_' or '-' (no '.' or '/')"
            )
        self._specs[spec.name] = spec

    # -- validation --------------------------------------------------------------------------
    def _build_dag(self) -> Dag:
        """The DAG of the added steps, checked before anything runs.

        Raises:
            PipelineDefinitionError: unknown parent, cycle, bad reference, missing base task.
        """
        dag = Dag()
        known = set(self._specs)
        args = set(self._parameters)
        for spec in self._specs.values():
            check_references(spec.references(), spec.name, known, args)
            parents = list(spec.parents)
            parents += [s for s in spec.referenced_steps() if s not in parents]
            spec.parents = parents
            dag.add(Node(name=spec.name, spec=spec, parents=parents, queue=spec.execution_queue))
        dag.validate()
        backend = _backend()
        for spec in self._specs.values():
            if isinstance(spec, TaskStep):
                spec.resolve_base(backend)
        return dag

    # -- running -----------------------------------------------------------------------------
    def start(
        self,
        queue: str | None = "services",
        step_task_created_callback: Callable[..., Any] | None = None,
        step_task_completed_callback: Callable[..., Any] | None = None,
        wait: bool = True,
    ) -> bool:
        """Run the pipeline: its controller on ``queue`` (by a services agent).

        Here (not under an agent) this creates the pipeline task, enqueues it and
        ends the process, as ClearML does. Run by the agent, it runs the steps, each
        on its queue, and (``wait``) returns when the pipeline ended.
        ``queue=None`` runs the controller here (as :meth:`start_locally`).

        Returns:
            True when the pipeline started (and, waiting, succeeded).
        """
        backend = _backend()
        self._build_dag()  # a broken definition fails here, before anything is created
        attached = ptask.attached_controller(backend)
        if attached is None and queue:
            task = self._create_task(backend, remote=True)
            ptask.enqueue_and_exit(backend, task, queue)
            self._task = task
            return True
        self._launch(
            backend, attached, "remote", step_task_created_callback, step_task_completed_callback
        )
        return self._wait_as_current(backend) if wait else True

    def start_locally(self, run_pipeline_steps_locally: bool = False) -> bool:
        """Run the controller in this process; steps on their queues, or (with
        ``run_pipeline_steps_locally``) as local processes. Waits for the end."""
        backend = _backend()
        attached = ptask.attached_controller(backend)
        mode = "local" if run_pipeline_steps_locally else "remote"
        self._launch(backend, attached, mode, None, None)
        return self._wait_as_current(backend)

    def _wait_as_current(self, backend: Any) -> bool:
        """``wait()`` with the pipeline task as ``Task.current_task()`` meanwhile."""
        from agent.pipeline.step_runtime import step_task_context

        assert self._task is not None
        with step_task_context(self._task, backend):
            try:
                return self.wait()
            except KeyboardInterrupt:  # Ctrl-C: stop the steps, end stopped, say so
                if self._run is not None:
                    self._run.stop()
                    self._run.wait()
                self._finalize()
                ptask.interrupted(self._name, self._task.id)
                raise

    def _create_task(self, backend: Any, remote: bool = False) -> Task:
        """The pipeline's task. ``remote``: its controller will run on an agent, so warn
        about what agents cannot fetch, and record each function step's requirements as
        resolved here, where the user's libraries are installed (a services agent has
        none of them), and the command line, which the agent passes to the script again."""
        script_path = self._script_path or ptask.main_file()
        return ptask.create_pipeline_task(
            backend,
            self._name,
            self._project,
            ptask.script_of_file(script_path, warn=remote),
            self.get_parameters(),
            version=self._version,
            kind=self._kind,
            descriptions={
                k: v["description"] for k, v in self._parameters.items() if v["description"]
            },
            step_requirements=self._step_requirements() if remote else None,
            argv=sys.argv[1:] if remote else None,
            output_uri=self._output_uri,
        )

    def _step_requirements(self) -> dict[str, list[str]]:
        """{function step name: its requirements}, resolved in this process."""
        return {
            name: list(spec.packages)
            for name, spec in self._specs.items()
            if isinstance(spec, FunctionStep)
        }

    def _recorded_requirements(self) -> dict[str, list[str]]:
        """The step requirements recorded when the pipeline was launched (on an agent)."""
        recorded = (self._task.runtime if self._task else {}).get(ptask.STEP_REQUIREMENTS)
        return recorded if isinstance(recorded, dict) else {}

    _kind = "controller"

    def _launch(
        self,
        backend: Any,
        attached: Task | None,
        mode: str,
        created_cb: Callable[..., Any] | None,
        completed_cb: Callable[..., Any] | None,
        steps_from_specs: bool = True,
    ) -> PipelineRun:
        dag = self._build_dag() if steps_from_specs else Dag()
        task = attached or self._create_task(backend)
        self._args = ptask.merge_stored_args(task, self.get_parameters())
        if attached is not None and task.hyperparams.get(ptask.ARGS_SECTION) != self._args:
            from agent.sdk.parameters import to_stored

            backend.update_task(
                task.id,
                hyperparams={
                    **task.hyperparams,
                    ptask.ARGS_SECTION: {k: to_stored(v) for k, v in self._args.items()},
                },
            )
        task = ptask.start_here(backend, task)
        self._task = task
        launcher = launcher_for(
            mode, backend, task.id, self._default_queue or DEFAULT_QUEUE, self._pool_frequency
        )
        options = RunOptions(
            abort_on_failure=self._abort_on_failure,
            synchronous=mode == "debug",
            force_rerun=force_rerun_requested(self._force_rerun),
            add_pipeline_tags=self._add_pipeline_tags,
            step_project=self._target_project or self._project,
            default_queue=self._default_queue,
            step_task_created_callback=created_cb,
            step_task_completed_callback=completed_cb,
            max_parallel=local_parallelism() if mode == "local" else None,
            output_uri=self._output_uri,
        )
        run = PipelineRun(backend, task.id, launcher, options, controller=self, args=self._args)
        self._run = run
        PipelineController._running = self
        recorded = self._recorded_requirements()
        for node in dag:
            if isinstance(node.spec, FunctionStep) and node.name in recorded:
                node.spec.packages = list(recorded[node.name])
            if isinstance(node.spec, FunctionStep):
                self._store_function_inputs(backend, node.spec, task.id)
                if not node.spec.explicit_repo:
                    self._attach_function_source(node.spec)
            node.queue = node.queue or self._default_queue
            run.add(node)
        run.start()
        return run

    def _attach_function_source(self, spec: FunctionStep) -> None:
        """Record the repository of the file that defines a function step (so an agent's
        checkout can import the modules next to it) and run it from that file's dir here."""
        from agent.pipeline.components import function_dir, steps_script

        directory = function_dir(spec.function) if spec.function else None
        if directory is None:
            return
        cache = self.__dict__.setdefault("_scripts_by_dir", {})
        if directory not in cache:
            source = inspect.getsourcefile(spec.function)
            cache[directory] = steps_script(ptask.script_of_file(source))
        spec.script = cache[directory]
        spec.local_dir = directory

    def _store_function_inputs(self, backend: Any, spec: FunctionStep, pipeline_id: str) -> None:
        """Upload non-JSON ``function_kwargs`` values as artifacts of the pipeline task."""
        for key, value in list(spec.kwargs.items()):
            if isinstance(value, str) or is_json_value(value):
                continue
            name = f"{spec.name}_{key}"
            upload_value(backend, pipeline_id, name, value)
            spec.kwargs[key] = artifact_ref(pipeline_id, name)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the pipeline to end; True when it succeeded (cached steps count)."""
        run = self._run
        if run is None:
            return False
        run.wait(timeout)
        if not run.finished:
            return False
        self._finalize()
        return self._outcome == TaskStatus.completed.value

    def _finalize(self, error: str = "") -> None:
        """Close the run and set the pipeline task's final status (once)."""
        with self._finish_lock:
            if self._outcome is not None or self._run is None or self._task is None:
                return
            run = self._run
            run.close()
            if run.stopped_by_user:
                status, message = TaskStatus.stopped.value, "stopped"
            elif error or not run.succeeded:
                failed = ", ".join(run.failed_steps)
                status = TaskStatus.failed.value
                message = error or (f"step(s) failed: {failed}" if failed else "aborted")
            else:
                status, message = TaskStatus.completed.value, ""
            ptask.finish(run.backend, self._task.id, status, message)
            self._outcome = status
            self._finished.set()
            if PipelineController._running is self:
                PipelineController._running = None
            if status != TaskStatus.completed.value and not run.stopped_by_user:
                logger.warning(
                    "pipeline '%s' (%s) %s: %s", self._name, self._task.id, status, message
                )

    def stop(
        self, timeout: float | None = None, mark_failed: bool = False, mark_aborted: bool = False
    ) -> None:
        """Stop the running steps and end the pipeline (``stopped``, or ``failed``)."""
        run = self._run
        if run is None:
            return
        run.stop()
        run.wait(timeout)
        if mark_failed:
            run.stopped_by_user = False
        self._finalize()

    def is_running(self) -> bool:
        """Whether the pipeline's run goes on."""
        return self._run is not None and self._outcome is None and not self._run.finished

    def is_successful(self, fail_on_step_fail: bool = True, fail_condition: str = "all") -> bool:
        """True when the pipeline completed; cached steps count as successful.

        Args:
            fail_on_step_fail: also look at the steps (False: the pipeline task only).
            fail_condition: ``"all"``: no step failed or was stopped; ``"failed"``: no
                step failed; ``"aborted"``: no step was stopped.
        """
        if self._outcome != TaskStatus.completed.value or self._run is None:
            return False
        if not fail_on_step_fail:
            return True
        bad = {"all": ("failed", "stopped"), "failed": ("failed",), "aborted": ("stopped",)}
        states = bad.get(fail_condition, bad["all"])
        return not any(node.state.value in states for node in self._run.dag)

    def get_pipeline_dag(self) -> dict[str, Node]:
        """The steps by name, with their state (``status``, ``task_id``, ``executed``...)."""
        if self._run is not None:
            return dict(self._run.dag.nodes)
        return {
            name: Node(name=name, spec=spec, parents=list(spec.parents), queue=spec.execution_queue)
            for name, spec in self._specs.items()
        }

    def get_processed_nodes(self) -> list[Node]:
        return [n for n in self.get_pipeline_dag().values() if n.state.is_done]

    def get_running_nodes(self) -> list[Node]:
        return [
            n
            for n in self.get_pipeline_dag().values()
            if n.state.value in ("queued", "in_progress")
        ]

    # -- reporting to the pipeline task from anywhere -----------------------------------------
    @classmethod
    def get_logger(cls) -> Any:
        """The Logger of the pipeline task (report metrics on the pipeline from a step)."""
        return reporting.pipeline_sdk_task().get_logger()

    @classmethod
    def upload_artifact(
        cls,
        name: str,
        artifact_object: Any,
        metadata: dict[str, Any] | None = None,
        delete_after_upload: bool = False,
        auto_pickle: bool = True,
        preview: Any = None,
        wait_on_upload: bool = True,
        serialization_function: Callable[[Any], bytes] | None = None,
    ) -> bool:
        """Upload an artifact to the pipeline task (from a step or the pipeline logic);
        the upload is always waited for (a step process may end right after)."""
        task = reporting.pipeline_sdk_task()
        return bool(
            task.upload_artifact(
                name,
                artifact_object,
                metadata=metadata,
                delete_after_upload=delete_after_upload,
                auto_pickle=auto_pickle,
                preview=preview,
                wait_on_upload=True,
                serialization_function=serialization_function,
            )
        )

    @classmethod
    def upload_model(
        cls, model_name: str, model_local_path: str, upload_uri: str | None = None
    ) -> Any:
        """Upload a model file to the pipeline task (an artifact of type ``model``)."""
        return reporting.upload_model(model_name, model_local_path, upload_uri)


def _task_id(task: Any) -> str:
    return task if isinstance(task, str) else task.id
