"""``agent tasks`` (a table of tasks) and ``agent show`` (one task)."""

from __future__ import annotations

import click

from agent.cli.lookup import current_backend, find_task
from agent.cli.render import echo_json, format_age, make_console, short_id, status_text
from agent.core.models import TaskStatus

_STATUSES = [status.value for status in TaskStatus]


def _split_statuses(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> list[str]:
    """``--status a --status b`` and ``--status a,b`` alike, each checked."""
    statuses = [part.strip() for value in values for part in value.split(",") if part.strip()]
    for status in statuses:
        if status not in _STATUSES:
            raise click.BadParameter(f"'{status}' is not one of {', '.join(_STATUSES)}")
    return statuses


@click.command("tasks")
@click.option("--project", "-p", help="Only tasks of this project.")
@click.option(
    "--status",
    "-s",
    "statuses",
    multiple=True,
    callback=_split_statuses,
    help=f"Only tasks in this status; repeat or comma-separate. One of: {', '.join(_STATUSES)}.",
)
@click.option("--tag", "-t", help="Only tasks with this tag.")
@click.option("--name", "-n", help="Only tasks with exactly this name.")
@click.option("--type", "task_type", help="Only tasks of this type (training, controller, ...).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print the tasks as JSON.")
def tasks_command(
    project: str | None,
    statuses: list[str],
    tag: str | None,
    name: str | None,
    task_type: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List tasks, newest first.

    IDs are shown by their first 8 characters; every command accepts such a
    prefix (at least 4 characters) in place of the full id.

    \b
    Examples:
      agent tasks
      agent tasks --project iris --status failed,stopped
      agent tasks --status in_progress --json
    """
    found = current_backend().query_tasks(
        project=project,
        name=name,
        status=statuses or None,
        tag=tag,
        type=task_type,
        limit=limit,
    )
    if as_json:
        echo_json([task.to_dict() for task in found])
        return
    if not found:
        click.echo("no tasks match", err=True)
        return
    from rich.table import Table

    table = Table()
    for header in ("id", "name", "project", "type", "status", "queue/worker", "updated"):
        table.add_column(header, no_wrap=header in ("id", "status"))
    for task in found:
        where = task.shown_worker if task.status == "in_progress" else task.queue
        table.add_row(
            short_id(task.id),
            task.name,
            task.project,
            task.type,
            status_text(task.status),
            where or task.shown_worker or "",
            format_age(task.last_update),
        )
    make_console().print(table)


@click.command("show")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print the full record as JSON.")
def show_command(task_id: str, as_json: bool) -> None:
    """Show one task (or model) in full; for a pipeline, its DAG too.

    The readable form shows fields, hyperparameters, configuration names,
    artifacts, the last/min/max of each scalar series, input and output models, a dataset version's files and what changed
    from its parents, and runtime properties; --json prints the whole record (with
    "models", and "dataset" for a dataset version). TASK_ID is the full id or a
    unique prefix of it (at least 4 characters); a model's id shows the model.

    \b
    Examples:
      agent show 3f2a1b4c
      agent show 3f2a --json | jq .hyperparams
    """
    from agent.cli import registry_view as rv
    from agent.core.errors import NotFound

    backend = current_backend()
    try:
        task = find_task(backend, task_id)
    except NotFound:
        model = rv.find_model(backend, task_id.strip())
        if model is None:
            raise
        if as_json:
            echo_json(model.to_dict())
        else:
            make_console().print(rv.render_model(model))
        return
    models = rv.task_models(backend, task)
    dataset = rv.dataset_details(backend, task)
    if as_json:
        data = {**task.to_dict(), "models": models}
        if dataset is not None:
            data["dataset"] = dataset
        echo_json(data)
        return
    from agent.cli.task_view import render_task, scalars_section
    from agent.core.metrics import last_metrics

    extra = [
        scalars_section(last_metrics(backend.get_scalars(task.id))),
        rv.models_section(models),
        rv.dataset_section(dataset) if dataset else None,
    ]
    make_console().print(render_task(task, extra=[e for e in extra if e is not None]))
