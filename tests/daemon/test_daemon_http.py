"""``agent daemon`` against a real ``agent server`` over HTTP (AGENT_API_URL)."""

from __future__ import annotations

import signal

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
