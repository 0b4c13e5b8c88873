"""Step definitions: how a node's task is built, cached and retried.

- :class:`FunctionStep`: a function (decorator component or ``add_function_step``);
  its source is the task's inline code, its arguments the ``kwargs`` section.
- :class:`TaskStep`: a clone of an existing task (``add_step``) with overrides.

``prepare(run, node)`` resolves the step's inputs against the finished parents
(``${...}`` references, outputs of other steps), computes its cache key and
returns the :class:`~agent.core.models.Task` to create.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.core.models import Script, Task, TaskTypes
from agent.pipeline import cache as step_cache
from agent.pipeline.errors import PipelineDefinitionError
from agent.pipeline.refs import (
    Reference,
    artifact_ref,
    find_references,
    map_artifact_refs,
    substitute,
)

#: Queue that pipeline controllers (and pipelines used as steps) run on by default.
SERVICES_QUEUE = "services"


@dataclass
class RetryPolicy:
    """When and how soon to retry a failed step.

    Args:
        max_retries: retries after the first failure (ClearML's ``retry_on_failure=N``).
        callback: ``callback(pipeline, node, retries) -> bool`` decides instead.
        delay: seconds before the first retry.
        backoff: factor applied to the delay after each retry.
        max_delay: the delay never exceeds this.
    """

    max_retries: int = 0
    callback: Callable[..., bool] | None = None
    delay: float = 0.0
    backoff: float = 2.0
    max_delay: float = 300.0

    @classmethod
    def coerce(
        cls, value: Any, delay: float | None = None, backoff: float | None = None
    ) -> RetryPolicy | None:
        """A policy from ``retry_on_failure`` (int, callable, policy or None)."""
        if value is None or value is False:
            return None
        if isinstance(value, RetryPolicy):
            policy = dataclasses.replace(value)
        elif callable(value):
            policy = cls(callback=value)
        else:
            policy = cls(max_retries=int(value))
        if delay is not None:
            policy.delay = float(delay)
        if backoff is not None:
            policy.backoff = float(backoff)
        return policy

    def should_retry(self, pipeline: Any, node: Any, retries: int) -> bool:
        if self.callback is not None:
            return bool(self.callback(pipeline, node, retries))
        return retries < self.max_retries

    def delay_for(self, retries: int) -> float:
        return min(self.delay * (self.backoff**retries), self.max_delay)


@dataclass(frozen=True)
class StepOutput:
    """An output (return value / artifact) of another step of the same run."""

    step: str
    name: str


def _replace_outputs(value: Any, fn: Callable[[StepOutput], Any]) -> Any:
    if isinstance(value, StepOutput):
        return fn(value)
    if isinstance(value, dict):
        return {k: _replace_outputs(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_outputs(v, fn) for v in value]
    return value


@dataclass
class StepSpec:
    """What every step has: scheduling, caching, retries, monitors, callbacks."""

    name: str
    parents: list[str] = field(default_factory=list)
    execution_queue: str | None = None
    cache: bool = False
    continue_on_fail: bool = False
    retry: RetryPolicy | None = None
    time_limit: float | None = None
    task_type: str = TaskTypes.custom.value
    monitor_metrics: Any = None
    monitor_artifacts: Any = None
    monitor_models: Any = None
    pre_execute_callback: Callable[..., Any] | None = None
    post_execute_callback: Callable[..., Any] | None = None
    local_dir: str | None = None
    #: Where the step's artifacts go (its task's ``output_uri``; None: the default).
    output_uri: str | None = None

    @property
    def outputs(self) -> list[str]:
        return []

    def references(self) -> list[Reference]:
        return []

    @property
    def parameters(self) -> dict[str, Any]:
        return {}

    def resolved_parameters(self, run: Any, node: Any) -> dict[str, Any]:
        """The step's parameters with every ``${...}`` replaced by its value."""
        return dict(self.parameters)

    def referenced_steps(self) -> list[str]:
        names: list[str] = []
        for ref in self.references():
            if ref.step and ref.step not in names:
                names.append(ref.step)
        return names

    def _base_task(self, run: Any, node: Any) -> Task:
        tags = [f"pipe: {run.pipeline_id}"] if run.options.add_pipeline_tags else []
        runtime: dict[str, Any] = {"pipeline_step": node.name}
        if self.time_limit:
            runtime["time_limit"] = float(self.time_limit)
        return Task(
            name=node.name,
            project=run.options.step_project,
            type=str(self.task_type or TaskTypes.custom.value),
            parent=run.pipeline_id,
            tags=tags,
            runtime=runtime,
            output_uri=self.output_uri or run.options.output_uri,
        )


# -- resolving references -----------------------------------------------------------------
class Resolver:
    """Resolves ``${...}`` against a run: real values, or stand-ins for the cache key."""

    def __init__(self, run: Any, step: str, for_key: bool = False, in_kwargs: bool = False):
        self.run = run
        self.step = step
        self.for_key = for_key
        self.in_kwargs = in_kwargs

    def __call__(self, ref: Reference) -> Any:
        if ref.target == "pipeline":
            if ref.field == "id":
                return "pipeline" if self.for_key else self.run.pipeline_id
            if ref.key not in self.run.args:
                raise PipelineDefinitionError(
                    f"step '{self.step}': {ref.text!r} names no pipeline argument "
                    f"(arguments: {sorted(self.run.args)})"
                )
            return self.run.args[ref.key]
        node = self.run.dag.nodes.get(ref.target)
        if node is None:
            raise PipelineDefinitionError(f"step '{self.step}': {ref.text!r} names no step")
        if not node.task_id:
            raise PipelineDefinitionError(
                f"step '{self.step}': {ref.text!r} refers to step '{node.name}', which has no task"
            )
        if ref.field == "id":
            return f"step:{node.cache_key or node.executed}" if self.for_key else node.task_id
        if ref.field in ("artifact", "artifact_url", "return"):
            artifact = self.run.artifacts.get(node.task_id, ref.key)
            if self.for_key:
                return {"sha256": artifact.sha256}
            if self.in_kwargs and ref.field != "artifact_url":
                return artifact_ref(node.task_id, ref.key)
            return artifact.uri
        if ref.field == "parameter":
            return _parameter(self.run.backend.get_task(node.task_id), ref.key, ref.text)
        raise PipelineDefinitionError(f"step '{self.step}': cannot resolve {ref.text!r}")


def _parameter(task: Task, key: str, text: str) -> Any:
    section, sep, name = key.partition("/")
    if not sep:
        section, name = "General", key
    try:
        return task.hyperparams[section][name]
    except KeyError:
        raise PipelineDefinitionError(
            f"{text!r}: step task {task.id} has no parameter {section}/{name}"
        ) from None


def check_references(refs: list[Reference], step: str, known_steps: set[str], args: set[str]):
    for ref in refs:
        if ref.target == "pipeline":
            if ref.field == "arg" and ref.key not in args:
                raise PipelineDefinitionError(
                    f"step '{step}': ${{{ref.text}}} names no pipeline argument "
                    f"(add it with add_parameter; known: {sorted(args)})"
                )
        elif ref.target not in known_steps:
            raise PipelineDefinitionError(
                f"step '{step}': ${{{ref.text}}} names no step (known: {sorted(known_steps)})"
            )


# -- function steps -------------------------------------------------------------------------
@dataclass
class FunctionStep(StepSpec):
    """A step made from a function: inline code, ``kwargs``, return values as artifacts."""

    function: Callable[..., Any] | None = None
    code: str = ""
    return_values: list[str] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    packages: list[str] = field(default_factory=list)
    docker: str = ""
    docker_args: str = ""
    docker_bash_setup_script: str = ""
    script: Script = field(default_factory=Script)
    explicit_repo: bool = False
    #: ``${...}`` in kwargs are references (add_function_step); a decorator component's
    #: arguments are plain values.
    resolve_references: bool = True

    @property
    def outputs(self) -> list[str]:
        return list(self.return_values)

    @property
    def parameters(self) -> dict[str, Any]:
        return {f"kwargs/{k}": v for k, v in self.kwargs.items()}

    def references(self) -> list[Reference]:
        return find_references(self.kwargs) if self.resolve_references else []

    def resolved_parameters(self, run: Any, node: Any) -> dict[str, Any]:
        kwargs = self._resolved_kwargs(run, node, for_key=False)
        return {f"kwargs/{k}": v for k, v in kwargs.items()}

    def _resolved_kwargs(self, run: Any, node: Any, for_key: bool) -> dict[str, Any]:
        def output_ref(out: StepOutput) -> Any:
            parent = run.dag[out.step]
            if for_key:
                return {"sha256": run.artifacts.get(parent.task_id, out.name).sha256}
            return artifact_ref(parent.task_id, out.name)

        resolver = Resolver(run, node.name, for_key=for_key, in_kwargs=True)
        value = _replace_outputs(self.kwargs, output_ref)
        if self.resolve_references:
            value = substitute(value, resolver)
        for name, changed in (node.parameter_changes or {}).items():
            section, _, key = name.partition("/")
            if section == "kwargs" and key:
                value[key] = changed  # set by the pre_execute_callback
        if for_key:
            value = map_artifact_refs(
                value, lambda tid, name: {"sha256": run.artifacts.get(tid, name).sha256}
            )
        return value

    def requirements(self, run: Any, kwargs: Any) -> list[str]:
        """The step's packages, plus what loading its input artifacts needs (recorded on
        each artifact where it was made): a step that takes a DataFrame gets pandas even
        when its code never imports it. The step's own lines win."""
        from agent.execution.requirements import merge_requirements
        from agent.pipeline.values import input_requirements

        inputs: list[Any] = []
        map_artifact_refs(kwargs, lambda tid, name: inputs.append(run.artifacts.get(tid, name)))
        return merge_requirements(input_requirements(inputs), self.packages)

    def prepare(self, run: Any, node: Any) -> Task:
        task = self._base_task(run, node)
        kwargs = self._resolved_kwargs(run, node, for_key=False)
        requirements = self.requirements(run, kwargs)
        container = {
            "image": self.docker or "",
            "arguments": self.docker_args or "",
            "setup_script": self.docker_bash_setup_script or "",
        }
        code_identity: Any = self.code
        if self.explicit_repo:
            code_identity = {
                "code": self.code,
                "repository": self.script.repository,
                "commit": self.script.commit,
                "branch": self.script.branch if not self.script.commit else "",
                "diff": self.script.diff,
            }
        key = step_cache.cache_key(
            code_identity,
            self._resolved_kwargs(run, node, for_key=True),
            requirements,
            container,
        )
        node.cache_key = key
        task.script = dataclasses.replace(
            self.script,
            code=self.code,
            requirements=requirements,
            entry_point=f"_agent_step_{_safe(node.name)}.py",
        )
        task.hyperparams = {"kwargs": kwargs}
        task.container = container
        task.runtime.update({step_cache.CACHE_KEY: key, "return_values": list(self.return_values)})
        return task


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)


