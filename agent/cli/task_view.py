"""The readable form of ``agent show``: one task as a rich panel."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agent.cli.dag_view import render_dag
from agent.cli.render import (
    format_age,
    format_duration,
    format_size,
    format_time,
    format_value,
    status_text,
)
from agent.core.models import Task

#: The runtime property a pipeline controller reports its DAG in.
PIPELINE_KEY = "pipeline"


def render_task(
    task: Task, now: float | None = None, extra: Sequence[RenderableType] = ()
) -> RenderableType:
    """Fields, hyperparameters, configuration names, artifacts, ``extra`` sections (models,
    a dataset's files), runtime and the DAG."""
    parts: list[RenderableType] = [_fields(task, now)]
    if task.status_message:
        style = "red" if task.status == "failed" else "yellow"
        parts.append(Text.assemble(("status message: ", "bold"), (task.status_message, style)))
    sections = (_hyperparams(task), _configuration(task), _artifacts(task), *extra, _runtime(task))
    for section in sections:
        if section is not None:
            parts += [Text(""), section]
    dag = pipeline_dag(task)
    if dag is not None:
        parts += [Text(""), render_dag(dag)]
    title = Text.assemble((task.name or "(unnamed)", "bold"), "  ", status_text(task.status))
    return Panel(Group(*parts), title=title, title_align="left", subtitle=task.id)


def pipeline_dag(task: Task) -> dict[str, Any] | None:
    """The DAG a controller reported in ``runtime["pipeline"]``, if any."""
    dag = task.runtime.get(PIPELINE_KEY)
    if isinstance(dag, str):
        try:
            dag = json.loads(dag)
        except ValueError:
            return None
    return dag if isinstance(dag, dict) and dag.get("nodes") is not None else None


def _fields(task: Task, now: float | None) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    took = task.completed - task.started if task.started and task.completed else None
    rows: list[tuple[str, Any]] = [
        ("id", task.id),
        ("project", task.project),
        ("type", task.type),
        ("status", status_text(task.status)),
        ("queue", task.queue),
        ("worker", task.worker_label),
        ("parent", task.parent),
        ("tags", ", ".join(task.tags)),
        ("comment", task.comment),
        ("created", format_time(task.created)),
        ("started", format_time(task.started) if task.started else None),
        ("completed", format_time(task.completed) if task.completed else None),
        ("duration", format_duration(took)),
        ("updated", f"{format_time(task.last_update)} ({format_age(task.last_update, now)})"),
        ("output uri", task.output_uri),
        *_script_rows(task),
        ("image", task.container.get("image")),
        ("docker args", task.container.get("arguments")),
    ]
    for label, value in rows:
        if value:
            grid.add_row(label, value if isinstance(value, Text) else str(value))
    return grid


def _script_rows(task: Task) -> list[tuple[str, Any]]:
    script = task.script
    diff_lines = len(script.diff.splitlines())
    code_lines = len(script.code.splitlines())
    return [
        ("repository", script.repository),
        ("branch", script.branch),
        ("commit", script.commit[:12]),
        ("entry point", script.entry_point),
        ("working dir", script.working_dir if script.working_dir not in ("", ".") else None),
        ("diff", f"{diff_lines} lines" if diff_lines else None),
        ("inline code", f"{code_lines} lines" if code_lines else None),
        ("requirements", ", ".join(script.requirements)),
    ]


def _hyperparams(task: Task) -> Table | None:
    if not any(task.hyperparams.values()):
        return None
    table = Table(title="Hyperparameters", title_justify="left")
    for header in ("section", "name", "value"):
        table.add_column(header)
    for section, values in sorted(task.hyperparams.items()):
        for name, value in sorted((values or {}).items()):
            table.add_row(section, name, format_value(value))
    return table


def _configuration(task: Task) -> Text | None:
    if not task.configuration:
        return None
    names = ", ".join(
        f"{name} ({len(str(text).splitlines())} lines)"
        for name, text in sorted(task.configuration.items())
    )
    return Text.assemble(("Configuration: ", "bold"), names)


def scalars_section(summary: dict[str, dict[str, dict[str, float]]]) -> Table | None:
    """The last, smallest and largest value of each reported series (NaN shown as NaN)."""
    if not summary:
        return None
    table = Table(title="Scalars", title_justify="left")
    for header in ("title", "series", "last", "min", "max"):
        table.add_column(header, justify="right" if header in ("last", "min", "max") else "left")
    for title, series in summary.items():
        for name, values in series.items():
            table.add_row(title, name, *(_number(values[k]) for k in ("last", "min", "max")))
    return table


def _number(value: float) -> str:
    text = f"{value:.6g}"
    return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(text, text)


def _artifacts(task: Task) -> Table | None:
    if not task.artifacts:
        return None
    table = Table(title="Artifacts", title_justify="left")
    for header in ("name", "type", "size", "sha256", "uri"):
        table.add_column(header, overflow="fold" if header == "uri" else "ellipsis")
    for name, artifact in sorted(task.artifacts.items()):
        table.add_row(
            name,
            artifact.type,
            format_size(artifact.size),
            artifact.sha256[:12],
            artifact.uri,
        )
    return table


def _runtime(task: Task) -> Table | None:
    # the DAG, model links and a dataset's summary have sections of their own
    values = {
        k: v
        for k, v in task.runtime.items()
        if k not in (PIPELINE_KEY, "dataset") and not k.startswith("models/")
    }
    if not values:
        return None
    table = Table(title="Runtime", title_justify="left")
    table.add_column("property")
    table.add_column("value")
    for key, value in sorted(values.items()):
        table.add_row(key, format_value(value))
    return table
