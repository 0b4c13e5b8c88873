"""``agent daemon --slots N`` (N tasks at once) and warm starts, as a real subprocess."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest

from tests.daemon.daemon_support import log_text, make_task, node_env, wait_file_code, wait_for

pytestmark = pytest.mark.timeout(120)


def _finished(store, task_ids):
    return all(store.get_task(t).task_status.is_terminal for t in task_ids)


def _meet(tmp_path: Path, me: str, other: str) -> str:
    """Task code: leave a file, then wait for the other task's (each needs the other)."""
    mine, theirs = tmp_path / me, tmp_path / other
    return f"open({str(mine)!r}, 'w').close()\n" + wait_file_code(theirs, f"print('{me} met')")


def test_two_slots_run_two_tasks_that_wait_for_each_other(store, start_daemon, tmp_path):
    a = make_task(store, _meet(tmp_path, "a", "b"), "q", name="a")
    b = make_task(store, _meet(tmp_path, "b", "a"), "q", name="b")
    daemon = start_daemon("--queue", "q", "--slots", "2")

    wait_for(lambda: _finished(store, [a.id, b.id]), 60, "both tasks to finish")

    assert [store.get_task(t.id).status for t in (a, b)] == ["completed", "completed"]
    assert "a met" in log_text(store, a.id) and "b met" in log_text(store, b.id)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_slots_cold_stop_aborts_every_running_task(store, start_daemon, tmp_path):
    tasks = [make_task(store, wait_file_code(tmp_path / "never"), "q") for _ in range(2)]
    daemon = start_daemon("--queue", "q", "--slots", "3")
    wait_for(
        lambda: all(store.get_task(t.id).status == "in_progress" for t in tasks),
        what="both tasks to run",
    )
    daemon.signal(signal.SIGTERM)
    daemon.wait_log("warm stop")
    daemon.signal(signal.SIGTERM)

    assert daemon.wait() == 0
    for task in tasks:
        stopped = store.get_task(task.id)
        assert (stopped.status, stopped.status_message) == ("stopped", "agent stopped")


PARENT = "import os; print('parent', os.getppid())"


def _parent_of_task(store, task_id: str) -> int:
    for line in log_text(store, task_id).splitlines():
        if line.startswith("parent "):
            return int(line.split()[1])
    raise AssertionError(f"no parent line in the log of {task_id}")


@pytest.mark.parametrize("warm", [True, False])
def test_warm_start_forks_tasks_from_a_zygote_unless_turned_off(store, start_daemon, home, warm):
    tasks = [make_task(store, PARENT, "q") for _ in range(2)]
    env = node_env(home) if warm else node_env(home, AGENT_WARM_START="false")
    daemon = start_daemon("--queue", "q", env=env)

    wait_for(lambda: _finished(store, [t.id for t in tasks]), 60, "the tasks to finish")

    assert [store.get_task(t.id).status for t in tasks] == ["completed", "completed"]
    parents = {_parent_of_task(store, t.id) for t in tasks}
    if warm:
        (zygote,) = parents
        assert zygote != daemon.pid
        assert psutil.Process(zygote).ppid() == daemon.pid
    else:
        assert parents == {daemon.pid}
