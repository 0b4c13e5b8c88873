"""``agent daemon`` against a real ``agent server`` over HTTP (AGENT_API_URL)."""

from __future__ import annotations

import signal
import time

import pytest

from agent.store.http import HttpBackend
from tests.daemon.daemon_support import log_text, make_task, node_env, wait_for, worker_of
from tests.server.live_server import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_daemon_runs_tasks_from_a_server(tmp_path, home, start_daemon):
    with LiveServer(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server") as server:
        store = HttpBackend(server.url)
        task = make_task(store, "import os\nprint('via', os.environ['AGENT_API_URL'])", "remote")
        daemon = start_daemon(
            "--queue",
            "remote",
            "--worker-id",
            "w-http",
            env=node_env(home, AGENT_API_URL=server.url),
        )

        wait_for(lambda: store.get_task(task.id).task_status.is_terminal, what="the task")

        assert store.get_task(task.id).status == "completed"
        assert f"via {server.url}" in log_text(store, task.id)
        worker = worker_of(store, "w-http")
        assert worker is not None and worker.stats["memory_total_mib"] > 0
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        assert worker_of(store, "w-http") is None
        store.close()


def test_an_idle_daemon_stops_at_once_and_a_killed_one_takes_no_task(tmp_path, home, start_daemon):
    """An idle daemon long-polls its claim for 30 s: SIGTERM interrupts the poll, and a
    daemon killed with -9 while it polls leaves no claim behind on the server that would
    take a task for nobody."""
    with LiveServer(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server") as server:
        store = HttpBackend(server.url)
        env = node_env(home, AGENT_API_URL=server.url)
        idle = start_daemon("--queue", "idle", "--worker-id", "w-idle", env=env)
        wait_for(lambda: worker_of(store, "w-idle") is not None, what="the worker")
        time.sleep(1.0)  # well into its long poll
        began = time.monotonic()
        idle.signal(signal.SIGTERM)
        assert idle.wait() == 0
        assert time.monotonic() - began < 10  # the poll alone would hold it for 30 s

        killed = start_daemon("--queue", "idle", "--worker-id", "w-killed", env=env)
        wait_for(lambda: worker_of(store, "w-killed") is not None, what="the worker")
        time.sleep(1.0)
        killed.signal(signal.SIGKILL)
        killed.wait()
        task = make_task(store, "print('for the living')", "idle")
        time.sleep(1.0)  # a claim the server still held for the dead daemon takes it now
        assert store.get_task(task.id).status == "queued"
        store.close()
