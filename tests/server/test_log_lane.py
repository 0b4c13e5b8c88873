"""The server's log lane: on PostgreSQL, at most ``fast.LOG_LANE`` store calls of log
appends run at once (on the event loop, or on threads of their own where store calls use
threads), so a burst of them never holds every database connection (or store thread)
while a heartbeat, a claim or a status change waits behind it; and the appends that
come meanwhile go in together, each answered as if alone."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from agent.core.models import Task
from agent.server import fast
from agent.server.app import create_app
from agent.store import pg
from agent.store.sql import SqlBackend
from tests.server.asgi import post

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("on_loop", [True, False], ids=["on-loop", "threads"])
def test_a_burst_of_slow_log_appends_does_not_hold_back_a_status_change(
    pg_database: str, monkeypatch, on_loop: bool
) -> None:
    if not on_loop:  # as where greenlet is missing: store calls on worker threads
        monkeypatch.setattr(fast.on_loop, "available", lambda: False)
    backend = SqlBackend(pg_database)
    holder = None
    try:
        chatty = backend.create_task(Task(name="chatty", project="lane"))
        backend.create_task(Task(name="done", project="lane"), queue="lane")
        running = backend.claim(["lane"], "w")
        # The database is slow to take these lines in: their task's row is locked.
        holder = psycopg.connect(backend._pg_pool().conninfo)
        holder.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (chatty.id,))
        app = create_app(backend, ui=False)
        logs = f"/api/v1/tasks/{chatty.id}/logs"
        burst_size = max(pg.LOOP_CONNECTIONS, fast.STORE_THREADS) + 2

        async def main() -> tuple[int, Any]:
            burst = [
                asyncio.ensure_future(post(app, logs, {"lines": [f"line {n}"]}))
                for n in range(burst_size)
            ]
            await asyncio.sleep(0.3)  # every append has reached the store and waits
            try:
                status = f"/api/v1/tasks/{running.id}/status"
                return await asyncio.wait_for(post(app, status, {"status": "completed"}), 10)
            finally:
                await asyncio.get_running_loop().run_in_executor(None, holder.rollback)
                answers = await asyncio.gather(*burst)
                assert all(code == 200 for code, _ in answers)

        code, task = asyncio.run(main())
        assert (code, task["status"]) == (200, "completed")
        assert len(backend.get_logs(chatty.id)) == burst_size
    finally:
        if holder is not None:
            holder.close()
        backend.close()


@pytest.mark.parametrize("on_loop", [True, False], ids=["on-loop", "threads"])
def test_a_burst_of_appends_goes_in_in_batches_every_line_in_order(
    pg_database: str, monkeypatch, on_loop: bool
) -> None:
    if not on_loop:
        monkeypatch.setattr(fast.on_loop, "available", lambda: False)
    backend = SqlBackend(pg_database)
    try:
        tasks = [backend.create_task(Task(name=f"t{n}", project="burst")).id for n in range(40)]
        calls: list[int] = []
        append_many = backend.append_logs_many

        def counted(appends):
            calls.append(len(appends))
            return append_many(appends)

        monkeypatch.setattr(backend, "append_logs_many", counted)
        app = create_app(backend, ui=False)
        rounds = 5

        async def main() -> list[tuple[int, Any]]:
            return await asyncio.gather(
                *(
                    post(app, f"/api/v1/tasks/{task_id}/logs", {"lines": [f"{r}a", f"{r}b"]})
                    for r in range(rounds)
                    for task_id in tasks
                )
            )

        answers = asyncio.run(main())
        assert all(code == 200 for code, _ in answers)
        assert sum(calls) == rounds * len(tasks) and len(calls) < rounds * len(tasks) / 4
        # Each append answered its own last seq: the lines of the rounds before, and its two.
        assert [body["last_seq"] for _, body in answers] == [
            2 * (r + 1) for r in range(rounds) for _ in tasks
        ]
        for task_id in tasks:
            texts = [line.text for line in backend.get_logs(task_id)]
            assert texts == [f"{r}{half}" for r in range(rounds) for half in "ab"]
    finally:
        backend.close()
