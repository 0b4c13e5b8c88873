"""A claim waiting in the server on PostgreSQL: a claim on queues a look just found
empty waits without a look of its own, but never past the moment they stop being known
empty (agent.store.wakeups.ClaimSignals.known_empty)."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from agent.core.models import Task
from agent.server.app import create_app
from agent.store import wakeups
from agent.store.sql import SqlBackend
from tests.server.asgi import post

pytestmark = pytest.mark.postgres


def test_a_task_no_wake_up_announced_is_claimed_once_its_queue_is_no_longer_trusted_empty(
    pg_database: str, monkeypatch
) -> None:
    monkeypatch.setattr(wakeups, "EMPTY_TRUST_S", 0.3)
    monkeypatch.setattr(wakeups, "LISTENING_POLL_S", 30.0)  # no poll to find it sooner
    backend = SqlBackend(pg_database)
    holder = None
    try:
        deadline = time.monotonic() + 10
        while not backend.hears_enqueues():  # the listener connects in its own thread
            assert time.monotonic() < deadline, "the enqueue listener never connected"
            time.sleep(0.05)
        task = backend.create_task(Task(name="hidden", project="wait"), queue="wait")
        # Its row locked (an update in flight): a claim's look skips it, finds nothing.
        holder = psycopg.connect(backend._pg_pool().conninfo)
        holder.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (task.id,))
        app = create_app(backend, ui=False)
        claim = {"queues": ["wait"], "worker_id": "w", "timeout": 0.2}

        async def main() -> tuple[dict, float]:
            code, missed = await post(app, "/api/v1/queues/claim", claim)
            assert (code, missed["task"]) == (200, None)
            await asyncio.get_running_loop().run_in_executor(None, holder.rollback)
            # No enqueue follows the unlock: the next claim trusts the queue empty, and
            # waits, but only as long as that trust lasts.
            start = time.monotonic()
            code, got = await post(app, "/api/v1/queues/claim", {**claim, "timeout": 20})
            assert code == 200
            return got, time.monotonic() - start

        got, waited = asyncio.run(main())
        assert got["task"]["id"] == task.id
        assert waited < 10  # the trust (0.3 s), not the poll (30 s)
    finally:
        if holder is not None:
            holder.close()
        backend.close()
