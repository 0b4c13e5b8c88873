"""What a Slurm job's state means for its task: status messages and final statuses."""

from __future__ import annotations

from agent.core.models import TaskStatus
from agent.slurm.commands import SlurmJob

#: Ends that Slurm imposed on the job from outside: they explain the task's end better
#: than what the task's runner saw (a SIGTERM), so they replace its status message.
IMPOSED_ENDS = {
    "TIMEOUT": "time limit reached",
    "NODE_FAIL": "node failure",
    "OUT_OF_MEMORY": "out of memory",
    "PREEMPTED": "preempted",
    "DEADLINE": "deadline reached",
    "BOOT_FAIL": "node boot failure",
    "CANCELLED": "cancelled outside the agent (scancel)",
}


def progress_message(job: SlurmJob) -> str:
    """Status message of a task whose job has not ended, e.g. "slurm job 42: pending (Resources)"."""
    state = job.state.lower()
    if job.state == "PENDING":
        return f"slurm job {job.job_id}: pending ({job.reason or 'None'})"
    if job.node:
        return f"slurm job {job.job_id}: {state} on {job.node}"
    return f"slurm job {job.job_id}: {state}"


def end_of_job(job: SlurmJob) -> tuple[TaskStatus, str]:
    """Final status and message of a task whose job ended while the task was in progress."""
    where = f" on {job.node}" if job.node else ""
    prefix = f"slurm job {job.job_id}"
    if job.state == "CANCELLED":
        return TaskStatus.stopped, f"{prefix}: {IMPOSED_ENDS['CANCELLED']}"
    if job.state in IMPOSED_ENDS:
        return TaskStatus.failed, f"{prefix}: {IMPOSED_ENDS[job.state]}{where} ({job.state})"
    if job.state == "FAILED":
        why = f"killed by signal {job.signal}" if job.signal else f"exit code {job.exit_code}"
        return TaskStatus.failed, f"{prefix}: failed with {why}{where} (see its output file)"
    if job.state == "COMPLETED":
        return TaskStatus.failed, (
            f"{prefix}: completed{where} but the task never ended: the job did not run "
            "`agent execute` to its end (see its output file)"
        )
    return TaskStatus.failed, f"{prefix}: ended {job.state}{where}"


def vanished_message(job_id: str) -> str:
    """Status message of a task whose job Slurm no longer knows."""
    return (
        f"slurm job {job_id} vanished: slurmctld no longer knows it and no job completion "
        "log here records its end (purged after MinJobAge, or slurmctld lost its state)"
    )
