"""Draw a pipeline's DAG, as reported in a controller task's ``runtime["pipeline"]``.

The DAG is ``{"nodes": [{"name", "task_id", "status", "parents", "started",
"completed", "cached", "queue"}, ...]}`` (optionally ``"edges": [[parent, child], ...]``).
It is drawn in layers: stage 1 holds the steps without parents, stage *n* the steps
whose longest chain of parents has *n - 1* links; each row names the steps it waits for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from agent.cli.render import STATUS_STYLES, format_duration, short_id

#: Order of the statuses in the summary line: done, in flight, waiting, then trouble.
_SUMMARY_ORDER = {
    status: rank
    for rank, status in enumerate(
        ["completed", "published", "cached", "in_progress", "running", "queued", "created",
         "pending", "failed", "stopped", "skipped", "archived"]
    )
}  # fmt: skip


def render_dag(dag: Mapping[str, Any]) -> RenderableType:
    """A rich table of the DAG's steps, layer by layer, coloured by status.

    Tolerates partial reports: unknown parents are listed but not followed, steps
    caught in a cycle go to a last stage marked ``cycle``, missing fields show blank.
    """
    nodes = normalized_nodes(dag)
    if not nodes:
        return Text("pipeline: no steps reported yet", style="dim")
    table = Table(title="Pipeline", caption=_summary(nodes), title_justify="left", expand=False)
    for header in ("stage", "step", "status", "task", "queue", "time", "after"):
        table.add_column(header, no_wrap=header != "after")
    for number, (label, members) in enumerate(_stages(nodes)):
        if number:
            table.add_section()
        for row, node in enumerate(members):
            table.add_row(label if row == 0 else "", *_cells(node))
    return table


def normalized_nodes(dag: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Normalized nodes: a name each, parents as a list, edges folded into parents."""
    if not isinstance(dag, Mapping):
        return []
    raw = dag.get("nodes")
    if isinstance(raw, Mapping):  # {"name": {...}} is also accepted
        raw = [{"name": name, **(node or {})} for name, node in raw.items()]
    nodes: list[dict[str, Any]] = []
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        return []
    for index, node in enumerate(raw):
        if not isinstance(node, Mapping):
            continue
        parents = node.get("parents") or []
        parents = [parents] if isinstance(parents, str) else [str(p) for p in parents]
        nodes.append(
            {**node, "name": str(node.get("name") or f"step-{index + 1}"), "parents": parents}
        )
    by_name = {node["name"]: node for node in nodes}
    for edge in dag.get("edges") or []:
        if isinstance(edge, (list, tuple)) and len(edge) == 2 and str(edge[1]) in by_name:
            parents = by_name[str(edge[1])]["parents"]
            if str(edge[0]) not in parents:
                parents.append(str(edge[0]))
    return nodes


def _stages(nodes: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(label, nodes) per layer, by longest path from the roots; input order kept."""
    names = {node["name"] for node in nodes}
    depth: dict[str, int] = {}
    pending = list(nodes)
    while pending:
        ready = [
            node
            for node in pending
            if all(p in depth or p not in names or p == node["name"] for p in node["parents"])
        ]
        if not ready:
            break
        for node in ready:
            known = [depth[p] for p in node["parents"] if p in depth]
            depth[node["name"]] = 1 + max(known, default=-1)
        pending = [node for node in pending if node["name"] not in depth]
    stages = [
        (str(level + 1), [node for node in nodes if depth.get(node["name"]) == level])
        for level in range(max(depth.values(), default=-1) + 1)
    ]
    if pending:
        stages.append(("cycle", pending))
    return stages


def _status(node: Mapping[str, Any]) -> str:
    return str(node.get("status") or "pending")


def _cells(node: Mapping[str, Any]) -> list[RenderableType]:
    status = _status(node)
    style = STATUS_STYLES.get(status, "")
    label = Text(status, style=style)
    if node.get("cached") and status != "cached":
        label.append(" (cached)", style="cyan")
    started, completed = node.get("started"), node.get("completed")
    took = completed - started if _is_number(started) and _is_number(completed) else None
    return [
        Text.assemble(("● ", style), (node["name"], "bold")),
        label,
        short_id(node.get("task_id")),
        str(node.get("queue") or ""),
        format_duration(took),
        ", ".join(node["parents"]),
    ]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _summary(nodes: list[dict[str, Any]]) -> str:
    counts = Counter("cached" if node.get("cached") else _status(node) for node in nodes)
    order = sorted(counts, key=lambda s: (_SUMMARY_ORDER.get(s, len(_SUMMARY_ORDER)), s))
    parts = ", ".join(f"{counts[status]} {status}" for status in order)
    return f"{len(nodes)} step{'s' if len(nodes) != 1 else ''}: {parts}"
