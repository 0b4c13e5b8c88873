"""Pid files and ``stop_daemons`` (the background parts are in test_daemon_e2e)."""

from __future__ import annotations

import json
import subprocess
import sys

from agent.daemon.detach import (
    pid_path,
    read_pid_file,
    remove_pid_file,
    running_daemons,
    stop_daemons,
    write_pid_file,
)


def test_pid_file_round_trip_and_removal(home):
    path = write_pid_file(home, "host:1/odd name", ["a", "b"])
    assert path == pid_path(home, "host:1/odd name") and "/" not in path.name
    record = read_pid_file(path)
    assert (record.worker_id, record.queues, record.is_alive()) == (
        "host:1/odd name",
        ["a", "b"],
        True,
    )
    assert [r.worker_id for r in running_daemons(home)] == ["host:1/odd name"]
    remove_pid_file(path)
    assert not path.exists()


def test_stale_and_broken_pid_files_are_cleaned_up(home):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = pid_path(home, "stale")
    stale.write_text(json.dumps({"pid": dead.pid, "worker_id": "stale", "create_time": 1.0}))
    broken = pid_path(home, "broken")
    broken.write_text("not json")

    assert running_daemons(home) == []
    assert not stale.exists() and not broken.exists()


def test_stop_only_signals_daemons_of_the_given_queues(home):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import psutil

        pid_path(home, "sleeper").write_text(
            json.dumps(
                {
                    "pid": sleeper.pid,
                    "worker_id": "sleeper",
                    "queues": ["gpu"],
                    "create_time": psutil.Process(sleeper.pid).create_time(),
                }
            )
        )
        assert stop_daemons(home, ["cpu"], timeout_s=1) == []
        assert sleeper.poll() is None

        (result,) = stop_daemons(home, ["gpu"], timeout_s=10)
        assert (result.worker_id, result.stopped) == ("sleeper", True)
        assert sleeper.wait(5) == -15
    finally:
        sleeper.kill()
        sleeper.wait()
