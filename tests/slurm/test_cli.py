"""``agent slurm`` as a real process: serves a queue through Slurm, stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.core.models import Script, Task
from agent.slurm.cli import _templates
from agent.store.factory import get_backend, reset_backends
from agent.store.http import HttpBackend
from tests.server.live_server import LiveServer
from tests.services import REPO_ROOT, agent_env, wait_for

AGENT = [sys.executable, "-m", "agent.cli"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "home"
    monkeypatch.setenv("AGENT_HOME", str(path))
    reset_backends()
    yield path
    reset_backends()


@pytest.mark.usefixtures("slurm_cluster")
def test_agent_slurm_runs_a_queued_task_and_stops_on_sigterm(home: Path, tmp_path: Path) -> None:
    store = get_backend()
    task = store.create_task(
        Task(name="t", project="p", script=Script(code="print(6*7)\n")), queue="q"
    )
    command = [
        *AGENT, "slurm", "--queue", "q", "--no-env", "--poll", "0.5",
        "--agent-command", f"env PYTHONPATH={REPO_ROOT} {sys.executable} -m agent.cli",
        "--sbatch-args", f"--chdir={tmp_path} --job-name=cli-test",
    ]  # fmt: skip
    glue = subprocess.Popen(command, env=agent_env(home), stderr=subprocess.PIPE, text=True)
    try:
        done = wait_for(lambda: _ended(store, task.id), timeout=60, what="the task's end")
        assert done.status == "completed", done.status_message
        assert any(w.id.startswith("slurm:") for w in store.list_workers())
    finally:
        glue.send_signal(signal.SIGTERM)
        _, err = glue.communicate(timeout=30)
    assert glue.returncode == 0, err
    assert f"task {task.id}: slurm job" in err and "stopped; its jobs stay in Slurm" in err
    assert not [w for w in store.list_workers() if w.id.startswith("slurm:")]


@pytest.mark.slow
@pytest.mark.usefixtures("slurm_cluster")
def test_agent_slurm_serves_a_queue_of_an_agent_server(home: Path, tmp_path: Path) -> None:
    """The job reaches the store through AGENT_API_URL, exported by the batch script."""
    with LiveServer(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server") as server:
        store = HttpBackend(server.url)
        code = "import os\nprint('via', os.environ['AGENT_API_URL'])\n"
        task = store.create_task(Task(name="t", project="p", script=Script(code=code)), queue="q")
        command = [
            *AGENT, "slurm", "--queue", "q", "--no-env", "--poll", "0.5",
            "--agent-command", f"env PYTHONPATH={REPO_ROOT} {sys.executable} -m agent.cli",
            "--sbatch-args", f"--chdir={tmp_path} --export=NONE",
        ]  # fmt: skip
        env = agent_env(tmp_path / "glue-home", AGENT_API_URL=server.url)
        glue = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        try:
            done = wait_for(lambda: _ended(store, task.id), timeout=60, what="the task's end")
        finally:
            glue.send_signal(signal.SIGTERM)
            _, err = glue.communicate(timeout=30)
        assert done.status == "completed", f"{done.status_message}\n{err}"
        assert any(f"via {server.url}" in line.text for line in store.get_logs(task.id))


def test_a_template_without_agent_execute_is_refused(home: Path, tmp_path: Path) -> None:
    template = tmp_path / "bad.sbatch"
    template.write_text("#!/bin/bash\n#SBATCH --time=5\necho nothing\n")
    result = subprocess.run(
        [*AGENT, "slurm", "--queue", "q", "--template", str(template)],
        env=agent_env(home), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "has no {{agent_execute}}" in result.stderr and "Traceback" not in result.stderr


def test_templates_go_to_their_queues(tmp_path: Path) -> None:
    gpu, other = tmp_path / "gpu.sbatch", tmp_path / "all.sbatch"
    gpu.write_text("#SBATCH --gres=gpu:1\n{{agent_execute}}\n")
    other.write_text("{{exports}}\n{{agent_execute}}\n")
    default, per_queue = _templates((f"gpu={gpu}", str(other)), ["cpu", "gpu"])
    assert default == other.read_text()
    assert per_queue == {"gpu": gpu.read_text()}


def _ended(store: Any, task_id: str) -> Task | None:
    task = store.get_task(task_id)
    return task if task.status not in ("queued", "in_progress") else None