# -- steps from existing tasks ----------------------------------------------------------------
#: Runtime properties of a base task that a step's clone must not inherit.
_RUNTIME_NOT_CLONED = ("pipeline", step_cache.CACHE_KEY, step_cache.CACHED_FROM, "pipeline_step")


@dataclass
class TaskStep(StepSpec):
    """A step that clones an existing task and overrides its parameters."""

    base_task_id: str | None = None
    base_task_project: str | None = None
    base_task_name: str | None = None
    parameter_override: dict[str, Any] = field(default_factory=dict)
    configuration_overrides: dict[str, Any] = field(default_factory=dict)
    task_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.parameter_override)

    @property
    def outputs(self) -> list[str]:
        return []

    def resolved_parameters(self, run: Any, node: Any) -> dict[str, Any]:
        resolver = Resolver(run, node.name, for_key=False)
        return dict(substitute(self.parameter_override, resolver))

    def references(self) -> list[Reference]:
        return (
            find_references(self.parameter_override)
            + find_references(self.configuration_overrides)
            + find_references(self.task_overrides)
        )

    def resolve_base(self, backend: Any) -> Task:
        """The task this step clones (by id, else the newest by project and name).

        Raises:
            PipelineDefinitionError: no such task.
        """
        if self.base_task_id:
            try:
                return backend.get_task(self.base_task_id)
            except Exception:
                raise PipelineDefinitionError(
                    f"step '{self.name}': base task {self.base_task_id} does not exist"
                ) from None
        found = backend.query_tasks(
            project=self.base_task_project, name=self.base_task_name, limit=1
        )
        if not found:
            raise PipelineDefinitionError(
                f"step '{self.name}': no task named {self.base_task_name!r} in project "
                f"{self.base_task_project!r}; create it first or pass base_task_id"
            )
        self.base_task_id = found[0].id
        return backend.get_task(found[0].id)

    def _apply(self, run: Any, node: Any, base: Task, for_key: bool) -> Task:
        resolver = Resolver(run, node.name, for_key=for_key)
        task = copy.deepcopy(base)
        overrides = {**substitute(self.parameter_override, resolver), **node.parameter_changes}
        for key, value in overrides.items():
            section, sep, name = str(key).partition("/")
            if not sep:
                section, name = "General", key
            task.hyperparams.setdefault(section, {})[name] = value
        for key, value in substitute(self.configuration_overrides, resolver).items():
            task.configuration[key] = value if isinstance(value, str) else _json(value)
        for key, value in substitute(self.task_overrides, resolver).items():
            _set_field(task, key, value)
        return task

    def prepare(self, run: Any, node: Any) -> Task:
        base = self.resolve_base(run.backend)
        resolved = self._apply(run, node, base, for_key=False)
        keyed = self._apply(run, node, base, for_key=True)
        script = keyed.script
        code_identity = {
            "repository": script.repository,
            "commit": script.commit,
            "branch": script.branch if not script.commit else "",
            "diff": script.diff,
            "entry_point": script.entry_point,
            "working_dir": script.working_dir,
            "code": script.code,
            "binary": script.binary,
        }
        params = {"hyperparams": keyed.hyperparams, "configuration": keyed.configuration}
        key = step_cache.cache_key(code_identity, params, script.requirements, keyed.container)
        node.cache_key = key
        task = self._base_task(run, node)
        task.type = resolved.type
        task.comment = resolved.comment
        task.tags = list(resolved.tags) + task.tags
        task.script = resolved.script
        task.hyperparams = resolved.hyperparams
        task.configuration = resolved.configuration
        task.container = resolved.container
        task.output_uri = self.output_uri or resolved.output_uri or run.options.output_uri
        runtime = {k: v for k, v in base.runtime.items() if k not in _RUNTIME_NOT_CLONED}
        runtime = {k: v for k, v in runtime.items() if not str(k).startswith("_")}
        runtime.update(task.runtime)
        runtime.update({step_cache.CACHE_KEY: key, "cloned_from": base.id})
        task.runtime = runtime
        if self.execution_queue is None and base.type == TaskTypes.controller.value:
            node.queue = SERVICES_QUEUE  # a pipeline as a step runs where controllers run
        return task


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True)


def _set_field(task: Task, path: str, value: Any) -> None:
    """Set ``script.branch``, ``container.image``, ``name`` ... on a task definition."""
    head, _, rest = str(path).partition(".")
    allowed = {"name", "comment", "tags", "type", "script", "container", "configuration",
               "hyperparams", "output_uri", "runtime"}  # fmt: skip
    if head not in allowed:
        raise PipelineDefinitionError(
            f"task_overrides: cannot set {path!r}; use one of {sorted(allowed)} (dotted)"
        )
    if not rest:
        setattr(task, head, value)
        return
    target = getattr(task, head)
    parts = rest.split(".")
    for part in parts[:-1]:
        target = target[part] if isinstance(target, dict) else getattr(target, part)
    if isinstance(target, dict):
        target[parts[-1]] = value
    elif hasattr(target, parts[-1]):
        setattr(target, parts[-1], value)
    else:
        raise PipelineDefinitionError(f"task_overrides: {path!r} is no field of a task")
