"""The pipeline graph: nodes with their state, edges, validation and the DAG report.

A :class:`Node` is one step of one pipeline run. Its ``spec`` says how to build and
launch the step's task (see :mod:`agent.pipeline.steps`); the rest is run state that
the engine changes and :meth:`Dag.report` publishes on the pipeline task as
``runtime["pipeline"]`` = ``{"nodes": [...], "edges": [[parent, child], ...]}``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from agent.pipeline.errors import PipelineDefinitionError


class NodeState(str, Enum):
    """Where a step is in its run; the finished ones match TaskStatus names."""

    pending = "pending"  # waiting for its parents
    queued = "queued"  # its task exists and waits for a worker
    in_progress = "in_progress"
    completed = "completed"
    cached = "cached"
    failed = "failed"
    skipped = "skipped"
    stopped = "stopped"

    def __str__(self) -> str:
        return self.value

    @property
    def is_done(self) -> bool:
        return self in DONE_STATES

    @property
    def is_success(self) -> bool:
        return self in (NodeState.completed, NodeState.cached)


DONE_STATES = frozenset(
    {NodeState.completed, NodeState.cached, NodeState.failed, NodeState.skipped, NodeState.stopped}
)


class StepJob:
    """``node.job``: the step's task once it exists (ClearML's ``ClearmlJob``)."""

    def __init__(self, node: Node):
        self._node = node
        self._task: Any = None

    def __repr__(self) -> str:
        return f"<StepJob {self._node.name} task={self._node.task_id} {self.status()}>"

    def task_id(self) -> str | None:
        return self._node.task_id

    @property
    def task(self) -> Any:
        """The step's :class:`~agent.sdk.task.Task` (read on first use)."""
        if self._task is None or self._task.id != self._node.task_id:
            from agent.sdk.task import Task

            self._task = Task.get_task(self._node.task_id)
        return self._task

    def status(self) -> str:
        return self._node.state.value

    def is_running(self) -> bool:
        return self._node.state in (NodeState.queued, NodeState.in_progress)

    def is_pending(self) -> bool:
        return self._node.state in (NodeState.pending, NodeState.queued)

    def is_completed(self) -> bool:
        return self._node.state.is_success

    def is_failed(self) -> bool:
        return self._node.state is NodeState.failed

    def is_aborted(self) -> bool:
        return self._node.state is NodeState.stopped

    is_stopped = is_aborted

    def is_cached_task(self) -> bool:
        return self._node.cached


@dataclass(eq=False)
class Node:
    """One step of a pipeline run: its definition (``spec``) and its run state.

    The read-only attributes follow ClearML's ``PipelineController.Node``: ``name``,
    ``base_task_id``, ``queue``, ``parents``, ``timeout``, ``parameters``,
    ``configurations``, ``task_overrides``, ``executed`` (the id of the task that produced
    the step's outputs: the reused one for a cached step), ``job`` (the step's task once
    created), ``job_type``, ``job_started``, ``job_ended``, ``skip_job``,
    ``cache_executed_step``, ``return_artifacts``, ``monitor_metrics``,
    ``monitor_artifacts``, ``monitor_models``, ``output_uri``.
    """

    name: str
    spec: Any
    parents: list[str] = field(default_factory=list)
    queue: str | None = None
    task_id: str | None = None
    state: NodeState = NodeState.pending
    started: float | None = None
    completed: float | None = None
    cached: bool = False
    cached_from: str | None = None
    cache_key: str | None = None
    status_message: str = ""
    retries: int = 0
    #: Parameters a ``pre_execute_callback`` changed ({"Section/name": value}).
    parameter_changes: dict[str, Any] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def status(self) -> str:
        return self.state.value

    @property
    def executed(self) -> str | None:
        return self.cached_from or self.task_id

    @property
    def job(self) -> StepJob | None:
        if not self.task_id:
            return None
        job = self.__dict__.get("_job")
        if job is None:
            job = self.__dict__["_job"] = StepJob(self)
        return job

    @property
    def base_task_id(self) -> str | None:
        return getattr(self.spec, "base_task_id", None)

    @property
    def timeout(self) -> float | None:
        return getattr(self.spec, "time_limit", None)

    @property
    def configurations(self) -> dict[str, Any]:
        return dict(getattr(self.spec, "configuration_overrides", None) or {})

    @property
    def task_overrides(self) -> dict[str, Any]:
        return dict(getattr(self.spec, "task_overrides", None) or {})

    @property
    def job_type(self) -> str:
        return str(getattr(self.spec, "task_type", "") or "")

    @property
    def job_started(self) -> float | None:
        return self.started

    @property
    def job_ended(self) -> float | None:
        return self.completed

    @property
    def skip_job(self) -> bool:
        return self.state is NodeState.skipped

    @property
    def cache_executed_step(self) -> bool:
        return bool(getattr(self.spec, "cache", False))

    @property
    def return_artifacts(self) -> list[str]:
        return list(getattr(self.spec, "outputs", None) or [])

    @property
    def monitor_metrics(self) -> Any:
        return getattr(self.spec, "monitor_metrics", None)

    @property
    def monitor_artifacts(self) -> Any:
        return getattr(self.spec, "monitor_artifacts", None)

    @property
    def monitor_models(self) -> Any:
        return getattr(self.spec, "monitor_models", None)

    @property
    def output_uri(self) -> str | None:
        return getattr(self.spec, "output_uri", None)

    @property
    def parameters(self) -> dict[str, Any]:
        """The step's parameter overrides (``Section/name`` -> value), as ClearML shows them."""
        return dict(getattr(self.spec, "parameters", None) or {})

    def to_report(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task_id": self.task_id,
            "status": self.state.value,
            "parents": list(self.parents),
            "started": self.started,
            "completed": self.completed,
            "cached": self.cached,
            "queue": self.queue,
        }


