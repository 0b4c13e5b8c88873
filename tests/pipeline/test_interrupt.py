"""Ctrl-C of a pipeline run in this process stops its steps and says so in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.pipeline.support import agent_env, pipeline_tasks, steps_of, wait_finished, wait_for

DECORATED = """
import os, time
from agent.automation.controller import PipelineDecorator


@PipelineDecorator.component(return_values=["n"], cache=False)
def slow():
    import os, time
    with open(os.environ["PID_FILE"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)
    return 1


@PipelineDecorator.pipeline(name="interrupted", project="ctrl-c", version="1")
def main():
    print(slow())


if __name__ == "__main__":
    PipelineDecorator.run_locally()
    main()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone for our purpose
        return fh.read().split(") ")[-1][0] != "Z"


@pytest.mark.timeout(180)
def test_ctrl_c_of_run_locally_stops_the_steps_and_prints_one_line(home, store, tmp_path):
    script = tmp_path / "pipe.py"
    script.write_text(textwrap.dedent(DECORATED), encoding="utf-8")
    pid_file = tmp_path / "step.pid"
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=agent_env(home, PID_FILE=str(pid_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), 90, "the step to start")
        step_pid = int(pid_file.read_text())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    [pipe] = pipeline_tasks(store, "interrupted")
    assert f"pipeline 'interrupted' interrupted ({pipe.id}): its steps were stopped" in err
    assert wait_finished(store, pipe.id, 30).status == "stopped"
    assert steps_of(store, pipe.id)["slow"].status == "stopped"
    wait_for(lambda: not _alive(step_pid), 15, "the step process to end")
