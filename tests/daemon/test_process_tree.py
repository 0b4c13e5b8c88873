"""A task's whole process tree dies: ``agent abort`` and ``kill -9`` of a real daemon reach a
grandchild that double-forked out of the task's session, whichever way the tree is held
(a cgroup per task, or the per-task subreaper where cgroup v2 is not writable)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from agent.execution.cgroup import CGROUP_ENV, cgroup_unavailable_reason
from tests.daemon.daemon_support import bare_python, make_task, node_env, wait_for

pytestmark = pytest.mark.timeout(120)

#: The task: a grandchild in a session of its own (setsid, then its parent exits, so it is
#: nobody's descendant), its pid in a file; it and the task ignore SIGTERM when asked to.
DOUBLE_FORK = """
import os, signal, time
if {ignore}:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
middle = os.fork()
if middle == 0:
    os.setsid()
    if os.fork() == 0:
        with open({tmp!r}, "w") as fh:
            fh.write(str(os.getpid()))
        os.rename({tmp!r}, {pid_file!r})
        time.sleep(300)
    os._exit(0)
os.waitpid(middle, 0)
print("double-forked", flush=True)
time.sleep(300)
"""


@pytest.fixture(params=["cgroup", "subreaper"])
def tree_env(request, home: Path) -> dict[str, str]:
    """The daemon's environment, holding task trees the way the parameter names."""
    if request.param == "cgroup":
        reason = cgroup_unavailable_reason()
        if reason is not None:
            pytest.skip(f"no cgroup per task here: {reason}")
        return node_env(home)
    return node_env(home, **{CGROUP_ENV: "0"})


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start(store, start_daemon, tmp_path: Path, env: dict[str, str], ignore: bool = False):
    pid_file = tmp_path / "grandchild.pid"
    code = DOUBLE_FORK.format(ignore=ignore, tmp=str(tmp_path / "tmp.pid"), pid_file=str(pid_file))
    task = make_task(store, code, "q")
    daemon = start_daemon("--queue", "q", "--lease", "2", env=env)
    wait_for(pid_file.exists, 60, "the grandchild's pid")
    grandchild = int(pid_file.read_text())
    assert _alive(grandchild)
    return task, daemon, grandchild


def _abort(home: Path, task_id: str) -> None:
    subprocess.run(
        [str(bare_python()), "-m", "agent.cli.main", "abort", task_id],
        env=node_env(home),
        cwd=home,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_abort_kills_a_setsid_grandchild(store, start_daemon, tmp_path, home, tree_env):
    task, daemon, grandchild = _start(store, start_daemon, tmp_path, tree_env)

    _abort(home, task.id)

    wait_for(lambda: not _alive(grandchild), 15, "the grandchild to die with its task")
    wait_for(lambda: store.get_task(task.id).status == "stopped", 15, "the task to be stopped")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_abort_kills_a_tree_that_ignores_sigterm_after_the_grace(
    store, start_daemon, tmp_path, home, tree_env
):
    (home / "agent.toml").write_text("[agent]\nkill_grace = 1.0\n")
    task, daemon, grandchild = _start(store, start_daemon, tmp_path, tree_env, ignore=True)

    _abort(home, task.id)

    wait_for(lambda: not _alive(grandchild), 15, "SIGKILL after the grace period")
    assert store.get_task(task.id).status == "stopped"
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_kill_9_of_the_daemon_kills_a_setsid_grandchild(store, start_daemon, tmp_path, tree_env):
    _, daemon, grandchild = _start(store, start_daemon, tmp_path, tree_env, ignore=True)

    daemon.signal(signal.SIGKILL)
    daemon.wait()

    wait_for(lambda: not _alive(grandchild), 15, "the grandchild to die with the daemon")
