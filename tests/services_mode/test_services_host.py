"""``agent daemon --services-mode N``: N tasks at once, each in its own process."""

from __future__ import annotations

import signal

import psutil
import pytest

from tests.daemon.daemon_support import log_text, make_task, wait_file_code, wait_for

pytestmark = pytest.mark.timeout(120)


def _meet_code(me, other, go):
    """Mark ``me`` started, then wait for ``other`` to start too and for ``go``."""
    return f"open({str(me)!r}, 'w').close()\n" + wait_file_code(
        other, wait_file_code(go, "print('met')")
    )


def test_runs_n_at_once_survives_a_crash_and_waits_on_warm_stop(store, start_daemon, tmp_path):
    a, b, go = tmp_path / "a", tmp_path / "b", tmp_path / "go"
    crash = make_task(
        store, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", "services"
    )
    first = make_task(store, _meet_code(a, b, go), "services", name="first")
    second = make_task(store, _meet_code(b, a, go), "services", name="second")
    later = make_task(store, "print('later')", "services", name="later")
    host = start_daemon("--queue", "services", "--services-mode", "2")

    # Both wait for each other: they can only both start if they run at the same time.
    wait_for(lambda: a.exists() and b.exists(), what="both services to run at once")
    crashed = store.get_task(crash.id)
    assert crashed.status == "failed"
    assert "service process died" in crashed.status_message
    assert store.get_task(later.id).status == "queued"  # two running: no room

    host.signal(signal.SIGTERM)
    host.wait_log("warm stop")
    go.touch()

    assert host.wait() == 0
    for task in (first, second):
        assert store.get_task(task.id).status == "completed"
        assert "met" in log_text(store, task.id)
    assert store.get_task(later.id).status == "queued"


def test_cold_stop_aborts_every_service(store, start_daemon, tmp_path):
    marks = [tmp_path / f"s{i}" for i in range(2)]
    code = "import os, time\nopen({!r}, 'w').write(str(os.getpid()))\ntime.sleep(300)\n"
    tasks = [make_task(store, code.format(str(m)), "svc") for m in marks]
    host = start_daemon("--queue", "svc", "--services-mode")
    wait_for(lambda: all(m.exists() and m.read_text() for m in marks), what="both to start")
    pids = [int(m.read_text()) for m in marks]

    host.signal(signal.SIGTERM)
    host.wait_log("warm stop")
    host.signal(signal.SIGTERM)

    assert host.wait() == 0
    for task in tasks:
        stopped = store.get_task(task.id)
        assert (stopped.status, stopped.status_message) == ("stopped", "agent stopped")
    wait_for(lambda: not any(_alive(p) for p in pids), 10, "the task processes to die")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
