"""The iris pipeline with its steps run as Slurm jobs: the controller on a services-mode
daemon, the steps' queue served by ``agent slurm``, both on the bare node (see
:mod:`tests.bare_node`), so each step's job builds the step's venv from its requirements."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bare_node import bare_python, node_env
from tests.pipeline.support import (
    REPO_ROOT,
    Daemon,
    agent_env,
    artifact_value,
    steps_of,
    wait_finished,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]


@pytest.fixture
def cluster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from agent.store.factory import reset_backends

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("AGENT_HOME", str(home))
    reset_backends()
    services = Daemon(home, "--queue", "services", "--services-mode", "2").start()
    log = (home / "glue.log").open("ab")
    glue = subprocess.Popen(
        [str(bare_python()), "-m", "agent.cli.main", "slurm", "--queue", "default", "--poll", "1",
         "--sbatch-args", f"--chdir={home}"],
        stdout=log, stderr=subprocess.STDOUT, env=node_env(home), cwd=home,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: "serving" in services.log(), 60, "the services daemon")
        yield home
    finally:
        os.killpg(glue.pid, signal.SIGTERM)
        glue.wait(30)
        log.close()
        services.stop()
        reset_backends()


@pytest.mark.timeout(600)
def test_the_iris_pipelines_steps_run_as_slurm_jobs(cluster_home: Path) -> None:
    from agent.store.factory import get_backend

    store: Any = get_backend()
    script = REPO_ROOT / "examples" / "iris_pipeline.py"
    launched = subprocess.run(
        [sys.executable, str(script)], cwd=script.parent, env=agent_env(cluster_home),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stdout + launched.stderr
    pipeline_id = re.search(r"as task ([0-9a-f]{32})", launched.stdout).group(1)
    pipe = wait_finished(store, pipeline_id, 540)
    glue_log = (cluster_home / "glue.log").read_text(errors="replace")
    assert pipe.status == "completed", f"{pipe.status_message}\n{glue_log[-3000:]}"
    steps = steps_of(store, pipe.id)
    assert sorted(steps) == ["step_four", "step_one", "step_three", "step_two"]
    for name, step in steps.items():
        assert step.status == "completed", (name, step.status_message)
        assert re.fullmatch(r"\d+", step.runtime["slurm_job_id"]), name
        assert step.worker is None or step.worker.startswith("slurm:")
    assert artifact_value(store, steps["step_four"].id, "accuracy") == 32
