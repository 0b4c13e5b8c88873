"""``agent server --workers 2`` on PostgreSQL: two server processes on one port.

Each request goes to whichever process accepted its connection, so the tests pin
keep-alive connections to each process (``/api/v1/health`` names the one answering)
and check what must hold across them: every task is claimed exactly once, and a claim
waiting in one process is woken by an enqueue that reaches the other. Polling of waiting
claims is slowed to an hour (``AGENT_LISTENING_POLL_S``) there, so only a wake-up
(LISTEN/NOTIFY) can end such a wait before its timeout.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agent.core.models import Task
from agent.store.factory import backend_for_url
from tests.server.live_server import LiveServer
from tests.services import REPO_ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TASKS = 120
CONNECTIONS_PER_WORKER = 3


class WorkersServer(LiveServer):
    def env(self) -> dict[str, str]:
        return {**super().env(), "AGENT_LISTENING_POLL_S": "3600"}


@pytest.fixture(scope="module")
def server(pg_database: str, tmp_path_factory) -> Iterator[WorkersServer]:
    live = WorkersServer(
        pg_database, tmp_path_factory.mktemp("workers"), extra_args=("--workers", "2")
    )
    with live:
        yield live


class Pinned:
    """A keep-alive connection to one server process."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.pid = self.call("GET", "/health")["pid"]

    def wait_until_listening(self) -> None:
        """Until this process hears other processes' enqueues (its listener connected)."""
        for _ in range(1000):
            if self.call("GET", "/health")["enqueues_heard"]:
                return
            time.sleep(0.02)
        pytest.fail(f"server process {self.pid} never listened for enqueues")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data else {}
        self.conn.request(method, f"/api/v1{path}", body=data, headers=headers)
        answer = self.conn.getresponse()
        payload = json.loads(answer.read())
        assert answer.status == 200, payload
        return payload

    def claim(self, queue: str, timeout: float = 0.0) -> dict | None:
        body = {"queues": [queue], "worker_id": f"w-{self.pid}", "timeout": timeout}
        return self.call("POST", "/queues/claim", body)["task"]


def pinned_by_worker(port: int, per_worker: int) -> dict[int, list[Pinned]]:
    """``per_worker`` connections to each of the two processes."""
    by_pid: dict[int, list[Pinned]] = {}
    for _ in range(200):
        conn = Pinned(port)
        if len(by_pid.setdefault(conn.pid, [])) < per_worker:
            by_pid[conn.pid].append(conn)
        else:
            conn.conn.close()
        if len(by_pid) == 2 and all(len(c) == per_worker for c in by_pid.values()):
            return by_pid
    pytest.fail(f"connections reached {sorted(by_pid)}, not two worker processes")


def test_each_task_is_claimed_exactly_once_across_processes(server: WorkersServer) -> None:
    queue = f"race-{uuid.uuid4().hex[:8]}"
    store = backend_for_url(server.url)
    ids = {
        store.create_task(Task(name=f"t{i}", project="race"), queue=queue).id for i in range(TASKS)
    }
    by_pid = pinned_by_worker(server.port, CONNECTIONS_PER_WORKER)
    claimed: dict[int, list[str]] = {pid: [] for pid in by_pid}
    go = threading.Barrier(2 * CONNECTIONS_PER_WORKER)

    def claim_until_empty(conn: Pinned) -> None:
        go.wait()
        while (task := conn.claim(queue)) is not None:
            claimed[conn.pid].append(task["id"])

    threads = [
        threading.Thread(target=claim_until_empty, args=(conn,))
        for conns in by_pid.values()
        for conn in conns
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    every = [task_id for got in claimed.values() for task_id in got]
    assert len(every) == len(set(every)) == TASKS  # none twice
    assert set(every) == ids  # none lost
    assert all(claimed.values()), "both processes claimed"
    assert store.queue_entries(queue) == []


@pytest.mark.parametrize("waiting_on", [0, 1])
def test_a_claim_waiting_in_one_process_is_woken_by_an_enqueue_in_the_other(
    server: WorkersServer, waiting_on: int
) -> None:
    queue = f"wake-{uuid.uuid4().hex[:8]}"
    by_pid = pinned_by_worker(server.port, 1)
    waiter, enqueuer = (by_pid[pid][0] for pid in sorted(by_pid, reverse=bool(waiting_on)))
    waiter.wait_until_listening()  # then its claims poll hourly: only a wake-up ends the wait
    task = enqueuer.call("POST", "/tasks", Task(name="wake", project="wake").to_json_dict())
    got: list[dict | None] = []
    claimer = threading.Thread(target=lambda: got.append(waiter.claim(queue, timeout=30)))
    claimer.start()
    time.sleep(0.5)  # let the claim wait (the test holds either way)
    enqueuer.call("POST", f"/tasks/{task['id']}/enqueue", {"queue": queue})
    claimer.join(timeout=40)
    assert got and got[0] is not None and got[0]["id"] == task["id"]


def test_workers_on_sqlite_are_refused(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent.server", "--workers", "2", "--db", f"sqlite:///{tmp_path}/a.db"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--workers 2 needs PostgreSQL" in done.stderr