class Dag:
    """Nodes by name, in the order they were added."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def __iter__(self):
        return iter(list(self.nodes.values()))

    def __len__(self) -> int:
        return len(self.nodes)

    def add(self, node: Node) -> Node:
        if node.name in self.nodes:
            raise PipelineDefinitionError(
                f"pipeline step '{node.name}' is defined twice: give each step its own name"
            )
        self.nodes[node.name] = node
        return node

    def unique_name(self, base: str) -> str:
        """``base``, or ``base_1``, ``base_2``... when taken (a component called again)."""
        if base not in self.nodes:
            return base
        index = 1
        while f"{base}_{index}" in self.nodes:
            index += 1
        return f"{base}_{index}"

    def children(self, name: str) -> list[Node]:
        return [node for node in self.nodes.values() if name in node.parents]

    def descendants(self, name: str) -> list[Node]:
        """Every node reachable from ``name`` (children, their children, ...)."""
        seen: dict[str, Node] = {}
        todo = [name]
        while todo:
            for child in self.children(todo.pop()):
                if child.name not in seen:
                    seen[child.name] = child
                    todo.append(child.name)
        return list(seen.values())

    def validate(self) -> None:
        """Refuse unknown parents and cycles, naming them.

        Raises:
            PipelineDefinitionError: a step names a parent that is no step, or the
                steps' parents form a cycle.
        """
        for node in self.nodes.values():
            unknown = [p for p in node.parents if p not in self.nodes]
            if unknown:
                raise PipelineDefinitionError(
                    f"pipeline step '{node.name}' has unknown parent(s) {unknown}; "
                    f"known steps: {sorted(self.nodes)}"
                )
            if node.name in node.parents:
                raise PipelineDefinitionError(f"pipeline step '{node.name}' is its own parent")
        cycle = self._find_cycle()
        if cycle:
            raise PipelineDefinitionError(
                "pipeline steps form a cycle: " + " -> ".join(cycle) + "; remove one of these edges"
            )

    def _find_cycle(self) -> list[str] | None:
        white, grey, black = 0, 1, 2
        color = dict.fromkeys(self.nodes, white)
        path: list[str] = []

        def visit(name: str) -> list[str] | None:
            color[name] = grey
            path.append(name)
            for parent in self.nodes[name].parents:
                if color.get(parent) == grey:
                    start = path.index(parent)
                    return list(reversed(path[start:] + [parent]))
                if color.get(parent) == white:
                    found = visit(parent)
                    if found:
                        return found
            path.pop()
            color[name] = black
            return None

        for name in self.nodes:
            if color[name] == white:
                found = visit(name)
                if found:
                    return found
        return None

    def topological(self) -> list[Node]:
        """Nodes parents-first (stable: ties keep the order of addition)."""
        order: list[Node] = []
        placed: set[str] = set()
        remaining = list(self.nodes.values())
        while remaining:
            ready = [n for n in remaining if all(p in placed for p in n.parents)]
            if not ready:
                self.validate()  # raises on the cycle
                break
            for node in ready:
                order.append(node)
                placed.add(node.name)
            remaining = [n for n in remaining if n.name not in placed]
        return order

    def report(self) -> dict[str, Any]:
        """``{"nodes": [...], "edges": [[parent, child], ...]}`` for ``runtime["pipeline"]``."""
        nodes = list(self.nodes.values())
        return {
            "nodes": [node.to_report() for node in nodes],
            "edges": [[parent, node.name] for node in nodes for parent in node.parents],
        }
