"""``agent daemon`` as a real subprocess on SQLite: claim order, stops, crashes, GPUs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from agent.core.models import Script, Task
from tests.daemon.daemon_support import (
    DaemonProcess,
    agent_env,
    log_text,
    make_task,
    wait_file_code,
    wait_for,
    worker_of,
)
from tests.services import REPO_ROOT

pytestmark = pytest.mark.timeout(120)


def _finished(store, task_ids):
    return all(store.get_task(t).task_status.is_terminal for t in task_ids)


def _claim_order(store, tasks):
    return [t.name for t in sorted((store.get_task(t.id) for t in tasks), key=lambda t: t.started)]


def test_queues_in_priority_order_and_worker_listed_with_stats(store, start_daemon):
    tasks = [make_task(store, "print('low')", "low", name=f"low{i}") for i in range(2)]
    tasks += [make_task(store, "print('high')", "high", name=f"high{i}") for i in range(2)]
    daemon = start_daemon("--queue", "high", "--queue", "low", "--worker-id", "w-prio")

    wait_for(lambda: _finished(store, [t.id for t in tasks]), what="all tasks to finish")

    assert [store.get_task(t.id).status for t in tasks] == ["completed"] * 4
    assert _claim_order(store, tasks) == ["high0", "high1", "low0", "low1"]
    assert "high" in log_text(store, tasks[2].id)
    worker = worker_of(store, "w-prio")
    assert worker is not None and worker.queues == ["high", "low"]
    assert worker.stats["memory_total_mib"] > 0
    assert {"cpu_pct", "cpu_count", "disk_pct", "load_avg"} <= set(worker.stats)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert worker_of(store, "w-prio") is None  # unregistered on exit


def test_order_fairness_round_robins(store, start_daemon):
    tasks = [make_task(store, "pass", "a", name=f"a{i}") for i in range(2)]
    tasks += [make_task(store, "pass", "b", name=f"b{i}") for i in range(2)]
    start_daemon("--queue", "a", "--queue", "b", "--order-fairness")

    wait_for(lambda: _finished(store, [t.id for t in tasks]), what="all tasks to finish")

    assert _claim_order(store, tasks) == ["a0", "b0", "a1", "b1"]


def test_warm_stop_finishes_the_task_and_claims_no_more(store, start_daemon, tmp_path):
    started, go = tmp_path / "started", tmp_path / "go"
    code = f"open({str(started)!r}, 'w').close()\n" + wait_file_code(go, "print('finished')")
    first = make_task(store, code, "q")
    second = make_task(store, "print('second')", "q")
    daemon = start_daemon("--queue", "q")
    wait_for(started.exists, what="the task to start")

    daemon.signal(signal.SIGTERM)
    daemon.wait_log("warm stop")
    go.touch()

    assert daemon.wait() == 0
    assert store.get_task(first.id).status == "completed"
    assert "finished" in log_text(store, first.id)
    assert store.get_task(second.id).status == "queued"


def test_cold_stop_aborts_the_task_and_its_processes(store, start_daemon, tmp_path):
    pids = tmp_path / "pids"
    code = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"open({str(pids)!r}, 'w').write('%d %d' % (os.getpid(), child.pid))\n"
        "time.sleep(300)\n"
    )
    task = make_task(store, code, "q")
    daemon = start_daemon("--queue", "q")
    wait_for(lambda: pids.exists() and pids.read_text(), what="the task's pids")
    task_pids = [int(p) for p in pids.read_text().split()]

    daemon.signal(signal.SIGTERM)
    daemon.wait_log("warm stop")
    daemon.signal(signal.SIGTERM)

    assert daemon.wait() == 0
    stopped = store.get_task(task.id)
    assert (stopped.status, stopped.status_message) == ("stopped", "agent stopped")
    wait_for(lambda: not any(_alive(p) for p in task_pids), 10, "the task's processes to die")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_kill_9_kills_the_task_and_the_reaper_fails_it(store, start_daemon, tmp_path):
    pid_file = tmp_path / "pid"
    code = (
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(300)\n"
    )
    task = make_task(store, code, "q")
    daemon = start_daemon("--queue", "q", "--lease", "1")
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the task to start")
    task_pid = int(pid_file.read_text())

    daemon.signal(signal.SIGKILL)
    daemon.wait()

    wait_for(lambda: not _alive(task_pid), 10, "the task process to die with its daemon")
    wait_for(lambda: task.id in store.reap_expired(), 15, "the lease to lapse")
    lost = store.get_task(task.id)
    assert (lost.status, lost.status_message) == ("failed", "worker lost")


def test_after_kill_9_of_the_only_daemon_the_cli_sees_the_worker_lost(
    store, start_daemon, home, tmp_path
):
    """No daemon or server is left to reap: the CLI's own read of the store fails the task
    once its lease (here 2 s, renewed by heartbeats until the kill) has lapsed."""
    lease_s = 2.0
    started = tmp_path / "started"
    task = make_task(
        store, f"open({str(started)!r}, 'w').close()\nimport time\ntime.sleep(300)", "q"
    )
    daemon = start_daemon("--queue", "q", "--lease", str(lease_s))
    wait_for(started.exists, what="the task to start")

    daemon.signal(signal.SIGKILL)
    daemon.wait()
    time.sleep(lease_s + 0.2)  # the last heartbeat came before the kill

    shown = _agent_json(home, "show", task.id)
    assert (shown["status"], shown["status_message"]) == ("failed", "worker lost")
    listed = {t["id"]: t for t in _agent_json(home, "tasks", "--project", "daemon-tests")}
    assert (listed[task.id]["status"], listed[task.id]["status_message"]) == (
        "failed",
        "worker lost",
    )


def _agent_json(home: Path, *args: str):
    done = _agent(home, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_bad_task_does_not_take_the_daemon_down(store, start_daemon):
    bad = store.create_task(Task(name="bad", project="p", script=Script(entry_point="nope.py")))
    store.enqueue(bad.id, "q")
    good = make_task(store, "print('still here')", "q")
    daemon = start_daemon("--queue", "q")

    wait_for(lambda: _finished(store, [bad.id, good.id]), what="both tasks to finish")

    assert store.get_task(bad.id).status == "failed"
    assert store.get_task(good.id).status == "completed"
    assert "still here" in log_text(store, good.id)
    assert daemon.proc.poll() is None


def test_gpus_and_cpu_only_reach_the_task_env(store, start_daemon):
    code = (
        "import json, os\n"
        "print(json.dumps({k: os.environ.get(k) for k in "
        "('CUDA_VISIBLE_DEVICES', 'NVIDIA_VISIBLE_DEVICES', 'AGENT_WORKER_ID')}))\n"
    )
    gpu_task = make_task(store, code, "gpu")
    cpu_task = make_task(store, code, "cpu")
    start_daemon("--queue", "gpu", "--gpus", "0,1", "--worker-id", "w-gpu")
    start_daemon("--queue", "cpu", "--cpu-only")

    wait_for(lambda: _finished(store, [gpu_task.id, cpu_task.id]), what="both tasks")

    gpu_env = _printed_json(store, gpu_task.id)
    assert gpu_env == {
        "CUDA_VISIBLE_DEVICES": "0,1",
        "NVIDIA_VISIBLE_DEVICES": "0,1",
        "AGENT_WORKER_ID": "w-gpu",
    }
    cpu_env = _printed_json(store, cpu_task.id)
    assert (cpu_env["CUDA_VISIBLE_DEVICES"], cpu_env["NVIDIA_VISIBLE_DEVICES"]) == ("", "none")


def _printed_json(store, task_id):
    (line,) = [x for x in log_text(store, task_id).splitlines() if x.startswith("{")]
    return json.loads(line)


def _agent(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli.main", *args],
        env=agent_env(home),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_detached_daemon_and_stop(store, home):
    started = _agent(home, "daemon", "--queue", "bg", "--no-env", "--detached")
    assert started.returncode == 0, started.stderr
    pid_files = list((home / "daemons").glob("*.pid"))
    assert len(pid_files) == 1
    pid = json.loads(pid_files[0].read_text())["pid"]
    assert f"pid {pid}" in started.stdout
    try:
        task = make_task(store, "print('in the background')", "bg")
        wait_for(lambda: store.get_task(task.id).status == "completed", what="the task to run")
        assert psutil.Process(pid).ppid() != os.getpid()  # really detached

        other = _agent(home, "daemon", "--stop", "--queue", "not-this-one")
        assert "no agent daemon is running" in other.stdout
        stopped = _agent(home, "daemon", "--stop")

        assert stopped.returncode == 0, stopped.stderr
        assert f"(pid {pid}): stopped" in stopped.stdout
        assert not _alive(pid)
        assert not list((home / "daemons").glob("*.pid"))
        log = next((home / "daemons").glob("*.log")).read_text()
        assert "serving queues bg" in log
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_every_kind_of_bad_task_fails_alone_and_the_daemon_goes_on(store, home, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "main.py").write_text("print('from the repo')\n")
    _git(repo, "add", "main.py")
    _git(repo, "commit", "-qm", "first")
    commit = _git(repo, "rev-parse", "HEAD")
    bad_diff = "--- a/main.py\n+++ b/main.py\n@@ -1 +1 @@\n-not what is there\n+print(2)\n"

    def repo_task(name: str, **script) -> Task:
        fields = {"repository": str(repo), "commit": commit, "entry_point": "main.py", **script}
        task = store.create_task(Task(name=name, project="p", script=Script(**fields)))
        store.enqueue(task.id, "q")
        return task

    expected = {
        repo_task("unreachable", repository=str(tmp_path / "no-such-repo")).id: (
            "repository unreachable"
        ),
        repo_task("missing commit", commit="0" * 40).id: "commit not found",
        repo_task("bad diff", diff=bad_diff).id: "diff does not apply",
        repo_task("no entry point", entry_point="nope.py").id: "nope.py",
        repo_task("unsatisfiable", requirements=["no-such-dist-xyz==9.9.9"]).id: (
            "no-such-dist-xyz"
        ),
    }
    good = repo_task("good")
    # A real venv (no --no-env), offline, so the unsatisfiable requirement fails fast.
    (home / "agent.toml").write_text("[agent]\nno_index = true\n")
    daemon = DaemonProcess(home, ["--queue", "q"]).start()
    try:
        ids = [*expected, good.id]
        wait_for(lambda: _finished(store, ids), 120, "every task to finish")
        for task_id, reason in expected.items():
            task = store.get_task(task_id)
            assert task.status == "failed", (task.name, task.status_message)
            assert reason in task.status_message, (task.name, task.status_message)
            assert log_text(store, task_id), f"{task.name}: the log holds the details"
        assert store.get_task(good.id).status == "completed"
        assert "from the repo" in log_text(store, good.id)
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()
