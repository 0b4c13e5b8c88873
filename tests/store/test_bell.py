"""The store's bell: another process's enqueue or status change wakes a listener."""

from __future__ import annotations

import fcntl
import multiprocessing as mp
import os
import threading

import pytest

from agent.core.models import Task
from agent.pipeline.dag import Node
from agent.pipeline.launchers import QueueLauncher
from agent.store import wakeups
from agent.store.bell import Bell
from agent.store.sql import SqlBackend
from tests.services import wait_for


def _enqueue_later(url: str, task_id: str, ready) -> None:
    ready.wait(30)
    SqlBackend(url).enqueue(task_id, "belled")


def _store_and_enqueuer(tmp_path) -> tuple[SqlBackend, Task, mp.Process, object]:
    """A store with a task, and a started process that enqueues it once ``ready`` is set."""
    url = f"sqlite:///{tmp_path}/store.db"
    store = SqlBackend(url)
    task = store.create_task(Task(name="t", project="p"))
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_enqueue_later, args=(url, task.id, ready))
    proc.start()
    return store, task, proc, ready


def test_another_processs_enqueue_wakes_a_listener(tmp_path) -> None:
    store, task, proc, ready = _store_and_enqueuer(tmp_path)
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


def test_a_store_whose_bell_cannot_be_made_still_opens_and_polls(tmp_path) -> None:
    (tmp_path / "store.db.bell").write_text("not a directory")
    store = SqlBackend(f"sqlite:///{tmp_path}/store.db")
    task = store.create_task(Task(name="t", project="p"), queue="q")
    with store.listen_for_changes() as listener:
        assert listener is None
    assert store.claim(["q"], "w", timeout=1).id == task.id


def test_opening_an_existing_store_takes_no_write_lock(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    SqlBackend(url).close()
    with open(f"{tmp_path}/store.db.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a writer in another process holds it
        opened = []
        opener = threading.Thread(target=lambda: opened.append(SqlBackend(url)), daemon=True)
        opener.start()
        opener.join(30)
        assert opened, "opening waited for the write lock"


# With polling slowed to a 30 s pause, only a wake-up ends these waits in time: each
# fails (the claim gives up empty, the watcher reports nothing) if the bell stays quiet.
@pytest.fixture
def no_polling(monkeypatch) -> list[bool]:
    """Slow polling; the outcomes of the claim waits (True: woken) are listed."""
    monkeypatch.setattr(wakeups, "POLL_MIN_S", 30.0)
    monkeypatch.setattr(wakeups, "POLL_MAX_S", 30.0)
    outcomes: list[bool] = []
    wait = wakeups.ThreadClaimWaiter.wait

    def recorded(self, timeout: float) -> bool:
        outcomes.append(wait(self, timeout))
        return outcomes[-1]

    monkeypatch.setattr(wakeups.ThreadClaimWaiter, "wait", recorded)
    return outcomes


def _complete_later(url: str, task_id: str, ready) -> None:
    ready.wait(30)
    store = SqlBackend(url)
    store.set_status(task_id, "in_progress")
    store.set_status(task_id, "completed")


def test_a_claim_waiting_here_wakes_for_another_processs_enqueue(tmp_path, no_polling) -> None:
    store, task, proc, ready = _store_and_enqueuer(tmp_path)
    ready.set()
    claimed = store.claim(["belled"], "w", timeout=20)
    proc.join(30)
    assert claimed is not None and claimed.id == task.id
    assert no_polling and all(no_polling)  # woken, never timed out


def test_a_claim_waiting_in_a_thread_wakes_for_this_processs_enqueue(tmp_path, no_polling) -> None:
    store = SqlBackend(f"sqlite:///{tmp_path}/store.db")
    task = store.create_task(Task(name="t", project="p"))
    claimed = []
    waiting = threading.Thread(target=lambda: claimed.append(store.claim(["q"], "w", timeout=20)))
    waiting.start()
    wakeups_wait_registered(store, "q")
    store.enqueue(task.id, "q")
    waiting.join(30)
    assert claimed and claimed[0] is not None and claimed[0].id == task.id
    assert False not in no_polling  # never timed out (it may not have had to wait)


def test_a_pipeline_watcher_wakes_when_another_process_ends_its_step(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    store = SqlBackend(url)
    pipeline = store.create_task(Task(name="pipe", project="p"))
    step = store.create_task(Task(name="step", project="p", parent=pipeline.id))
    launcher = QueueLauncher(store, pipeline.id, min_poll=30.0, max_poll=30.0)
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_complete_later, args=(url, step.id, ready))
    proc.start()
    try:
        handle = launcher.launch(step, Node(name="step", spec=None))
        ready.set()
        assert handle.wait(timeout=20) == "completed"
    finally:
        launcher.close()
        proc.join(30)


def wakeups_wait_registered(store: SqlBackend, queue: str) -> None:
    wait_for(lambda: queue in store.claim_signals._waiting, what="the claim to wait")
