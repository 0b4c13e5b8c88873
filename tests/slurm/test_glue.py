"""`agent slurm` against a real single-node Slurm cluster: tasks run as batch jobs.

Each test drives a `SlurmGlue` round by round (``loop()``) over a real SQLite store; the
jobs run ``agent execute --adopt`` of this checkout on this machine's slurmd.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli.control import abort_task
from agent.core.models import Script, Task
from agent.slurm.commands import SlurmCommands
from agent.slurm.glue import JobSpec, MirroredJob, SlurmGlue
from agent.store.factory import get_backend, reset_backends
from tests.services import BASE_IMAGE, REPO_ROOT, docker_image_present, require

pytestmark = pytest.mark.usefixtures("slurm_cluster")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AGENT_HOME", str(tmp_path / "home"))
    reset_backends()
    yield get_backend()
    reset_backends()


def make_glue(store: Any, tmp_path: Path, **kwargs: Any) -> SlurmGlue:
    spec = JobSpec(
        sbatch_args=[f"--chdir={tmp_path}"],
        agent_command=f"env PYTHONPATH={REPO_ROOT} {sys.executable} -m agent.cli",
        no_env=True,
        env={"AGENT_HOME": str(tmp_path / "home")},
        queue_templates=kwargs.pop("queue_templates", {}),
        docker_image=kwargs.pop("docker_image", None),
    )
    return SlurmGlue(
        store, SlurmCommands(), kwargs.pop("queues", ["slurm"]), spec, "slurm:test", poll_s=0.3,
        log=print, **kwargs,
    )  # fmt: skip


def enqueue(store: Any, code: str, queue: str = "slurm") -> Task:
    task = Task(name="slurm-test", project="slurm", script=Script(code=code))
    return store.create_task(task, queue=queue)


def run_until(glue: SlurmGlue, done: Callable[[], Any], timeout: float = 60.0) -> Any:
    glue.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        glue.loop()
        value = done()
        if value:
            return value
        time.sleep(0.2)
    states = {m.job_id: SlurmCommands().jobs().get(m.job_id) for m in glue.jobs.values()}
    raise AssertionError(f"timed out after {timeout:g} s; jobs: {states}")


def ended(store: Any, task_id: str) -> Callable[[], Task | None]:
    def check() -> Task | None:
        task = store.get_task(task_id)
        return task if task.status not in ("queued", "in_progress") else None

    return check


def test_a_task_runs_and_completes_as_a_slurm_job(store: Any, tmp_path: Path) -> None:
    task = enqueue(store, "print('hello from slurm')\n")
    glue = make_glue(store, tmp_path)
    done = run_until(glue, ended(store, task.id))
    assert done.status == "completed", done.status_message
    assert re.fullmatch(r"\d+", done.runtime["slurm_job_id"])
    lines = [line.text for line in store.get_logs(task.id)]
    assert any("hello from slurm" in line for line in lines), lines
    job = run_until(glue, lambda: _ended_job(done.runtime["slurm_job_id"]))
    assert job.state == "COMPLETED" and job.node == socket.gethostname().split(".")[0]


def test_with_docker_the_job_runs_the_task_in_the_image(store: Any, tmp_path: Path) -> None:
    require(f"Docker with {BASE_IMAGE}", docker_image_present())
    task = enqueue(store, "import sys\nprint('python', sys.version.split()[0])\n")
    done = run_until(make_glue(store, tmp_path, docker_image=BASE_IMAGE), ended(store, task.id))
    assert done.status == "completed", done.status_message
    lines = [line.text for line in store.get_logs(task.id)]
    assert f"container: image {BASE_IMAGE}" in lines, lines


def test_a_failing_task_fails_with_its_exit_code(store: Any, tmp_path: Path) -> None:
    task = enqueue(store, "import sys\nsys.exit(3)\n")
    done = run_until(make_glue(store, tmp_path), ended(store, task.id))
    assert done.status == "failed"
    assert "exit code 3" in done.status_message


def test_a_running_task_shows_its_node_as_worker(store: Any, tmp_path: Path) -> None:
    """The node Slurm picked is the worker `agent tasks`/`agent show` name; the lease stays
    the glue's (its heartbeat renews it), and the node stays shown once the task ended."""
    go = tmp_path / "go"
    code = f"import pathlib, time\nwhile not pathlib.Path({str(go)!r}).exists():\n    time.sleep(0.1)\n"
    task = enqueue(store, code)
    glue = make_glue(store, tmp_path)
    run_until(glue, lambda: "running on" in store.get_task(task.id).status_message)
    running = store.get_task(task.id)
    node = f"slurm:{running.runtime['slurm_node']}"
    assert (running.worker, running.shown_worker) == (glue.worker_id, node)
    assert task.id in store.heartbeat(glue.worker_id).tasks, "the glue's heartbeat renews it"
    assert node in _cli("tasks")
    assert f"{node} (via {glue.worker_id})" in _cli("show", task.id)
    go.touch()
    done = run_until(glue, ended(store, task.id))
    run_until(glue, lambda: not glue.jobs)
    assert done.status == "completed", done.status_message
    assert store.get_task(task.id).shown_worker == node


