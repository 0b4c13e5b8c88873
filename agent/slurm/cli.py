"""``agent slurm``: the Slurm glue's command line."""

from __future__ import annotations

import logging
import os
import shlex
import socket
from typing import Any

import click

from agent.core.errors import InvalidInput
from agent.store.base import DEFAULT_LEASE_S


@click.command("slurm")
@click.option(
    "--queue", "queues", multiple=True, required=True, metavar="Q", help="Queue to serve; repeat."
)
@click.option("--partition", default=None, metavar="P", help="Slurm partition of every job.")
@click.option(
    "--sbatch-args",
    default="",
    metavar="STR",
    help="Arguments for every sbatch, e.g. '--gres=gpu:1 --time=2:00:00 --mem=16G'.",
)
@click.option(
    "--template",
    "templates",
    multiple=True,
    metavar="[Q=]FILE",
    help="Batch script template (#SBATCH lines and {{agent_execute}}); Q=FILE for one "
    "queue only. Repeat for several queues.",
)
@click.option(
    "--max-jobs", default=10, show_default=True, type=int, help="At most this many jobs in Slurm."
)
@click.option(
    "--docker", "docker_image", default=None, metavar="IMAGE", help="Jobs run tasks in this image."
)
@click.option(
    "--no-env", is_flag=True, help="Jobs run tasks with the node's Python, building no venv."
)
@click.option(
    "--agent-command",
    default=None,
    metavar="CMD",
    help="How the nodes run agent (default: this interpreter, `python -m agent.cli`).",
)
@click.option("--worker-id", default=None, help="Worker id (default: slurm:HOST:QUEUES).")
@click.option("--poll", default=3.0, show_default=True, type=float, help="Seconds between polls.")
@click.option(
    "--lease",
    default=DEFAULT_LEASE_S,
    show_default=True,
    type=float,
    help="Seconds a task's lease lasts without the glue's heartbeat.",
)
def slurm_command(**options: Any) -> int:
    """Claim tasks from queues and run each as a Slurm batch job.

    Each job runs `agent execute --id TASK --adopt` on the node Slurm picks; the glue
    keeps the task's lease, shows the job's state in the task's status message
    ("slurm job 42: pending (Resources)", "running on node7"), records an end the task
    could not (time limit, node failure, a cancel), and cancels the job of an aborted
    task. Run it on a login node, where sbatch, scontrol and scancel work; the nodes
    must reach the same store (AGENT_API_URL, or a shared AGENT_HOME).

    \b
    Examples:
      agent slurm --queue gpu --sbatch-args '--gres=gpu:1 --time=4:00:00'
      agent slurm --queue cpu --queue gpu --template gpu=gpu.sbatch --max-jobs 50
    """
    from agent.config import load_settings
    from agent.daemon.signals import StopSignals
    from agent.slurm.commands import SlurmCommands
    from agent.slurm.glue import JobSpec, SlurmGlue
    from agent.store.factory import get_backend

    queues = list(options["queues"])
    settings = load_settings()
    env = {"AGENT_HOME": str(settings.home)}
    env.update({k: v for k, v in os.environ.items() if k in ("AGENT_API_URL", "AGENT_FILES_URL")})
    default, per_queue = _templates(options["templates"], queues)
    spec = JobSpec(
        queue_templates=per_queue,
        sbatch_args=shlex.split(options["sbatch_args"]),
        partition=options["partition"],
        docker_image=options["docker_image"],
        no_env=options["no_env"],
        env=env,
    )
    if default is not None:
        spec.template = default
    if options["agent_command"]:
        spec.agent_command = options["agent_command"]
    worker_id = options["worker_id"] or f"slurm:{socket.gethostname()}:{'+'.join(queues)}"
    glue = SlurmGlue(
        get_backend(),
        SlurmCommands(),
        queues,
        spec,
        worker_id,
        max_jobs=max(1, options["max_jobs"]),
        poll_s=options["poll"],
        lease_s=options["lease"],
        log=lambda line: click.echo(line, err=True),
    )
    logging.basicConfig(level=logging.WARNING)
    signals = StopSignals()
    signals.install()
    click.echo(f"{worker_id}: serving {', '.join(queues)} through Slurm", err=True)
    try:
        glue.run_forever(lambda: signals.stopping)
    finally:
        signals.restore()
    click.echo(
        f"{worker_id}: stopped; its jobs stay in Slurm (a restart mirrors them again)", err=True
    )
    return 0


def _templates(values: tuple[str, ...], queues: list[str]) -> tuple[str | None, dict[str, str]]:
    """The default template (None: the built-in one) and the per-queue ones."""
    from agent.slurm.script import load_template

    default, per_queue = None, {}
    for value in values:
        queue, sep, path = value.partition("=")
        if sep and queue in queues:
            per_queue[queue] = load_template(path)
        elif sep and not os.path.exists(value):
            raise InvalidInput(f"--template {value}: {queue!r} is not one of --queue {queues}")
        else:
            default = load_template(value)
    return default, per_queue
