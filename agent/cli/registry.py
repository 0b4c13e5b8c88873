"""``agent models`` and ``agent datasets``: the model registry and dataset versions."""

from __future__ import annotations

from typing import Any

import click

from agent.cli.lookup import current_backend
from agent.cli.render import echo_json, format_age, format_size, make_console, short_id


@click.command("models")
@click.option("--project", "-p", help="Only models of this project.")
@click.option("--name", "-n", help="Only models with exactly this name.")
@click.option("--task", "task_ref", help="Only models made by this task (id or prefix).")
@click.option("--published", is_flag=True, help="Only published models.")
@click.option("--archived", is_flag=True, help="Include archived models.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print the model records as JSON.")
def models_command(
    project: str | None,
    name: str | None,
    task_ref: str | None,
    published: bool,
    archived: bool,
    limit: int,
    as_json: bool,
) -> None:
    """List registered models, the last updated first.

    A model is what OutputModel, PipelineController.upload_model or a framework's
    save (joblib.dump, torch.save, ...) in a task registered. `agent show ID` shows
    one in full.

    \b
    Examples:
      agent models
      agent models --project iris --json
    """
    from agent.cli.lookup import resolve_task_id

    backend = current_backend()
    task_id = resolve_task_id(backend, task_ref) if task_ref else None
    found = backend.query_models(
        project=project, name=name, task=task_id, only_published=published,
        include_archived=archived, limit=limit,
    )  # fmt: skip
    if as_json:
        echo_json([m.to_dict() for m in found])
        return
    if not found:
        click.echo("no models match", err=True)
        return
    from rich.table import Table

    table = Table()
    for header in ("id", "name", "project", "framework", "size", "task", "updated", "tags"):
        table.add_column(header, no_wrap=header == "id")
    for model in found:
        name_text = model.name + (" (published)" if model.published else "")
        table.add_row(
            short_id(model.id), name_text, model.project, model.framework,
            format_size(model.size) if model.uri else "no weights", short_id(model.task),
            format_age(model.last_update), ", ".join(model.tags),
        )  # fmt: skip
    make_console().print(table)


@click.command("datasets")
@click.option("--project", "-p", help="Only datasets of this project (and its sub-projects).")
@click.option("--name", "-n", help="Only versions of the dataset with this name.")
@click.option("--all", "show_all", is_flag=True, help="Include versions not finalized yet.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
def datasets_command(
    project: str | None, name: str | None, show_all: bool, limit: int, as_json: bool
) -> None:
    """List dataset versions, newest first.

    Each version shows its files and size, and what changed from its parents
    (+added ~modified -removed). `agent show ID` lists one version's files.

    \b
    Examples:
      agent datasets
      agent datasets --project data --name raw --json
    """
    from agent.datasets.dataset import dataset_records, summary

    rows: list[dict[str, Any]] = []
    for record in dataset_records(current_backend(), project):
        item = summary(record)
        if name is not None and item["name"] != name:
            continue
        if not show_all and not item["final"]:
            continue
        rows.append(item)
        if len(rows) >= limit:
            break
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(
            "no datasets match" + ("" if show_all else " (--all shows unfinished ones)"), err=True
        )
        return
    from rich.table import Table

    table = Table()
    for header in ("id", "name", "version", "project", "files", "size", "changes", "created"):
        table.add_column(header, no_wrap=header in ("id", "version"))
    for item in rows:
        changes = f"+{item['added']} ~{item['modified']} -{item['removed']}"
        table.add_row(
            short_id(item["id"]), item["name"], item["version"] + ("" if item["final"] else " (open)"),
            item["project"], str(item["files"]), format_size(item["size"]), changes,
            format_age(item["created"]),
        )  # fmt: skip
    make_console().print(table)
