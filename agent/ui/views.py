"""What the pages show, shaped from the store's records: pipelines grouped by name, a
pipeline's runs, a task's DAG as nodes and edges, its scalars as chart series.

Pure functions over :mod:`agent.core.models` records, so the routes stay thin and the
shapes are tested without HTTP.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.cli.dag_view import normalized_nodes
from agent.cli.render import format_duration, format_value
from agent.cli.task_view import pipeline_dag
from agent.core.models import Task, TaskStatus, TaskTypes

#: The hyperparameter section a pipeline's arguments live in (ClearML's name).
ARGS_SECTION = "Args"
#: The queue a new pipeline run goes to when its controller has no last queue.
DEFAULT_CONTROLLER_QUEUE = "services"
#: The queue offered for any other task that has none.
DEFAULT_QUEUE = "default"
#: Statuses a pipeline run counts as running / failed in the pipelines table.
RUNNING = frozenset({TaskStatus.queued.value, TaskStatus.in_progress.value})
FAILED = frozenset({TaskStatus.failed.value, TaskStatus.stopped.value})
#: Controllers the pipelines page reads at most (newest first).
PIPELINE_SCAN_LIMIT = 10000


@dataclass
class PipelineGroup:
    """One pipeline (a project and a name) and its runs, newest first."""

    project: str
    name: str
    runs: list[Task] = field(default_factory=list)

    @property
    def last_run(self) -> Task:
        return self.runs[0]

    def count(self, statuses: frozenset[str]) -> int:
        return sum(1 for run in self.runs if run.status in statuses)

    @property
    def running(self) -> int:
        return self.count(RUNNING)

    @property
    def completed(self) -> int:
        return self.count(frozenset({TaskStatus.completed.value}))

    @property
    def failed(self) -> int:
        return self.count(FAILED)


def pipeline_groups(controllers: Iterable[Task]) -> list[PipelineGroup]:
    """Controllers grouped by (project, name), the most recently run pipeline first."""
    groups: dict[tuple[str, str], PipelineGroup] = {}
    for task in sorted(controllers, key=lambda t: t.created, reverse=True):
        key = (task.project, task.name)
        groups.setdefault(key, PipelineGroup(task.project, task.name)).runs.append(task)
    return list(groups.values())


def query_controllers(backend: Any, project: str | None = None, name: str | None = None):
    """Pipeline runs (tasks of type ``controller``), newest first."""
    return backend.query_tasks(
        project=project, name=name, type=TaskTypes.controller.value, limit=PIPELINE_SCAN_LIMIT
    )


def visible_args(task: Task) -> dict[str, Any]:
    """The task's ``Args`` without the names that start with ``_`` (internal ones)."""
    args = task.hyperparams.get(ARGS_SECTION) or {}
    return {name: value for name, value in args.items() if not str(name).startswith("_")}


def arg_columns(runs: Sequence[Task]) -> list[str]:
    """The visible Args names across ``runs``, in first-seen order."""
    names: dict[str, None] = {}
    for run in runs:
        names.update(dict.fromkeys(visible_args(run)))
    return list(names)


def text_value(value: Any) -> str:
    """A hyperparameter value as a form field shows it (strings as is, the rest JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


def parse_value(text: str) -> Any:
    """A form field back to a value: JSON when it parses (``0.1``, ``true``), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def duration(task: Task, now: float | None = None) -> str:
    """How long the task ran (or has been running)."""
    if not task.started:
        return ""
    end = task.completed or (time.time() if now is None else now)
    return format_duration(end - task.started)


def matches_text(task: Task, text: str) -> bool:
    """Whether ``text`` (lowercase) is in the task's id, name, project, tags or comment."""
    haystack = " ".join((task.id, task.name, task.project, " ".join(task.tags), task.comment))
    return text in haystack.lower()


def default_queue(task: Task) -> str:
    """Where a new run of this task goes: the queue it last ran from, else ``services``
    for a pipeline controller and ``default`` for any other task."""
    if task.queue:
        return task.queue
    is_controller = task.type == TaskTypes.controller.value
    return DEFAULT_CONTROLLER_QUEUE if is_controller else DEFAULT_QUEUE


def sorted_hyperparams(task: Task) -> list[tuple[str, dict[str, Any]]]:
    """Hyperparameter sections, ``Args`` first, then by name."""
    sections = sorted(task.hyperparams.items(), key=lambda kv: (kv[0] != ARGS_SECTION, kv[0]))
    return [(name, values or {}) for name, values in sections]


# -- the DAG ------------------------------------------------------------------------------
def dag_graph(task: Task, now: float | None = None) -> dict[str, Any] | None:
    """``{"nodes": [...], "edges": [[parent, child], ...]}`` for the browser, or None when
    the task reported no DAG. Each node: name, status, task_id, cached, duration, queue."""
    dag = pipeline_dag(task)
    if dag is None:
        return None
    nodes = normalized_nodes(dag)
    names = {node["name"] for node in nodes}
    edges = [
        [parent, node["name"]] for node in nodes for parent in node["parents"] if parent in names
    ]
    return {"nodes": [_node_view(node, now) for node in nodes], "edges": edges}


def has_dag(task: Task) -> bool:
    """Whether the task's page shows a DAG: it reported one, or it is a pipeline run
    (a controller) whose steps are still to come; its page draws them as they appear."""
    return task.type == "controller" or pipeline_dag(task) is not None


def dag_status(task: Task, now: float | None = None) -> dict[str, Any]:
    """The cheap live part: the run's status and each step's status, duration, task id."""
    graph = dag_graph(task, now) or {"nodes": []}
    return {
        "status": task.status,
        "steps": {
            node["name"]: {k: node[k] for k in ("status", "duration", "cached", "task_id")}
            for node in graph["nodes"]
        },
    }


def _node_view(node: dict[str, Any], now: float | None) -> dict[str, Any]:
    started, completed = node.get("started"), node.get("completed")
    took = None
    if _is_number(started):
        end = completed if _is_number(completed) else (time.time() if now is None else now)
        took = end - started
    return {
        "name": node["name"],
        "status": str(node.get("status") or "pending"),
        "task_id": node.get("task_id"),
        "cached": bool(node.get("cached")),
        "duration": format_duration(took),
        "queue": node.get("queue") or "",
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- scalars ------------------------------------------------------------------------------
def scalar_charts(scalars: dict[str, dict[str, list[tuple[int, float]]]]) -> list[dict[str, Any]]:
    """One chart per title for uPlot: ``{"title", "series": [names], "data": [xs, ys...]}``.

    Series are aligned on the union of their iterations; a missing point and a NaN or
    infinite value are ``None``, which uPlot draws as a gap.
    """
    charts = []
    for title, series in sorted(scalars.items()):
        names = sorted(series)
        xs = sorted({int(it) for points in series.values() for it, _ in points})
        rows = []
        for name in names:
            by_it = {int(it): _finite(value) for it, value in series[name]}
            rows.append([by_it.get(x) for x in xs])
        charts.append({"title": title, "series": names, "data": [xs, *rows]})
    return charts


def _finite(value: float) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def short(value: Any, limit: int = 60) -> str:
    """A value on one line, cut at ``limit`` characters."""
    return format_value(value, limit)
