"""What ``agent show`` adds for models and datasets: a task's input and output models,
a dataset version's files and changes, and one model in full."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agent.cli.render import format_size, format_time, short_id
from agent.core.models import Model, Task
from agent.store.base import Backend

#: Files of a dataset version listed by ``agent show`` (``--json`` has them all).
MAX_FILES_SHOWN = 20


def task_models(backend: Backend, task: Task) -> dict[str, list[dict[str, Any]]]:
    """{"input": [...], "output": [...]}: each ``{"name": link name, **model record}``."""
    from agent.sdk.model import model_links

    out: dict[str, list[dict[str, Any]]] = {}
    for kind in ("input", "output"):
        links = model_links(task.runtime, kind)
        found = backend.query_models(ids=list(set(links.values())), include_archived=True)
        records = {m.id: m for m in found} if links else {}
        out[kind] = [
            {**records[mid].to_dict(), "link": name}
            for name, mid in links.items()
            if mid in records
        ]
    return out


def models_section(models: dict[str, list[dict[str, Any]]]) -> Table | None:
    if not any(models.values()):
        return None
    table = Table(title="Models", title_justify="left")
    for header in ("kind", "name", "id", "framework", "size", "uri"):
        table.add_column(header, overflow="fold" if header == "uri" else "ellipsis")
    for kind, items in models.items():
        for item in items:
            table.add_row(
                kind, item["link"], short_id(item["id"]), item["framework"],
                format_size(item["size"]), item["uri"] or "(no weights)",
            )  # fmt: skip
    return table


def dataset_details(backend: Backend, task: Task) -> dict[str, Any] | None:
    """A dataset version's summary and files (None for a task that is no dataset)."""
    from agent.datasets.dataset import INFO_KEY, read_state, summary

    if not isinstance(task.runtime.get(INFO_KEY), dict):
        return None
    details = summary(task)
    details["files_list"] = []
    if details["final"]:
        entries = read_state(backend, task)
        details["files_list"] = [
            {"path": e.path, "sha256": e.sha256, "size": e.size} for e in entries.values()
        ]
    return details


def dataset_section(details: dict[str, Any]) -> RenderableType:
    head = Text.assemble(
        ("Dataset ", "bold"), f"{details['name']} v{details['version']}: ",
        f"{details['files']} files, {format_size(details['size'])}; ",
        f"+{details['added']} added, ~{details['modified']} modified, "
        f"-{details['removed']} removed from its parents",
        f" ({', '.join(short_id(p) for p in details['parents'])})" if details["parents"] else "",
        "" if details["final"] else "  (not final)",
    )  # fmt: skip
    files = details["files_list"]
    if not files:
        return head
    table = Table(show_header=True, box=None, padding=(0, 2))
    for header in ("path", "size", "sha256"):
        table.add_column(header)
    for entry in files[:MAX_FILES_SHOWN]:
        table.add_row(entry["path"], format_size(entry["size"]), entry["sha256"][:12])
    parts: list[RenderableType] = [head, table]
    if len(files) > MAX_FILES_SHOWN:
        parts.append(Text(f"... and {len(files) - MAX_FILES_SHOWN} more (--json lists all)"))
    return Group(*parts)


def render_model(model: Model) -> RenderableType:
    """One model in full."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    rows = [
        ("project", model.project), ("framework", model.framework),
        ("task", model.task or "(imported)"), ("uri", model.uri or "(no weights)"),
        ("file", model.filename + (" (package)" if model.package else "")),
        ("size", format_size(model.size)), ("sha256", model.sha256),
        ("iteration", model.iteration), ("tags", ", ".join(model.tags)),
        ("labels", model.labels or None), ("published", "yes" if model.published else None),
        ("created", format_time(model.created)), ("updated", format_time(model.last_update)),
        ("comment", model.comment),
    ]  # fmt: skip
    for key, value in rows:
        if value not in (None, "", {}):
            grid.add_row(key, str(value))
    parts: list[RenderableType] = [grid]
    if model.design:
        parts += [Text(""), Text("Design", style="bold"), Text(model.design)]
    return Panel(Group(*parts), title=Text(model.name or "(unnamed model)", "bold"),
                 title_align="left", subtitle=model.id)  # fmt: skip


def find_model(backend: Backend, ref: str) -> Model | None:
    """The model whose id is ``ref`` or starts with it (None when none or several do)."""
    from agent.core.errors import InvalidInput, NotFound

    try:
        return backend.get_model(ref)
    except (NotFound, InvalidInput):
        pass
    if len(ref) < 4:
        return None
    matches = [m for m in backend.query_models(include_archived=True) if m.id.startswith(ref)]
    return matches[0] if len(matches) == 1 else None
