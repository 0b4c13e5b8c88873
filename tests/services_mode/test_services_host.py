"""``agent daemon --services-mode N``: N tasks at once, each in its own process."""

from __future__ import annotations

import signal

import psutil
import pytest

from tests.daemon.daemon_support import log_text, make_task, wait_file_code, wait_for

pytestmark = pytest.mark.timeout(120)


def _meet_code(me, other, go):
    """Print the parent, mark ``me`` started, then wait for ``other`` to start and ``go``."""
    return (
        "import os\nprint('parent', os.getppid(), flush=True)\n"
        f"open({str(me)!r}, 'w').close()\n"
        + wait_file_code(other, wait_file_code(go, "print('met')"))
    )


def _parent_of_task(store, task_id: str) -> int:
    for line in log_text(store, task_id).splitlines():
        if line.startswith("parent "):
            return int(line.split()[1])
    raise AssertionError(f"no parent line in the log of {task_id}")


def test_runs_n_at_once_survives_a_crash_and_waits_on_warm_stop(store, start_daemon, tmp_path):
    a, b, go = tmp_path / "a", tmp_path / "b", tmp_path / "go"
    crash = make_task(
        store, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "services"
    )
    host = start_daemon("--queue", "services", "--services-mode", "2")
    # The crash builds the tasks' environment: the services after it reuse it, and so
    # start warm (a task whose environment was just built starts cold, whichever of two
    # tasks claimed at once gets to build it).
    wait_for(lambda: store.get_task(crash.id).status == "failed", what="the crash to fail")
    assert "killed by signal SIGKILL" in store.get_task(crash.id).status_message
    first = make_task(store, _meet_code(a, b, go), "services", name="first")
    second = make_task(store, _meet_code(b, a, go), "services", name="second")
    later = make_task(store, "print('later')", "services", name="later")

    # Both wait for each other: they can only both start if they run at the same time.
    wait_for(lambda: a.exists() and b.exists(), what="both services to run at once")
    assert store.get_task(later.id).status == "queued"  # two running: no room
    # Each service is a process of its own, forked from the host's warm zygote.
    wait_for(lambda: "parent " in log_text(store, second.id), what="the parent lines")
    (zygote,) = {_parent_of_task(store, t.id) for t in (first, second)}
    assert zygote != host.pid and psutil.Process(zygote).ppid() == host.pid

    host.signal(signal.SIGTERM)
    host.wait_log("warm stop")
    go.touch()

    assert host.wait() == 0
    for task in (first, second):
        assert store.get_task(task.id).status == "completed"
        assert "met" in log_text(store, task.id)
    assert store.get_task(later.id).status == "queued"


SLEEPER = "import os, time\nopen({!r}, 'w').write(str(os.getpid()))\ntime.sleep(300)\n"


def _start_two_sleepers(store, start_daemon, tmp_path):
    marks = [tmp_path / f"s{i}" for i in range(2)]
    tasks = [make_task(store, SLEEPER.format(str(m)), "svc") for m in marks]
    host = start_daemon("--queue", "svc", "--services-mode", "--lease", "1")
    wait_for(lambda: all(m.exists() and m.read_text() for m in marks), what="both to start")
    return host, tasks, [int(m.read_text()) for m in marks]


def test_cold_stop_aborts_every_service(store, start_daemon, tmp_path):
    host, tasks, pids = _start_two_sleepers(store, start_daemon, tmp_path)
    children = psutil.Process(host.pid).children(recursive=True)

    host.signal(signal.SIGTERM)
    host.wait_log("warm stop")
    host.signal(signal.SIGTERM)

    assert host.wait() == 0
    for task in tasks:
        stopped = store.get_task(task.id)
        assert (stopped.status, stopped.status_message) == ("stopped", "agent stopped")
    wait_for(lambda: not any(_alive(p) for p in pids), 10, "the task processes to die")
    wait_for(lambda: not any(_alive(c.pid) for c in children), 10, "the host's children to die")


def test_kill_9_of_the_host_leaves_no_service_process(store, start_daemon, tmp_path):
    host, tasks, pids = _start_two_sleepers(store, start_daemon, tmp_path)

    host.signal(signal.SIGKILL)
    host.wait()

    wait_for(lambda: not any(_alive(p) for p in pids), 10, "the task processes to die")

    def all_lost():
        store.reap_expired()
        return all(store.get_task(t.id).status == "failed" for t in tasks)

    wait_for(all_lost, 15, "the leases to lapse")
    assert {store.get_task(t.id).status_message for t in tasks} == {"worker lost"}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
