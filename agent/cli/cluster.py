"""``agent queues`` and ``agent workers``: what waits and who runs it."""

from __future__ import annotations

import time
from typing import Any

import click

from agent.cli.lookup import current_backend
from agent.cli.render import echo_json, format_age, make_console, short_id
from agent.core import worker_stats
from agent.store.serving import is_live


@click.command("queues")
@click.option("--json", "as_json", is_flag=True, help="Print the queues as JSON.")
def queues_command(as_json: bool) -> None:
    """List queues, how many tasks wait on each and who serves them.

    \b
    Examples:
      agent queues
      agent queues --json
    """
    backend = current_backend()
    workers = backend.list_workers()
    rows = []
    for queue in backend.list_queues():
        serving = [worker.id for worker in workers if queue.name in worker.queues]
        rows.append({**queue.to_dict(), "workers": serving})
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no queues yet (enqueue a task to make one)", err=True)
        return
    from rich.table import Table

    table = Table()
    table.add_column("queue")
    table.add_column("waiting", justify="right")
    table.add_column("workers")
    for row in rows:
        table.add_row(row["name"], str(row["length"]), ", ".join(row["workers"]) or "-")
    make_console().print(table)


@click.command("workers")
@click.option("--json", "as_json", is_flag=True, help="Print the workers as JSON.")
def workers_command(as_json: bool) -> None:
    """List workers: queues, last heartbeat, machine load, tasks.

    A worker is an agent daemon (or anything else that claims tasks); a heartbeat
    older than a minute is shown in red.

    \b
    Examples:
      agent workers
      agent workers --json
    """
    workers = current_backend().list_workers()
    if as_json:
        echo_json([worker.to_dict() for worker in workers])
        return
    if not workers:
        click.echo("no workers registered (start one with `agent daemon --queue Q`)", err=True)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for header in ("worker", "queues", "heartbeat", "load", "running"):
        table.add_column(header)
    now = time.time()
    for worker in workers:
        stale = not is_live(worker, now)  # the rule that says whether a queue is served
        table.add_row(
            worker.id,
            ", ".join(worker.queues),
            Text(format_age(worker.last_heartbeat, now), style="red" if stale else ""),
            summarize_stats(worker.stats),
            ", ".join(short_id(task_id) for task_id in worker.tasks) or "-",
        )
    make_console().print(table)


def summarize_stats(stats: dict[str, Any]) -> str:
    """A one-line summary of a heartbeat's machine stats, e.g. ``cpu 23% mem 41% gpu 2x 80%``.

    Reads the keys of ``agent.daemon.stats`` (``cpu_pct``, ``memory_pct`` or
    ``memory_used_mib``/``memory_total_mib``, ``gpus`` as dicts with ``utilization_pct``)
    and a few common spellings of them; with none of them, the first numeric stats
    as ``key=value``.
    """
    parts = []
    cpu = worker_stats.cpu_percent(stats)
    if cpu is not None:
        parts.append(f"cpu {cpu:.0f}%")
    memory = worker_stats.memory_percent(stats)
    if memory is not None:
        parts.append(f"mem {memory:.0f}%")
    gpu = _gpu_summary(stats)
    if gpu:
        parts.append(gpu)
    if not parts:
        numbers = [(k, v) for k, v in stats.items() if worker_stats.is_number(v)][:3]
        parts = [f"{key}={value:g}" for key, value in numbers]
    return " ".join(parts) or "-"


def _gpu_summary(stats: dict[str, Any]) -> str:
    gpus = stats.get("gpus")
    if isinstance(gpus, list) and gpus:
        readings = [worker_stats.gpu_utilization(gpu) for gpu in worker_stats.gpu_list(stats)]
        loads = [load for load in readings if load is not None]
        if loads:
            return f"gpu {len(gpus)}x {sum(loads) / len(loads):.0f}%"
        return f"gpu {len(gpus)}x"
    usage = worker_stats.first_number(stats, "gpu_pct", "gpu_utilization")
    return f"gpu {usage:.0f}%" if usage is not None else ""
