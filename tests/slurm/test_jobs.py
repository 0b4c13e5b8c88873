"""Slurm's output parsed, and what each job state means for its task.

The records are lines that this machine's slurmctld (Debian's slurm-wlm 22.05) printed for
``scontrol show job -o`` and wrote to its jobcomp/filetxt log; shortened, not reworded.
"""

from __future__ import annotations

import pytest

from agent.core.models import TaskStatus
from agent.slurm.commands import SlurmJob, job_from_record, parse_records
from agent.slurm.jobs import end_of_job, progress_message

PENDING = (
    "JobId=2 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901758 "
    "Nice=0 Account=(null) QOS=(null) JobState=PENDING Reason=PartitionConfig "
    "Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 "
    "RunTime=00:00:00 TimeLimit=UNLIMITED Partition=debug AllocNode:Sid=localhost:19649 "
    "ReqNodeList=(null) ExcNodeList=(null) NodeList= NumNodes=1 NumCPUs=3 "
    "ReqB:S:C:T=0:0:*:* TRES=cpu=3,mem=1M,node=1,billing=3 WorkDir=/tmp StdOut=/tmp/j.out Power= "
)
FAILED = (
    "JobId=1 JobName=wrap UserId=root(0) JobState=FAILED Reason=NonZeroExitCode "
    "Dependency=(null) ExitCode=3:0 RunTime=00:00:02 NodeList=vm BatchHost=vm NumNodes=1 "
    "WorkDir=/tmp StdErr=/tmp/j.out Power= "
)
JOBCOMP = (
    "JobId=1 UserId=root(0) GroupId=root(0) Name=wrap JobState=FAILED Partition=debug "
    "TimeLimit=UNLIMITED StartTime=2026-12-03T07:40:45 EndTime=2026-12-03T07:40:47 "
    "NodeList=vm NodeCnt=1 ProcCnt=1 WorkDir=/tmp ReservationName= Tres=cpu=1,mem=1M,node=1 "
    "Account= QOS= WcKey= Cluster=unknown DerivedExitCode=0:0 ExitCode=3:0"
)


def test_a_pending_job_shows_slurms_reason() -> None:
    (record,) = parse_records(PENDING)
    assert record["TRES"] == "cpu=3,mem=1M,node=1,billing=3"
    assert record["NodeList"] == ""
    job = job_from_record(record)
    assert job == SlurmJob("2", "PENDING", "PartitionConfig", "", 0, 0)
    assert job.active
    assert progress_message(job) == "slurm job 2: pending (PartitionConfig)"


@pytest.mark.parametrize("line", [FAILED, JOBCOMP], ids=["scontrol", "jobcomp"])
def test_a_failed_job_ends_its_task_with_the_exit_code(line: str) -> None:
    job = job_from_record(parse_records(line)[0])
    assert (job.state, job.node, job.exit_code, job.active) == ("FAILED", "vm", 3, False)
    status, message = end_of_job(job)
    assert status is TaskStatus.failed
    assert message.startswith("slurm job 1: failed with exit code 3 on vm")


@pytest.mark.parametrize(
    ("state", "status", "words"),
    [
        ("TIMEOUT", TaskStatus.failed, "time limit reached on vm (TIMEOUT)"),
        ("NODE_FAIL", TaskStatus.failed, "node failure on vm (NODE_FAIL)"),
        ("OUT_OF_MEMORY", TaskStatus.failed, "out of memory on vm"),
        ("CANCELLED", TaskStatus.stopped, "cancelled outside the agent"),
        ("COMPLETED", TaskStatus.failed, "the task never ended"),
    ],
)
def test_each_end_of_a_job_has_its_status_and_words(
    state: str, status: TaskStatus, words: str
) -> None:
    got, message = end_of_job(SlurmJob("7", state, node="vm"))
    assert got is status
    assert message.startswith("slurm job 7: ") and words in message


def test_a_running_job_names_its_node() -> None:
    job = job_from_record(parse_records(FAILED.replace("FAILED", "RUNNING"))[0])
    assert progress_message(job) == "slurm job 1: running on vm"
    assert job_from_record({"JobId": "9", "JobState": "CANCELLED by 0"}).state == "CANCELLED"
