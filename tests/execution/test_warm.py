"""Warm starts (``agent.execution.warm``): what only the zygote path has.

The contract shared with cold starts (logs, exit codes, kill_tree) is in test_backends.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
from exec_support import REPO_ROOT, gone, wait_for_file, wait_gone

from agent.core.models import Script, Task
from agent.execution.backends import ProcessBackend
from agent.execution.process import TaskProcess
from agent.execution.warm import TaskZygote, WarmBackend, ZygoteError


def _task(workdir: Path, code: str) -> Task:
    (workdir / "main.py").write_text(code)
    return Task(script=Script(entry_point="main.py"))


def _run(backend, workdir: Path, code: str, env: dict[str, str] | None = None):
    lines: list[str] = []
    lock = threading.Lock()

    def on_lines(batch: list[str]) -> None:
        with lock:
            lines.extend(batch)

    prepared = backend.prepare(_task(workdir, code), workdir, log=lambda _: None)
    handle = backend.start(prepared, env or {}, on_lines)
    code_ = handle.wait(timeout=30)
    handle.kill_tree(grace=1)
    prepared.release()
    return handle, code_, lines


def _forked(handle) -> bool:
    return type(getattr(handle, "_popen", None)).__name__ == "ForkedChild"


@pytest.fixture
def warm(tmp_path: Path):
    backend = WarmBackend(ProcessBackend(), ready_timeout=60)
    yield backend
    backend.close()


def test_one_zygote_serves_many_tasks_with_their_own_env(
    warm, tmp_path: Path, tree_mode: str
) -> None:
    code = "import os; print(os.environ['AGENT_TASK_ID'], os.getpid(), os.getpgid(0))"
    pids = set()
    for n in range(3):
        handle, exit_code, lines = _run(warm, tmp_path, code, {"AGENT_TASK_ID": f"t{n}"})
        assert exit_code == 0 and _forked(handle)
        task_id, pid, pgid = lines[0].split()
        assert task_id == f"t{n}" and pgid == str(handle.pgid)  # its own session and group
        pids.add(pid)
    assert len(pids) == 3
    assert len(warm._zygotes) == 1


def test_a_new_env_value_gets_its_own_zygote(warm, tmp_path: Path) -> None:
    _run(warm, tmp_path, "pass", {"CUDA_VISIBLE_DEVICES": "0"})
    _run(warm, tmp_path, "pass", {"CUDA_VISIBLE_DEVICES": "1"})
    assert len(warm._zygotes) == 2


def test_a_cold_env_starts_the_usual_way(warm, tmp_path: Path) -> None:
    prepared = warm.prepare(_task(tmp_path, "print('cold')"), tmp_path, log=print)
    prepared.warm = False  # a venv built for this very task
    handle = warm.start(prepared, {}, lambda _: None)
    assert handle.wait(timeout=30) == 0
    handle.kill_tree(grace=1)
    assert not _forked(handle)


def test_a_failing_warm_start_falls_back_to_a_launch(
    warm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args, **kwargs):
        raise ZygoteError("no fork today")

    monkeypatch.setattr(TaskZygote, "start_task", broken)
    handle, exit_code, lines = _run(warm, tmp_path, "print('still runs')")
    assert (exit_code, lines) == (0, ["still runs"])
    assert isinstance(handle, TaskProcess) and not _forked(handle)
    assert "no fork today" in caplog.text


def test_a_zygote_that_cannot_warm_up_falls_back(tmp_path: Path) -> None:
    backend = WarmBackend(ProcessBackend(), ready_timeout=60)
    prepared = backend.prepare(_task(tmp_path, "print('ok')"), tmp_path, log=print)
    prepared.env_vars["PYTHONPATH"] = str(tmp_path / "nowhere")  # a broken agent there
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "agent").mkdir()
    (tmp_path / "nowhere" / "agent" / "__init__.py").write_text("raise ImportError('broken')")
    handle = backend.start(prepared, {}, lambda _: None)
    assert handle.wait(timeout=30) == 0
    handle.kill_tree(grace=1)
    assert not _forked(handle)
    backend.close()


def test_a_dead_zygote_is_replaced(warm, tmp_path: Path) -> None:
    _run(warm, tmp_path, "pass")
    (zygote,) = warm._zygotes.values()
    zygote.kill()
    wait_gone([zygote.pid], timeout=10)
    # the first task after the death notices it and starts the usual way
    handle, exit_code, _ = _run(warm, tmp_path, "pass")
    assert exit_code == 0


FAKE_DAEMON = """
import sys, time
from pathlib import Path
from agent.core.models import Script, Task
from agent.execution.backends import ProcessBackend
from agent.execution.warm import WarmBackend
TASK = (
    "import os, subprocess, sys, time\\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\\n"
    "print(os.getpid(), child.pid, flush=True)\\n"
    "time.sleep(120)\\n"
)
workdir = Path(sys.argv[2])
(workdir / "main.py").write_text(TASK)
backend = WarmBackend(ProcessBackend(), ready_timeout=60)
prepared = backend.prepare(Task(script=Script(entry_point="main.py")), workdir, print)
lines = []
task = backend.start(prepared, {}, lines.extend)
while not lines:
    time.sleep(0.01)
(zygote,) = backend._zygotes.values()
forked = type(task._popen).__name__
open(sys.argv[1], "w").write(f"{lines[0]} {zygote.pid} {forked}\\n")
time.sleep(120)
"""


def test_task_zygote_and_children_die_with_a_killed_daemon(tmp_path: Path, tree_mode: str) -> None:
    pid_file = tmp_path / "pids"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    daemon = subprocess.Popen(
        [sys.executable, "-c", FAKE_DAEMON, str(pid_file), str(tmp_path)], env=env
    )
    try:
        task_pid, grandchild, zygote_pid, forked = wait_for_file(pid_file, 60).split()
        pids = [int(task_pid), int(grandchild), int(zygote_pid)]
        assert forked == "ForkedChild"
        assert pids[2] in [p.pid for p in psutil.Process(pids[0]).parents()]  # forked by it
        assert not any(gone(pid) for pid in pids)
        daemon.kill()  # SIGKILL: the daemon gets no chance to clean up
        daemon.wait()
        assert wait_gone(pids, timeout=10) == []
    finally:
        daemon.kill()
        daemon.wait()
