"""launch / TaskProcess with real subprocesses and signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from exec_support import PYTHON, REPO_ROOT, gone, wait_for_file, wait_gone

from agent.execution.process import TaskProcess, launch


class Collector:
    """An ``on_lines`` that records batches and lets a test wait for a line."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self._cond = threading.Condition()

    def __call__(self, lines: list[str]) -> None:
        with self._cond:
            self.batches.append(list(lines))
            self._cond.notify_all()

    @property
    def lines(self) -> list[str]:
        with self._cond:
            return [line for batch in self.batches for line in batch]

    def wait_for(self, text: str, timeout: float = 10.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: text in self.lines_unlocked(), timeout):
                raise AssertionError(f"{text!r} not delivered; got {self.lines_unlocked()}")

    def lines_unlocked(self) -> list[str]:
        return [line for batch in self.batches for line in batch]


def start(code: str, cwd: Path, on_lines: Collector) -> TaskProcess:
    return launch([PYTHON, "-c", textwrap.dedent(code)], cwd, dict(os.environ), on_lines)


def test_lines_arrive_while_the_task_runs(tmp_path: Path) -> None:
    go = tmp_path / "go"
    out = Collector()
    proc = start(
        f"""
        import os, sys, time
        print("first")                      # no flush: PYTHONUNBUFFERED does it
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        print("second", file=sys.stderr)
        """,
        tmp_path,
        out,
    )
    out.wait_for("first")  # delivered although the task has not finished
    assert proc.poll() is None
    go.touch()
    assert proc.wait(timeout=10) == 0
    assert out.lines == ["first", "second"]


def test_output_details(tmp_path: Path) -> None:
    out = Collector()
    proc = start(
        r"""
        import sys
        for i in range(500):
            print(f"line {i}")
        sys.stdout.write("progress 10%\rprogress 50%\rprogress 100%\n")
        sys.stdout.write("caf\xe9 \u2713\n")
        sys.stdout.write("no newline at the end")
        sys.exit(3)
        """,
        tmp_path,
        out,
    )
    assert proc.wait(timeout=10) == 3
    assert out.lines == [
        *(f"line {i}" for i in range(500)),
        "progress 100%",
        "café ✓",
        "no newline at the end",
    ]
    assert len(out.batches) < 100  # batched, not one call per line


def test_environment_and_cwd(tmp_path: Path) -> None:
    out = Collector()
    proc = launch(
        [PYTHON, "-c", "import os; print(os.getcwd()); print(os.environ['ONLY_THIS'])"],
        tmp_path,
        {"ONLY_THIS": "yes", "PATH": os.environ["PATH"]},
        out,
    )
    assert proc.wait(timeout=10) == 0
    assert out.lines == [str(tmp_path), "yes"]


def test_a_missing_program_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        launch(["/no/such/program"], tmp_path, None, Collector())


TREE = """
    import os, signal, subprocess, sys, time
    ignore = {ignore!r}
    if ignore:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sleeper = "import signal, time\\n" + (
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n" if ignore else ""
    ) + "time.sleep(120)"
    child = subprocess.Popen([sys.executable, "-c",
        "import subprocess, sys, time\\n"
        "p = subprocess.Popen([sys.executable, '-c', " + repr(sleeper) + "])\\n"
        "print(p.pid, flush=True)\\n"
        "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    grandchild = int(child.stdout.readline())
    stray = subprocess.Popen([sys.executable, "-c", sleeper], start_new_session=True)
    with open({pids!r}, "w") as fh:
        fh.write(f"{{child.pid}} {{grandchild}} {{stray.pid}}\\n")
    time.sleep(120)
"""


@pytest.mark.parametrize("ignore", [False, True], ids=["sigterm", "sigkill"])
def test_kill_tree(tmp_path: Path, ignore: bool, tree_mode: str) -> None:
    pids_file = tmp_path / "pids"
    proc = start(TREE.format(ignore=ignore, pids=str(pids_file)), tmp_path, Collector())
    child, grandchild, stray = map(int, wait_for_file(pids_file).split())
    assert os.getpgid(grandchild) == proc.pgid and os.getpgid(stray) != proc.pgid

    code = proc.kill_tree(grace=0.5 if ignore else 10.0)

    assert code == (-signal.SIGKILL if ignore else -signal.SIGTERM)
    assert wait_gone([proc.pid, child, grandchild, stray], timeout=5) == []


def test_kill_tree_after_exit_sweeps_leftovers(tmp_path: Path, tree_mode: str) -> None:
    pids_file = tmp_path / "pids"
    out = Collector()
    proc = start(
        f"""
        import subprocess, sys
        left = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pids_file)!r}, "w").write(f"{{left.pid}}\\n")
        print("bye")
        """,
        tmp_path,
        out,
    )
    leftover = int(wait_for_file(pids_file))
    assert proc.wait(timeout=10) == 0
    if tree_mode == "cgroup":  # a supervisor sweeps before it hands over the exit code
        assert not gone(leftover)
    assert proc.kill_tree(grace=5) == 0
    assert wait_gone([leftover], timeout=5) == []
    assert proc.output_done(timeout=5)
    assert out.lines == ["bye"]


#: A grandchild that leaves the task's session and, once its parent exits, its ancestry.
DOUBLE_FORK = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
middle = os.fork()
if middle == 0:
    os.setsid()
    if os.fork() == 0:
        print(os.getpid(), flush=True)
        time.sleep(120)
    os._exit(0)
os.waitpid(middle, 0)
time.sleep(120)
"""


def _first_line(lines: list[str]) -> str:
    deadline = time.monotonic() + 15
    while not lines and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lines, "no output from the task"
    return lines[0]


def test_kill_tree_reaches_a_double_forked_grandchild(tmp_path: Path, tree_mode: str) -> None:
    lines: list[str] = []
    proc = launch([PYTHON, "-c", DOUBLE_FORK], tmp_path, dict(os.environ), lines.extend)
    grandchild = int(_first_line(lines))
    assert os.getpgid(grandchild) != proc.pgid and not gone(grandchild)

    assert proc.kill_tree(grace=0.5) == -signal.SIGKILL  # it ignores SIGTERM

    assert wait_gone([grandchild], timeout=5) == []


#: A task that starts a child (same group) and waits.
WITH_A_CHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""

#: The daemon: launches ``argv[2]``, writes the task's pid and its first line to ``argv[1]``.
FAKE_DAEMON = """
import sys, time
from agent.execution.process import launch
lines = []
task = launch([sys.executable, "-c", sys.argv[2]], ".", None, lines.extend)
while not lines:
    time.sleep(0.01)
open(sys.argv[1], "w").write(f"{task.pid} {lines[0]}\\n")
time.sleep(120)
"""


@pytest.mark.parametrize("task", [WITH_A_CHILD, DOUBLE_FORK], ids=["child", "double-fork"])
def test_the_tree_dies_with_a_killed_daemon(tmp_path: Path, task: str, tree_mode: str) -> None:
    pid_file = tmp_path / "task.pid"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    daemon = subprocess.Popen([sys.executable, "-c", FAKE_DAEMON, str(pid_file), task], env=env)
    try:
        task_pid, descendant = map(int, wait_for_file(pid_file).split())
        assert not gone(task_pid) and not gone(descendant)
        daemon.kill()  # SIGKILL: the daemon gets no chance to clean up
        daemon.wait()
        # The task dies by its death signal; the rest by the watchdog (cgroup) or the
        # supervisor (subreaper).
        assert wait_gone([task_pid, descendant], timeout=10) == []
    finally:
        daemon.kill()
        daemon.wait()
