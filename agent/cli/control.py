"""Commands that change tasks: ``agent abort``, ``agent enqueue``, ``agent clone``."""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import click

from agent.cli.lookup import current_backend, find_task
from agent.cli.render import echo_json, short_id
from agent.core.errors import Conflict, IllegalTransition
from agent.core.models import Task, TaskStatus
from agent.store.serving import warn_if_unserved

if TYPE_CHECKING:
    from agent.store.base import Backend

#: Status message of a task stopped by ``agent abort``.
ABORT_MESSAGE = "aborted by user"


def abort_task(backend: Backend, task: Task, attempts: int = 3) -> tuple[Task, str]:
    """Stop a queued or running task; return it and what was done.

    A queued task leaves its queue and is ``stopped`` in one move; a running one is
    marked ``stopped`` and the agent watching it kills its process. The move names
    the status it expects, so a task claimed meanwhile is retried as a running one.

    Raises:
        Conflict: the task is not queued or running (already finished, or never enqueued).
    """
    for _ in range(attempts):
        status = task.status
        if status not in (TaskStatus.queued.value, TaskStatus.in_progress.value):
            what = "already " + status if task.task_status.is_terminal else status
            raise Conflict(
                f"task {short_id(task.id)} is {what}: only queued or running tasks can be aborted"
            )
        try:
            stopped = backend.set_status(task.id, "stopped", ABORT_MESSAGE, expected=[status])
        except Conflict:
            task = backend.get_task(task.id)  # it moved meanwhile: look again
            continue
        if status == TaskStatus.queued.value:
            return stopped, f"removed from queue '{task.queue}' and stopped"
        where = f" on worker {task.shown_worker}" if task.worker else ""
        return stopped, f"stopped; the agent running it{where} kills its process"
    raise Conflict(f"task {short_id(task.id)} keeps changing status; try again")


@click.command("abort")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print the stopped task as JSON.")
def abort_command(task_id: str, as_json: bool) -> None:
    """Abort a queued or running task.

    Its status becomes 'stopped'. A queued task is taken off its queue; a running task is marked stopped with
    the message "aborted by user", and the agent running it kills its process.

    \b
    Examples:
      agent abort 3f2a1b4c
      agent abort 3f2a --json | jq -r .status
    """
    backend = current_backend()
    task, done = abort_task(backend, find_task(backend, task_id))
    if as_json:
        echo_json(task.to_dict())
        return
    click.echo(f"{short_id(task.id)}: {done}")


@click.command("enqueue")
@click.argument("task_id")
@click.option("--queue", "-q", required=True, help="Queue to put the task on.")
@click.option(
    "--priority", default=0, show_default=True, help="Higher is claimed first within the queue."
)
@click.option("--json", "as_json", is_flag=True, help="Print the queued task as JSON.")
def enqueue_command(task_id: str, queue: str, priority: int, as_json: bool) -> None:
    """Put a task on a queue for an agent to run.

    An agent serving the queue claims it. Tasks in created, failed or stopped can be (re)enqueued; to run a completed
    task again, clone it: `agent clone ID --queue Q`.

    \b
    Examples:
      agent enqueue 3f2a1b4c --queue default
      agent enqueue 3f2a --queue gpu --priority 10
      agent enqueue 3f2a --queue gpu --json | jq -r .queue
    """
    backend = current_backend()
    task = find_task(backend, task_id)
    try:
        task = backend.enqueue(task.id, queue, priority=priority)
    except IllegalTransition as exc:
        raise Conflict(_enqueue_refusal(task, queue)) from exc
    if as_json:
        echo_json(task.to_dict())
        return
    click.echo(f"{short_id(task.id)}: queued on '{queue}'")
    warn_if_unserved(backend, queue)


def _enqueue_refusal(task: Task, queue: str) -> str:
    why = f"cannot enqueue task {short_id(task.id)}: it is {task.status}"
    if task.status in (TaskStatus.queued.value, TaskStatus.in_progress.value):
        return f"{why}; abort it first (agent abort {short_id(task.id)})"
    return f"{why}; run a copy instead (agent clone {short_id(task.id)} --queue {queue})"


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"Section/name=value"`` -> (section, name, value); value is JSON when it parses.

    Raises:
        click.BadParameter: not of the form Section/name=value.
    """
    key, sep, raw = text.partition("=")
    section, slash, name = key.partition("/")
    if not sep or not slash or not section.strip() or not name.strip():
        raise click.BadParameter(
            f"'{text}' is not Section/name=value (e.g. Args/lr=0.01)", param_hint="'--set'"
        )
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return section.strip(), name.strip(), value


def _parse_overrides(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> list[tuple[str, str, Any]]:
    return [parse_override(value) for value in values]


def apply_overrides(
    hyperparams: dict[str, dict[str, Any]], overrides: list[tuple[str, str, Any]]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """A copy of ``hyperparams`` with the overrides set; also the keys that were new."""
    result = copy.deepcopy(hyperparams)
    new_keys = []
    for section, name, value in overrides:
        values = result.setdefault(section, {})
        if name not in values:
            new_keys.append(f"{section}/{name}")
        values[name] = value
    return result, new_keys


@click.command("clone")
@click.argument("task_id")
@click.option("--name", help="Name of the copy (default: the source's name).")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    callback=_parse_overrides,
    metavar="SECTION/NAME=VALUE",
    help="Set a hyperparameter of the copy; repeatable. VALUE is JSON if it parses, else text.",
)
@click.option("--queue", "-q", help="Enqueue the copy on this queue.")
@click.option("--priority", default=0, show_default=True, help="Priority when enqueued.")
@click.option("--json", "as_json", is_flag=True, help="Print the new task as JSON.")
def clone_command(
    task_id: str,
    name: str | None,
    overrides: list[tuple[str, str, Any]],
    queue: str | None,
    priority: int,
    as_json: bool,
) -> None:
    """Copy a task, optionally with new hyperparameters, and enqueue it.

    The copy gets the source's definition (code, hyperparameters, configuration,
    container), not its results. Prints the new task's id (or, with --json, the new task).

    \b
    Examples:
      agent clone 3f2a1b4c
      agent clone 3f2a --set Args/lr=0.01 --set Args/layers='[64, 32]' --queue default
      NEW=$(agent clone 3f2a --name retrain)
    """
    backend = current_backend()
    source = find_task(backend, task_id)
    task = backend.clone_task(source.id, name=name)
    if overrides:
        hyperparams, new_keys = apply_overrides(task.hyperparams, overrides)
        task = backend.update_task(task.id, hyperparams=hyperparams)
        for key in new_keys:
            click.echo(f"note: {key} is new (not in task {short_id(source.id)})", err=True)
    if queue:
        task = backend.enqueue(task.id, queue, priority=priority)
        warn_if_unserved(backend, queue)
    if as_json:
        echo_json(backend.get_task(task.id).to_dict())
    else:
        click.echo(task.id)
