"""The store's bell: another process's enqueue or status change wakes a listener."""

from __future__ import annotations

import multiprocessing as mp
import os

from agent.core.models import Task
from agent.store.bell import Bell
from agent.store.sql import SqlBackend


def _enqueue_later(url: str, task_id: str, ready) -> None:
    ready.wait(30)
    SqlBackend(url).enqueue(task_id, "belled")


def test_another_processs_enqueue_wakes_a_listener(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    store = SqlBackend(url)
    task = store.create_task(Task(name="t", project="p"))
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_enqueue_later, args=(url, task.id, ready))
    proc.start()
    with store.listen_for_changes() as listener:
        ready.set()
        assert listener.wait(60)  # a ring, not the timeout
    proc.join(30)
    assert proc.exitcode == 0
    assert store.claim(["belled"], "w").id == task.id


def test_a_status_change_rings_and_a_quiet_store_does_not(tmp_path) -> None:
    store = SqlBackend(f"sqlite:///{tmp_path}/store.db")
    task = store.create_task(Task(name="t", project="p"))
    with store.listen_for_changes() as listener:
        assert not listener.wait(0.05)
        store.update_task(task.id, comment="no ring for this")
        assert not listener.wait(0.05)
        store.set_status(task.id, "queued")
        assert listener.wait(5)
        assert not listener.wait(0)  # the ring was drained


def test_a_listener_whose_process_died_is_dropped(tmp_path) -> None:
    bell = Bell(str(tmp_path / "store.db"))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only registers and dies
        with bell.listening():
            os._exit(0)  # no clean-up: as a killed process leaves it
    os.waitpid(pid, 0)
    assert len(os.listdir(bell.directory)) == 1
    with bell.listening() as listener:
        bell.ring()
        assert listener.wait(5)
        assert os.listdir(bell.directory) == [listener.name]


def test_stores_without_a_file_have_no_bell(tmp_path) -> None:
    store = SqlBackend("sqlite:///:memory:")
    with store.listen_for_changes() as listener:
        assert listener is None
