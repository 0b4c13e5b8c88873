"""``agent slurm``: claims tasks from queues and runs each as a Slurm batch job.

The glue is a worker like a daemon: it claims a task (the lease is its own, renewed by its
heartbeat for as long as the job lives), submits a job whose script runs
``agent execute --id TASK --adopt`` on the node Slurm picks, and mirrors the job's state
into the task every few seconds: pending with Slurm's reason, running with the node as the
task's shown worker (``slurm:<node>`` in ``runtime.runs_on``; the lease stays the glue's),
and an end the task's own runner could not record (time limit, node failure, a cancel
from outside) as the task's final status. A task stopped in the store (``agent abort``) has its
job cancelled. Signal handlers only set a flag; the loop acts on it.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from agent.core.errors import Conflict, NotFound
from agent.core.models import RUNS_ON_KEY, Task, TaskStatus
from agent.slurm.commands import SlurmCommands, SlurmError, SlurmJob
from agent.slurm.jobs import IMPOSED_ENDS, end_of_job, progress_message, vanished_message
from agent.slurm.script import DEFAULT_TEMPLATE, render_script
from agent.store.base import DEFAULT_LEASE_S, Backend
from agent.store.stops import MAX_STOP_IDS, Stopped, stops_read_one_by_one

logger = logging.getLogger(__name__)

IN_PROGRESS = TaskStatus.in_progress.value
#: Seconds between two reads of Slurm's job states.
DEFAULT_POLL_S = 3.0


def default_agent_command() -> str:
    """``agent`` as this process runs it: this interpreter with ``-m agent.cli``."""
    return f"{shlex.quote(sys.executable)} -m agent.cli"


@dataclasses.dataclass
class JobSpec:
    """How a task becomes a batch job: script template(s) and sbatch's arguments.

    Args:
        template: the script template for every queue without one of its own.
        queue_templates: per-queue templates.
        sbatch_args: arguments for every ``sbatch`` (``--gres=gpu:1 --time=1:00:00``).
        partition: ``--partition`` of every job (None: the cluster's default).
        agent_command: how the node runs ``agent`` (a shell command line).
        docker_image: the job's ``agent execute`` runs the task in this image.
        no_env: the job's ``agent execute`` uses the node's interpreter, building no venv.
        env: the job's store settings (``AGENT_HOME``, ``AGENT_API_URL``...), exported.
    """

    template: str = DEFAULT_TEMPLATE
    queue_templates: Mapping[str, str] = dataclasses.field(default_factory=dict)
    sbatch_args: Sequence[str] = ()
    partition: str | None = None
    agent_command: str = dataclasses.field(default_factory=default_agent_command)
    docker_image: str | None = None
    no_env: bool = False
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def script(self, task: Task, queue: str) -> str:
        """The batch script that runs ``task`` (claimed from ``queue``)."""
        execute = (
            f"{self.agent_command} execute --id {shlex.quote(task.id)} --adopt "
            "--keep-status-on-signal"
        )
        if self.no_env:
            execute += " --no-env"
        if self.docker_image:
            execute += f" --docker {shlex.quote(self.docker_image)}"
        values = {
            "agent_execute": execute,
            "task_id": task.id,
            "task_name": task.name,
            "queue": queue,
            "job_name": f"agent-{task.id[:8]}",
        }
        return render_script(self.queue_templates.get(queue, self.template), values, self.env)

    def arguments(self) -> list[str]:
        """sbatch's command-line arguments (they win over the script's #SBATCH lines)."""
        args = [f"--partition={self.partition}"] if self.partition else []
        return [*args, *self.sbatch_args]


@dataclasses.dataclass
class MirroredJob:
    """A task the glue holds and the job that runs it."""

    task_id: str
    job_id: str
    message: str = ""
    node: str = ""
    #: The task's status as last seen (None: the task was deleted).
    status: str | None = IN_PROGRESS


class SlurmGlue:
    """Claims tasks from ``queues`` and mirrors their Slurm jobs; one `loop()` per round.

    Args:
        store: the control plane.
        slurm: Slurm's commands.
        queues: queues to claim from, in this order.
        spec: how a task becomes a job.
        worker_id: this glue's worker id (the leases of its tasks are held under it).
        max_jobs: at most this many of its jobs in Slurm at once.
        poll_s: seconds between reads of the jobs' states.
        lease_s: lease of a claimed task; renewed every ``lease_s / 3`` s.
        log: prints one line for the operator.
    """

    def __init__(
        self,
        store: Backend,
        slurm: SlurmCommands,
        queues: Sequence[str],
        spec: JobSpec,
        worker_id: str,
        max_jobs: int = 10,
        poll_s: float = DEFAULT_POLL_S,
        lease_s: float = DEFAULT_LEASE_S,
        log: Callable[[str], None] = logger.info,
    ):
        self.store = store
        self.slurm = slurm
        self.queues = list(queues)
        self.spec = spec
        self.worker_id = worker_id
        self.max_jobs = max_jobs
        self.poll_s = poll_s
        self.lease_s = lease_s
        self.log = log
        self.jobs: dict[str, MirroredJob] = {}
        self._next_heartbeat = 0.0
        self._next_poll = 0.0

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Register as a worker and take back the jobs of tasks this worker id still holds."""
        self.store.register_worker(self.worker_id, self.queues, name=self.worker_id)
        for task in self.store.query_tasks(
            status=IN_PROGRESS, runtime={"slurm_glue": self.worker_id}
        ):
            job_id = str((task.runtime or {}).get("slurm_job_id") or "")
            if job_id and task.worker == self.worker_id:
                self.jobs[task.id] = MirroredJob(task.id, job_id, task.status_message)
                self.log(f"task {task.id}: mirroring slurm job {job_id} again")

    def run_forever(self, should_stop: Callable[[], bool], idle_s: float = 0.5) -> None:
        """`loop()` until ``should_stop()``; the jobs stay in Slurm (a restart takes them back)."""
        self.start()
        try:
            while not should_stop():
                try:
                    self.loop()
                except Exception as exc:  # the loop's boundary: a store or Slurm hiccup
                    logger.exception("slurm glue round failed")
                    self.log(f"round failed ({exc}); retrying")
                time.sleep(idle_s)
        finally:
            self.store.unregister_worker(self.worker_id)

    def loop(self, now: float | None = None) -> None:
        """One round: heartbeat when due, mirror the jobs when due or when a task was
        stopped (its job is cancelled this round), claim what fits."""
        now = time.monotonic() if now is None else now
        if now >= self._next_heartbeat:
            self._heartbeat()
            self._next_heartbeat = now + self.lease_s / 3
        if now >= self._next_poll or self.look_for_stops():
            self._next_poll = now + self.poll_s
            self.mirror()
        self.claim_and_submit()

    def _heartbeat(self) -> None:
        stats = {"slurm_jobs": len(self.jobs)}
        try:
            self.store.heartbeat(self.worker_id, stats, self.lease_s)
        except NotFound:  # forgotten by the store (e.g. unregistered): register again
            self.store.register_worker(self.worker_id, self.queues, name=self.worker_id)
            self.store.heartbeat(self.worker_id, stats, self.lease_s)

    # -- claims -----------------------------------------------------------

    def claim_and_submit(self) -> None:
        """Claim tasks while fewer than ``max_jobs`` jobs are in Slurm; submit each."""
        while len(self.jobs) < self.max_jobs:
            task = self.store.claim(self.queues, self.worker_id, timeout=0, lease_s=self.lease_s)
            if task is None:
                return
            self.submit(task)

    def submit(self, task: Task) -> None:
        """sbatch the task's job; a refused submission fails the task with sbatch's reason."""
        queue = task.queue or (self.queues[0] if self.queues else "")
        try:
            job_id = self.slurm.submit(self.spec.script(task, queue), self.spec.arguments())
        except SlurmError as exc:
            self.log(f"task {task.id}: {exc}")
            self._finish(task.id, TaskStatus.failed, f"cannot submit to Slurm: {exc}")
            return
        message = f"slurm job {job_id}: submitted"
        # A node of an earlier run (the task was enqueued again) is no longer where it runs.
        runtime = {"slurm_job_id": job_id, "slurm_glue": self.worker_id, "slurm_node": None}
        self.store.merge_runtime(task.id, {**runtime, RUNS_ON_KEY: None})
        self.store.update_task(task.id, status_message=message)
        self.jobs[task.id] = MirroredJob(task.id, job_id, message)
        self.log(f"task {task.id}: {message}")

    # -- mirroring --------------------------------------------------------

    def look_for_stops(self) -> bool:
        """Ask the store once which of the jobs' tasks left ``in_progress`` (an abort, the
        runner's end); True when one was stopped or deleted, so its job must be cancelled."""
        running = [m for m in self.jobs.values() if m.status == IN_PROGRESS]
        urgent = False
        for start in range(0, len(running), MAX_STOP_IDS):
            chunk = {m.task_id: m for m in running[start : start + MAX_STOP_IDS]}
            for task_id, status in self._stops_among(list(chunk)).items():
                chunk[task_id].status = status
                urgent = urgent or status in (TaskStatus.stopped.value, None)
        return urgent

    def _stops_among(self, task_ids: list[str]) -> Stopped:
        try:
            return self.store.wait_for_stop(task_ids, 0)
        except NotFound:  # an agent server from before wait_for_stop: no such endpoint
            return stops_read_one_by_one(self.store, task_ids)

    def mirror(self) -> None:
        """Read every job's state once and carry it into its task."""
        if not self.jobs:
            return
        try:
            known = self.slurm.jobs()
        except SlurmError as exc:  # slurmctld down for a moment: try again next round
            self.log(f"cannot read Slurm's jobs: {exc}")
            return
        self.look_for_stops()  # after Slurm's answer: a stop meanwhile is seen, not overwritten
        for mirrored in list(self.jobs.values()):
            try:
                self._mirror_one(mirrored, known.get(mirrored.job_id))
            except Exception:  # the loop's boundary: one task's trouble must not stop the rest
                logger.exception(
                    "task %s: cannot mirror slurm job %s", mirrored.task_id, mirrored.job_id
                )

    def _mirror_one(self, mirrored: MirroredJob, job: SlurmJob | None) -> None:
        if job is None:
            job = self.slurm.finished_job(mirrored.job_id)
        if mirrored.status is None:
            self._cancel(mirrored, job, "its task was deleted")
        elif mirrored.status != IN_PROGRESS:
            self._after_task_ended(mirrored, mirrored.status, job)
        elif job is None:
            self._drop(mirrored)
            self._finish(mirrored.task_id, TaskStatus.failed, vanished_message(mirrored.job_id))
        elif job.active:
            self._show_progress(mirrored, job)
        else:
            self._drop(mirrored)
            status, message = end_of_job(job)
            self._finish(mirrored.task_id, status, message)

    def _after_task_ended(self, mirrored: MirroredJob, status: str, job: SlurmJob | None) -> None:
        """The task ended in the store: cancel its job if it was stopped, else let it exit."""
        if status == TaskStatus.stopped.value:
            self._cancel(mirrored, job, f"its task is {status}")
            return
        if job is not None and job.active:
            return  # `agent execute` recorded the end and is exiting: let it
        self._drop(mirrored)
        if job is not None and job.state in IMPOSED_ENDS and status == TaskStatus.failed.value:
            # The runner saw only a signal; Slurm knows why it came.
            self.store.update_task(mirrored.task_id, status_message=end_of_job(job)[1])

    def _show_progress(self, mirrored: MirroredJob, job: SlurmJob) -> None:
        message = progress_message(job)
        if job.node and job.node != mirrored.node and job.state != "PENDING":
            mirrored.node = job.node
            runs_on = {"worker": self.worker_id, "node": f"slurm:{job.node}"}
            self.store.merge_runtime(
                mirrored.task_id, {"slurm_node": job.node, RUNS_ON_KEY: runs_on}
            )
        if message != mirrored.message:
            mirrored.message = message
            self.store.update_task(mirrored.task_id, status_message=message)
            self.log(f"task {mirrored.task_id}: {message}")

    def _cancel(self, mirrored: MirroredJob, job: SlurmJob | None, why: str) -> None:
        self._drop(mirrored)
        if job is None or not job.active:
            return
        self.log(f"task {mirrored.task_id}: cancelling slurm job {job.job_id}: {why}")
        try:
            self.slurm.cancel(job.job_id)
        except SlurmError as exc:
            self.log(f"task {mirrored.task_id}: {exc}")

    def _drop(self, mirrored: MirroredJob) -> None:
        self.jobs.pop(mirrored.task_id, None)

    def _finish(self, task_id: str, status: TaskStatus, message: str) -> None:
        try:
            self.store.set_status(task_id, status.value, message, expected=[IN_PROGRESS])
        except Conflict:
            pass  # it ended meanwhile (the runner, an abort): that end stands
        self.log(f"task {task_id}: {status.value}: {message}")