def _cli(*args: str) -> str:
    from click.testing import CliRunner

    from agent.cli.main import cli

    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_an_aborted_running_task_ends_its_job(store: Any, tmp_path: Path) -> None:
    """The job's runner sees the stop first (or the glue's scancel does it): either way the
    job ends and the task stays stopped. A pending job is cancelled by scancel alone (below)."""
    task = enqueue(store, "import time\nprint('started', flush=True)\ntime.sleep(120)\n")
    glue = make_glue(store, tmp_path)
    running = run_until(glue, lambda: "running on" in store.get_task(task.id).status_message)
    assert running
    node = store.get_task(task.id).runtime["slurm_node"]
    assert re.search(rf"slurm job \d+: running on {node}", store.get_task(task.id).status_message)
    glue.poll_s = 3600.0
    glue.loop()  # the next read of Slurm's jobs is due in an hour
    abort_task(store, store.get_task(task.id))
    glue.loop()
    assert task.id not in glue.jobs, "the round after the abort cancelled the job"
    job_id = store.get_task(task.id).runtime["slurm_job_id"]
    job = run_until(glue, lambda: _ended_job(job_id))
    assert job.state in ("CANCELLED", "FAILED")
    run_until(glue, lambda: not glue.jobs)
    assert store.get_task(task.id).status == "stopped"


def test_a_job_asking_too_much_stays_pending_with_the_reason(store: Any, tmp_path: Path) -> None:
    template = tmp_path / "big.sbatch"
    template.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --cpus-per-task={(os.cpu_count() or 1) + 1}\n"
        "{{exports}}\nexec {{agent_execute}}\n"
    )
    first = enqueue(store, "print('never')\n", queue="big")
    second = enqueue(store, "print('never')\n", queue="big")
    glue = make_glue(
        store, tmp_path, queues=["big"], queue_templates={"big": template.read_text()}, max_jobs=1
    )
    message = run_until(glue, lambda: _pending(store.get_task(first.id).status_message), timeout=30)
    job_id, reason = message.groups()
    assert reason == SlurmCommands().jobs()[job_id].reason != "None"
    assert store.get_task(second.id).status == "queued", "--max-jobs 1 left it on its queue"
    abort_task(store, store.get_task(first.id))
    job = run_until(glue, lambda: _ended_job(job_id))
    assert job.state == "CANCELLED"
    run_until(glue, lambda: store.get_task(second.id).status == "in_progress")
    abort_task(store, store.get_task(second.id))
    run_until(glue, lambda: not glue.jobs)


def test_a_job_slurm_no_longer_knows_fails_its_task(store: Any, tmp_path: Path) -> None:
    task = enqueue(store, "print('x')\n")
    glue = make_glue(store, tmp_path)
    glue.start()
    claimed = store.claim(["slurm"], glue.worker_id)
    assert claimed is not None and claimed.id == task.id
    glue.jobs[task.id] = MirroredJob(task.id, "999999")
    glue.mirror()
    done = store.get_task(task.id)
    assert done.status == "failed"
    assert done.status_message.startswith("slurm job 999999 vanished")


def _pending(message: str) -> re.Match[str] | None:
    match = re.fullmatch(r"slurm job (\d+): pending \((\w+)\)", message)
    return match if match and match.group(2) != "None" else None


def _ended_job(job_id: str) -> Any:
    job = SlurmCommands().jobs().get(job_id)
    return job if job is not None and not job.active else None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_job_past_its_time_limit_fails_its_task_with_slurms_reason(
    store: Any, tmp_path: Path
) -> None:
    task = enqueue(store, "import time\ntime.sleep(600)\n")
    glue = make_glue(store, tmp_path)
    glue.spec.sbatch_args = [*glue.spec.sbatch_args, "--time=1"]  # a minute: Slurm's least
    done = run_until(glue, ended(store, task.id), timeout=240)
    run_until(glue, lambda: not glue.jobs, timeout=60)
    done = store.get_task(task.id)
    assert done.status == "failed"
    assert re.fullmatch(
        r"slurm job \d+: time limit reached on \S+ \(TIMEOUT\)", done.status_message
    )


def test_a_restarted_glue_mirrors_the_jobs_of_its_tasks_again(store: Any, tmp_path: Path) -> None:
    task = enqueue(store, "import time\ntime.sleep(120)\n")
    first = make_glue(store, tmp_path)
    run_until(first, lambda: "running on" in store.get_task(task.id).status_message)
    job_id = store.get_task(task.id).runtime["slurm_job_id"]
    store.unregister_worker(first.worker_id)  # as `agent slurm` does when it stops

    second = make_glue(store, tmp_path)
    second.start()
    assert [(m.task_id, m.job_id) for m in second.jobs.values()] == [(task.id, job_id)]
    abort_task(store, store.get_task(task.id))
    run_until(second, lambda: _ended_job(job_id))
    run_until(second, lambda: not second.jobs)
    assert store.get_task(task.id).status == "stopped"
