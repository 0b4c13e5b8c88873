"""``wait_for_stop``: the one question an agent asks for all its running tasks, on the four
stores (see ``conftest.py``).

A wait that is not woken answers ``{}`` at its timeout, so each test that expects a wake-up
fails (rather than hangs) when none comes.
"""

from __future__ import annotations

import multiprocessing as mp
import threading

import pytest

from agent.core.errors import InvalidInput
from agent.core.models import Task, TaskStatus, TaskTypes
from agent.store.base import Backend
from agent.store.factory import backend_for_url

S = TaskStatus
#: Long enough never to be reached by a wake-up that works.
WAIT_S = 30.0


def running_task(backend: Backend, uid: str, **fields) -> Task:
    queue = f"q-{uid}"
    task = backend.create_task(Task(name=f"t-{uid}", project=f"p-{uid}", **fields), queue=queue)
    claimed = backend.claim([queue], f"w-{uid}")
    assert claimed is not None and claimed.id == task.id
    return claimed


def wait_in_thread(backend: Backend, task_ids: list[str]) -> tuple[threading.Thread, list]:
    answers: list = []
    thread = threading.Thread(
        target=lambda: answers.append(backend.wait_for_stop(task_ids, WAIT_S))
    )
    thread.start()
    return thread, answers


def test_names_only_the_tasks_no_longer_running(backend: Backend, uid: str) -> None:
    running = running_task(backend, uid)
    ended = running_task(backend, uid + "e")
    backend.set_status(ended.id, S.completed.value)
    created = backend.create_task(Task(name="c", project=f"p-{uid}"))
    answer = backend.wait_for_stop([running.id, ended.id, created.id, f"missing-{uid}"])
    assert answer == {ended.id: "completed", created.id: "created", f"missing-{uid}": None}


def test_a_wait_answers_at_once_when_a_task_already_stopped(backend: Backend, uid: str) -> None:
    task = running_task(backend, uid)
    backend.set_status(task.id, S.stopped.value, "aborted")
    assert backend.wait_for_stop([task.id], timeout=WAIT_S) == {task.id: "stopped"}


def test_a_wait_with_nothing_stopping_answers_empty_at_its_timeout(backend: Backend, uid: str):
    task = running_task(backend, uid)
    assert backend.wait_for_stop([task.id], timeout=0.3) == {}
    assert backend.wait_for_stop([], timeout=0.3) == {}


def test_an_abort_wakes_the_wait_on_its_task_only(backend: Backend, target, uid: str) -> None:
    tasks = [running_task(backend, f"{uid}{i}") for i in range(3)]
    thread, answers = wait_in_thread(backend, [t.id for t in tasks])
    other = target.open()  # another client of the same store
    try:
        other.set_status(tasks[1].id, S.stopped.value, "aborted")
        thread.join(WAIT_S + 15)
    finally:
        other.close()
    assert answers == [{tasks[1].id: "stopped"}]


def _abort(url: str, task_id: str) -> None:
    store = backend_for_url(url)
    store.set_status(task_id, S.stopped.value, "aborted from another process")
    store.close()


def test_a_change_made_by_another_process_wakes_the_wait(backend: Backend, target, uid: str):
    """Straight into the SQL store, past the server's process (or this one's)."""
    task = running_task(backend, uid)
    thread, answers = wait_in_thread(backend, [task.id])
    process = mp.get_context("spawn").Process(target=_abort, args=(target.sql_url, task.id))
    process.start()
    process.join(60)
    thread.join(WAIT_S + 15)
    assert process.exitcode == 0
    assert answers == [{task.id: "stopped"}]


def test_completion_and_a_pipeline_abort_wake_the_waits(backend: Backend, uid: str) -> None:
    """A task ending by itself wakes the wait too; a pipeline stopped takes its running
    steps along, and the waits on them hear it."""
    done = running_task(backend, uid)
    thread, answers = wait_in_thread(backend, [done.id])
    backend.set_status(done.id, S.completed.value)
    thread.join(WAIT_S + 15)
    assert answers == [{done.id: "completed"}]

    controller = running_task(backend, uid + "c", type=TaskTypes.controller)
    step = running_task(backend, uid + "s", parent=controller.id)
    thread, answers = wait_in_thread(backend, [step.id])
    backend.set_status(controller.id, S.stopped.value, "aborted")
    thread.join(WAIT_S + 15)
    assert answers == [{step.id: "stopped"}]


def test_too_many_ids_or_one_id_as_text_are_refused(backend: Backend, uid: str) -> None:
    with pytest.raises(InvalidInput):
        backend.wait_for_stop([f"{uid}-{i}" for i in range(1001)])
    with pytest.raises(InvalidInput):
        backend.wait_for_stop(f"task-{uid}")  # type: ignore[arg-type]
