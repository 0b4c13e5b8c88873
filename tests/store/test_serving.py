"""Who serves a queue: live workers, the warning when none does, a queued task's wait."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.core.models import Task
from agent.store.serving import queue_wait_line, unserved_warning, warn_if_unserved
from agent.store.sql import SqlBackend


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlBackend]:
    backend = SqlBackend(f"sqlite:///{tmp_path / 'agent.db'}")
    yield backend
    backend.close()


def queued(store: SqlBackend, queue: str = "default") -> Task:
    return store.enqueue(store.create_task(Task(name="t", project="p")).id, queue)


def test_nobody_serving_a_queue_is_a_warning_with_the_command_that_serves_it(store):
    assert unserved_warning(store, "default") == (
        "warning: no agent serves queue 'default' (start one: agent daemon --queue default)"
    )
    assert unserved_warning(store, "services") == (
        "warning: no agent serves queue 'services' "
        "(start one: agent daemon --queue services --services-mode)"
    )


def test_a_live_worker_on_the_queue_serves_it(store):
    store.register_worker("w-gpu", ["gpu"], stats={"heartbeat_s": 5.0})
    assert unserved_warning(store, "default") is not None  # it listens elsewhere
    store.register_worker("w-default", ["gpu", "default"], stats={"heartbeat_s": 5.0})
    assert unserved_warning(store, "default") is None
    store.register_worker("w-plain", ["cpu"])  # no interval reported: the default lease
    assert unserved_warning(store, "cpu") is None
    out = io.StringIO()
    assert warn_if_unserved(store, "default", out) is None and out.getvalue() == ""


def test_a_worker_that_missed_its_heartbeats_serves_nothing(store):
    store.register_worker("w-gone", ["default"], stats={"heartbeat_s": 0.02})
    time.sleep(0.1)  # three beats missed
    out = io.StringIO()
    warning = warn_if_unserved(store, "default", out)
    assert warning is not None and out.getvalue() == warning + "\n"


def test_the_wait_line_gives_the_position_and_who_serves_it(store):
    first, second = queued(store), queued(store)
    assert queue_wait_line(store, store.get_task(second.id)) == (
        "queued on 'default', position 2, no agent serves it "
        "(start one: agent daemon --queue default)"
    )
    store.register_worker("w1", ["default"], stats={"heartbeat_s": 5.0})
    assert queue_wait_line(store, first) == "queued on 'default', position 1, 1 agent serves it"
    store.register_worker("w2", ["default"], stats={"heartbeat_s": 5.0})
    store.claim(["default"], "w1")
    assert queue_wait_line(store, store.get_task(second.id)) == (
        "queued on 'default', position 1, 2 agents serve it"
    )
    assert queue_wait_line(store, store.get_task(first.id)) is None  # running now
