"""The Backend contract: one suite, run on SQLite, PostgreSQL and HTTP over each.

See ``conftest.py`` for the four kinds. Nothing here knows which kind it runs on,
except where the HTTP server's own reaper may get to a lapsed lease first.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import threading
import time
import uuid
from collections import deque

import pytest

from agent.core.errors import Conflict, IllegalTransition, InvalidInput, NotFound
from agent.core.models import (
    ALLOWED_TRANSITIONS,
    Artifact,
    Script,
    Task,
    TaskStatus,
    TaskTypes,
)
from agent.store.base import WORKER_STATS_KEPT, Backend
from agent.store.factory import backend_for_url
from agent.store.sql import REAP_ON_READ_S

S = TaskStatus


def make_task(backend: Backend, uid: str, **fields) -> Task:
    fields.setdefault("name", f"task-{uid}")
    fields.setdefault("project", f"proj-{uid}")
    return backend.create_task(Task(**fields))


def path_to(status: TaskStatus) -> list[TaskStatus]:
    """Shortest list of moves from ``created`` to ``status`` (breadth first)."""
    previous: dict[TaskStatus, TaskStatus | None] = {S.created: None}
    todo = deque([S.created])
    while todo:
        current = todo.popleft()
        for nxt in sorted(ALLOWED_TRANSITIONS[current], key=lambda s: s.value):
            if nxt not in previous:
                previous[nxt] = current
                todo.append(nxt)
    moves: list[TaskStatus] = []
    while status != S.created:
        moves.append(status)
        status = previous[status]
    return moves[::-1]


def task_in(backend: Backend, uid: str, status: TaskStatus) -> Task:
    task = make_task(backend, uid)
    for move in path_to(status):
        task = backend.set_status(task.id, move.value)
    assert task.status == status.value
    return task


def test_it_is_a_backend(backend: Backend) -> None:
    assert isinstance(backend, Backend)


# -- projects ------------------------------------------------------------------------
def test_create_project_is_idempotent_and_listed(backend: Backend, uid: str) -> None:
    name = f"proj-{uid}"
    assert backend.create_project(name) == name
    assert backend.create_project(name) == name
    assert backend.list_projects().count(name) == 1


def test_creating_a_task_creates_its_project(backend: Backend, uid: str) -> None:
    make_task(backend, uid, project=f"implicit-{uid}")
    assert f"implicit-{uid}" in backend.list_projects()


def test_empty_project_name_is_invalid(backend: Backend) -> None:
    with pytest.raises(InvalidInput):
        backend.create_project("")


# -- tasks -----------------------------------------------------------------------------
def test_create_and_get_round_trips_the_definition(backend: Backend, uid: str) -> None:
    parent = make_task(backend, uid)
    script = Script(
        repository="https://example.com/repo.git",
        branch="main",
        commit="a" * 40,
        entry_point="train.py",
        working_dir="src",
        diff="--- a\n+++ b\n",
        requirements=["numpy==2.0", "pandas"],
    )
    task = make_task(
        backend,
        uid,
        type=TaskTypes.training,
        parent=parent.id,
        tags=["b", "a"],
        comment="a comment",
        script=script,
        hyperparams={"Args": {"lr": 0.1, "epochs": 3}, "General": {"name": "x"}},
        configuration={"config.yaml": "a: 1\n"},
        container={"image": "python:3.11", "arguments": "--shm-size 1g", "setup_script": ""},
        runtime={"cache_key": "k1", "n": 2},
        output_uri="/tmp/out",
    )
    got = backend.get_task(task.id)
    assert got == task
    assert got.status == "created"
    assert got.type == "training"
    assert got.parent == parent.id
    assert sorted(got.tags) == ["a", "b"]
    assert got.script == script
    assert got.hyperparams == {"Args": {"lr": 0.1, "epochs": 3}, "General": {"name": "x"}}
    assert got.configuration == {"config.yaml": "a: 1\n"}
    assert got.container["image"] == "python:3.11"
    assert got.runtime == {"cache_key": "k1", "n": 2}
    assert got.output_uri == "/tmp/out"
    assert got.created > 0 and got.last_update >= got.created
    assert got.started is None and got.completed is None and got.worker is None


def test_store_sets_status_and_times_not_the_caller(backend: Backend, uid: str) -> None:
    task = make_task(backend, uid, status="completed", worker="w", created=1.0, started=2.0)
    assert task.status == "created"
    assert task.created > 1.0 and task.started is None and task.worker is None


def test_get_unknown_task_is_not_found(backend: Backend) -> None:
    with pytest.raises(NotFound):
        backend.get_task("0" * 32)


@pytest.mark.parametrize("bad_id", ["", "a/b", "x" * 65, "sp ace", "../up"])
def test_malformed_task_ids_are_invalid(backend: Backend, bad_id: str) -> None:
    with pytest.raises(InvalidInput):
        backend.create_task(Task(id=bad_id, name="bad"))


def test_duplicate_id_is_a_conflict(backend: Backend, uid: str) -> None:
    task = make_task(backend, uid)
    with pytest.raises(Conflict):
        backend.create_task(Task(id=task.id, name="again"))


def test_unknown_task_type_is_invalid(backend: Backend, uid: str) -> None:
    with pytest.raises(InvalidInput):
        make_task(backend, uid, type="not-a-type")


def test_update_task_replaces_fields(backend: Backend, uid: str) -> None:
    task = make_task(backend, uid, tags=["old"], hyperparams={"Args": {"a": 1, "b": 2}})
    updated = backend.update_task(
        task.id,
        name=f"renamed-{uid}",
        tags=["new"],
        hyperparams={"Args": {"a": 5}},
        script={"entry_point": "main.py", "requirements": ["torch"]},
        comment="changed",
        status_message="note",
    )
    assert updated.name == f"renamed-{uid}"
    assert updated.tags == ["new"]
    assert updated.hyperparams == {"Args": {"a": 5}}
    assert updated.script.entry_point == "main.py"
    assert updated.script.requirements == ["torch"]
    assert updated.comment == "changed" and updated.status_message == "note"
    assert updated.last_update >= task.last_update
    assert backend.get_task(task.id) == updated


def test_a_record_keeps_no_url_secret(backend: Backend, uid: str) -> None:
    # Whatever a client sends (an old SDK, a hand-made record), the store keeps no secret.
    secret = f"s3cr3t-{uid}"
    task = make_task(
        backend,
        uid,
        script=Script(repository=f"ssh://git:{secret}@h.example/r.git", entry_point="a.py"),
        status_message=f"cloning https://bob:{secret}@h.example/r.git",
    )
    assert task.script.repository == "ssh://git@h.example/r.git"
    updated = backend.update_task(
        task.id, script={"repository": f"https://h.example/r.git?private_token={secret}"}
    )
    assert updated.script.repository == "https://h.example/r.git"
    backend.set_status(task.id, "in_progress")
    failed = backend.set_status(
        task.id, "failed", message=f"cannot fetch https://h.example/r.git?access_token={secret}"
    )
    backend.append_logs(task.id, [f"fatal: unable to access 'https://u:{secret}@h.example/'"])

    assert failed.status_message == "cannot fetch https://h.example/r.git?access_token=***"
    assert backend.get_logs(task.id)[-1].text == "fatal: unable to access 'https://***@h.example/'"
    assert secret not in repr(backend.get_task(task.id))


def test_update_task_refuses_other_fields(backend: Backend, uid: str) -> None:
    task = make_task(backend, uid)
    with pytest.raises(InvalidInput):
        backend.update_task(task.id, status="completed")
    with pytest.raises(InvalidInput):
        backend.update_task(task.id, worker="someone")


def test_update_unknown_task_is_not_found(backend: Backend) -> None:
    with pytest.raises(NotFound):
        backend.update_task("0" * 32, name="x")


def test_merge_runtime_merges(backend: Backend, uid: str) -> None:
    task = make_task(backend, uid, runtime={"a": 1, "b": 2})
    merged = backend.merge_runtime(task.id, {"b": 3, "c": {"deep": True}})
    assert merged.runtime == {"a": 1, "b": 3, "c": {"deep": True}}
    assert backend.query_tasks(runtime={"c": {"deep": True}, "a": 1})[0].id == task.id


def test_a_runtime_value_of_any_size_is_stored_and_found(backend: Backend, uid: str) -> None:
    # PostgreSQL indexes rows of a few kB at most (compressed): a pipeline's report of 200
    # steps, each with its task's id, is more
    report = {f"step_{i}": {"status": "completed", "task": uuid.uuid4().hex} for i in range(200)}
    task = make_task(backend, uid, runtime={"report": report})
    noise = os.urandom(8_000).hex()
    merged = backend.merge_runtime(task.id, {"report": {**report, "step_0": noise}})
    assert merged.runtime["report"]["step_0"] == noise
    found = backend.query_tasks(runtime={"report": merged.runtime["report"]})
    assert [t.id for t in found] == [task.id]
    assert backend.query_tasks(runtime={"report": report}) == []


def test_clone_copies_the_definition_not_the_results(backend: Backend, uid: str) -> None:
    source = make_task(
        backend,
        uid,
        type="data_processing",
        tags=["t"],
        hyperparams={"Args": {"x": 1}},
        script=Script(entry_point="run.py", code="print(1)"),
        runtime={"keep": 1, "_private": 2},
    )
    backend.add_artifact(source.id, Artifact(name="out", uri="file:///tmp/out"))
    for move in path_to(S.failed):
        backend.set_status(source.id, move.value, message="boom")

    clone = backend.clone_task(source.id)
    assert clone.id != source.id and clone.status == "created"
    assert (clone.name, clone.project, clone.type) == (source.name, source.project, source.type)
    assert clone.tags == ["t"] and clone.hyperparams == {"Args": {"x": 1}}
    assert clone.script == source.script
    assert clone.runtime == {"keep": 1, "cloned_from": source.id}
    assert clone.artifacts == {} and clone.status_message == ""
    assert clone.started is None and clone.completed is None

    named = backend.clone_task(
        source.id, name=f"clone-{uid}", parent=source.id, project=f"other-{uid}"
    )
    assert named.name == f"clone-{uid}" and named.parent == source.id
    assert named.project == f"other-{uid}"


def test_clone_unknown_task_is_not_found(backend: Backend) -> None:
    with pytest.raises(NotFound):
        backend.clone_task("0" * 32)


def test_query_tasks_by_each_filter(backend: Backend, uid: str) -> None:
    project = f"q-{uid}"
    parent = make_task(backend, uid, project=project, name="parent")
    a = make_task(backend, uid, project=project, name="a", tags=["x"], type="training")
    b = make_task(
        backend, uid, project=project, name="b", tags=["x", "y"], parent=parent.id,
        runtime={"cache_key": f"ck-{uid}"},
    )  # fmt: skip
    backend.set_status(b.id, "queued")

    def ids(**filters) -> list[str]:
        return [t.id for t in backend.query_tasks(**filters)]

    assert set(ids(project=project)) == {parent.id, a.id, b.id}
    assert ids(project=project, name="a") == [a.id]
    assert ids(project=project, status="queued") == [b.id]
    assert set(ids(project=project, status=["created", "queued"])) == {parent.id, a.id, b.id}
    assert set(ids(project=project, tag="x")) == {a.id, b.id}
    assert ids(project=project, tag="y") == [b.id]
    assert ids(project=project, type="training") == [a.id]
    assert ids(parent=parent.id) == [b.id]
    assert ids(runtime={"cache_key": f"ck-{uid}"}) == [b.id]
    assert ids(runtime={"cache_key": "nope"}) == []
    assert ids(status=["queued"], runtime={"cache_key": f"ck-{uid}"}) == [b.id]
    assert ids(status="created", runtime={"cache_key": f"ck-{uid}"}) == []
    b2 = make_task(backend, uid, project=project, runtime={"cache_key": f"ck-{uid}", "v": [1]})
    assert ids(runtime={"cache_key": f"ck-{uid}", "v": [1]}) == [b2.id]  # two keys
    assert ids(project=project, name="a", status=["created"], tag="x", type="training") == [a.id]
    assert len(ids(project=project, limit=2)) == 2
    created = [t.created for t in backend.query_tasks(project=project)]
    assert created == sorted(created, reverse=True)  # newest first


def test_query_tasks_by_id_prefix(backend: Backend, uid: str) -> None:
    ids = [f"{uid}-a1", f"{uid}-a2", f"{uid}-b1", f"{uid}_a3", f"{uid}xa4"]
    for task_id in ids:
        make_task(backend, uid, id=task_id)

    def found(prefix: str) -> set[str]:
        return {t.id for t in backend.query_tasks(id_prefix=prefix)}

    assert found(f"{uid}-a") == {f"{uid}-a1", f"{uid}-a2"}
    assert found(f"{uid}-") == {f"{uid}-a1", f"{uid}-a2", f"{uid}-b1"}
    assert found(f"{uid}_") == {f"{uid}_a3"}  # '_' is no wildcard
    assert found(f"{uid}%") == set()  # nor is '%'
    assert found(f"{uid}-A") == set()  # ids compare case-sensitively
    assert found(f"{uid}-a1") == {f"{uid}-a1"}
    assert found(uid) == set(ids)
    assert len(backend.query_tasks(id_prefix=uid, limit=2)) == 2
    assert [t.id for t in backend.query_tasks(id_prefix=f"{uid}-b", project=f"proj-{uid}")] == [
        f"{uid}-b1"
    ]
    assert backend.query_tasks(id_prefix=f"{uid}-b", project="elsewhere") == []
    with pytest.raises(InvalidInput):
        backend.query_tasks(id_prefix="x" * 65)


def test_query_tasks_pages_with_offset_and_matches_text(backend: Backend, uid: str) -> None:
    project = f"page-{uid}"
    made = [make_task(backend, uid, project=project, name=f"n{i}") for i in range(5)]
    newest_first = [t.id for t in backend.query_tasks(project=project)]
    assert set(newest_first) == {t.id for t in made}

    def page(offset: int, limit: int = 2, **filters) -> list[str]:
        found = backend.query_tasks(project=project, offset=offset, limit=limit, **filters)
        return [t.id for t in found]

    assert page(0) + page(2) + page(4) == newest_first
    assert page(5) == [] and page(1, limit=3) == newest_first[1:4]
    tagged = make_task(backend, uid, project=project, name="plain", tags=[f"Gold-{uid}"])
    commented = make_task(backend, uid, project=project, comment=f"about RESNET_50%{uid}")

    def matching(text: str, **filters) -> set[str]:
        return {t.id for t in backend.query_tasks(project=project, text=text, **filters)}

    assert matching("N3") == {made[3].id}  # in the name, ASCII case ignored
    assert matching(f"gold-{uid}") == {tagged.id}  # a tag
    assert matching(f"resnet_50%{uid}") == {commented.id}  # the comment
    assert matching("resnet-50") == set() and matching("resnet_5_") == set()  # no wildcards
    assert matching(made[1].id[4:12]) == {made[1].id}  # part of the id
    assert matching(f"page-{uid}") == {t.id for t in (*made, tagged, commented)}  # project
    assert matching("plain", tag=f"Gold-{uid}") == {tagged.id}  # with the other filters
    assert matching("n3", tag=f"Gold-{uid}") == set()
    assert len(matching(f"page-{uid}", status="created", offset=1, limit=10)) == 6
    assert matching(f"page-{uid}", offset=7) == set()


def test_create_task_on_a_queue_enqueues_it(backend: Backend, uid: str) -> None:
    queue = f"direct-{uid}"
    low = backend.create_task(Task(name="low", project=f"proj-{uid}"), queue=queue)
    high = backend.create_task(Task(name="high", project=f"proj-{uid}"), queue=queue, priority=5)
    for task in (low, high):
        assert task.status == "queued" and task.queue == queue
        assert task.started is None and task.worker is None
        assert backend.get_task(task.id) == task
    assert backend.queue_entries(queue) == [high.id, low.id]
    assert f"proj-{uid}" in backend.list_projects()
    claimed = backend.claim([queue], f"w-{uid}")
    assert claimed.id == high.id and claimed.status == "in_progress"


def test_create_task_on_a_bad_queue_creates_nothing(backend: Backend, uid: str) -> None:
    with pytest.raises(InvalidInput):
        backend.create_task(Task(name=f"orphan-{uid}", project=f"proj-{uid}"), queue="")
    assert backend.query_tasks(name=f"orphan-{uid}") == []


def test_create_task_answers_what_get_task_reads(backend: Backend, uid: str) -> None:
    task = make_task(
        backend,
        uid,
        tags=["b", "a", "b"],
        script=Script(entry_point="x.py", requirements=("numpy",)),  # a tuple, stored as a list
        container={"image": "img", "arguments": ("--a", "--b"), "setup_script": ""},
        hyperparams={"Args": {"x": (1, 2)}},
        runtime={"k": {"nested": [1, {"deep": None}]}},
    )
    assert backend.get_task(task.id) == task


def test_delete_task_removes_it_and_what_it_owns(backend: Backend, uid: str) -> None:
    queue = f"del-{uid}"
    task = make_task(backend, uid)
    backend.append_logs(task.id, ["x"])
    backend.enqueue(task.id, queue)
    backend.delete_task(task.id)
    with pytest.raises(NotFound):
        backend.get_task(task.id)
    assert backend.queue_entries(queue) == []
    with pytest.raises(NotFound):
        backend.delete_task(task.id)


# -- status ----------------------------------------------------------------------------
LEGAL_MOVES = sorted(
    ((cur, new) for cur, targets in ALLOWED_TRANSITIONS.items() for new in targets),
    key=lambda move: (move[0].value, move[1].value),
)


def test_every_legal_move_through_set_status(backend: Backend, uid: str) -> None:
    for current, new in LEGAL_MOVES:
        task = task_in(backend, uid, current)
        moved = backend.set_status(task.id, new.value, message=f"{current}->{new}")
        assert moved.status == new.value, (current, new)
        assert moved.status_message == f"{current}->{new}"
        if new is S.in_progress:
            assert moved.started is not None and moved.completed is None
        if new.is_terminal:
            assert moved.completed is not None
        if new is S.created:
            assert moved.started is None and moved.completed is None and moved.worker is None


ILLEGAL_MOVES = [
    (S.created, S.completed),
    (S.created, S.failed),
    (S.queued, S.completed),
    (S.queued, S.queued),
    (S.in_progress, S.created),
    (S.in_progress, S.queued),
    (S.completed, S.in_progress),
    (S.completed, S.failed),
    (S.failed, S.completed),
    (S.stopped, S.in_progress),
    (S.cached, S.created),
    (S.skipped, S.completed),
    (S.published, S.created),
    (S.archived, S.queued),
]


def test_illegal_moves_raise_and_change_nothing(backend: Backend, uid: str) -> None:
    for current, new in ILLEGAL_MOVES:
        task = task_in(backend, uid, current)
        with pytest.raises(IllegalTransition) as info:
            backend.set_status(task.id, new.value)
        assert isinstance(info.value, Conflict)
        assert current.value in str(info.value) and new.value in str(info.value)
        assert backend.get_task(task.id).status == current.value


def test_unknown_status_is_an_illegal_transition(backend: Backend, uid: str) -> None:
    task = make_task(backend, uid)
    with pytest.raises(IllegalTransition):
        backend.set_status(task.id, "exploded")


def test_set_status_with_expected(backend: Backend, uid: str) -> None:
    task = make_task(backend, uid)
    with pytest.raises(Conflict):
        backend.set_status(task.id, "stopped", expected=["in_progress"])
    assert backend.get_task(task.id).status == "created"
    stopped = backend.set_status(task.id, "stopped", expected=["created", "queued"])
    assert stopped.status == "stopped"


def test_set_status_of_unknown_task_is_not_found(backend: Backend) -> None:
    with pytest.raises(NotFound):
        backend.set_status("0" * 32, "queued")


# -- queues ----------------------------------------------------------------------------
def test_create_get_and_list_queues(backend: Backend, uid: str) -> None:
    name = f"q-{uid}"
    created = backend.create_queue(name)
    assert created.name == name and created.length == 0 and created.id
    assert backend.create_queue(name).id == created.id
    assert backend.get_queue(name).id == created.id
    assert name in [q.name for q in backend.list_queues()]
    with pytest.raises(NotFound):
        backend.get_queue(f"missing-{uid}")
    with pytest.raises(InvalidInput):
        backend.create_queue("")


def test_priority_then_fifo(backend: Backend, uid: str) -> None:
    queue = f"prio-{uid}"
    a, b, c, d = (make_task(backend, uid, name=n) for n in "abcd")
    backend.enqueue(a.id, queue, priority=0)
    backend.enqueue(b.id, queue, priority=5)
    backend.enqueue(c.id, queue)
    backend.enqueue(d.id, queue, priority=5)
    assert backend.queue_entries(queue) == [b.id, d.id, a.id, c.id]
    assert backend.get_queue(queue).length == 4
    claimed = [backend.claim([queue], f"w-{uid}").id for _ in range(4)]
    assert claimed == [b.id, d.id, a.id, c.id]
    assert backend.claim([queue], f"w-{uid}") is None


def test_enqueue_sets_status_and_queue(backend: Backend, uid: str) -> None:
    queue = f"enq-{uid}"
    task = backend.enqueue(make_task(backend, uid).id, queue)
    assert task.status == "queued" and task.queue == queue
    assert queue in [q.name for q in backend.list_queues()]  # created on demand
    with pytest.raises(IllegalTransition):
        backend.enqueue(task.id, queue)  # already queued
    with pytest.raises(NotFound):
        backend.enqueue("0" * 32, queue)


def test_a_refused_enqueue_leaves_a_usable_queue(backend: Backend, uid: str) -> None:
    queue = f"refused-{uid}"
    done = task_in(backend, uid, S.completed)
    with pytest.raises(IllegalTransition):
        backend.enqueue(done.id, queue)  # the queue would be created by this enqueue
    task = backend.enqueue(make_task(backend, uid).id, queue)
    assert backend.queue_entries(queue) == [task.id]
    assert backend.claim([queue], f"w-{uid}").id == task.id


def test_failed_task_can_be_enqueued_again(backend: Backend, uid: str) -> None:
    queue = f"again-{uid}"
    task = task_in(backend, uid, S.failed)
    requeued = backend.enqueue(task.id, queue)
    assert requeued.status == "queued" and requeued.completed is None
    assert backend.claim([queue], f"w-{uid}").id == task.id


def test_dequeue(backend: Backend, uid: str) -> None:
    queue = f"deq-{uid}"
    task = backend.enqueue(make_task(backend, uid).id, queue)
    dequeued = backend.dequeue(task.id)
    assert dequeued.status == "created"
    assert backend.queue_entries(queue) == []
    with pytest.raises(Conflict):
        backend.dequeue(task.id)


def test_move_queue_entry_reorders_what_claims_take(backend: Backend, uid: str) -> None:
    queue = f"move-{uid}"
    a, b, c, d = (backend.enqueue(make_task(backend, f"{uid}{n}").id, queue).id for n in range(4))
    assert backend.move_queue_entry(c, 0) == [c, a, b, d]
    assert backend.move_queue_entry(c, 2) == [a, b, c, d]
    assert backend.move_queue_entry(a, 99) == [b, c, d, a]
    assert backend.queue_entries(queue) == [b, c, d, a]
    assert backend.get_task(a).status == "queued"
    urgent = backend.enqueue(make_task(backend, f"{uid}u").id, queue, priority=5).id
    assert backend.move_queue_entry(d, 0) == [d, urgent, b, c, a]  # takes priority 5
    assert backend.move_queue_entry(urgent, 4) == [d, b, c, a, urgent]  # takes priority 0
    claimed = [backend.claim([queue], f"w-{uid}").id for _ in range(5)]
    assert claimed == [d, b, c, a, urgent]
    with pytest.raises(Conflict):
        backend.move_queue_entry(a, 0)
    with pytest.raises(NotFound):
        backend.move_queue_entry(f"missing-{uid}", 0)


def test_leaving_queued_removes_the_entry(backend: Backend, uid: str) -> None:
    queue = f"stop-{uid}"
    task = backend.enqueue(make_task(backend, uid).id, queue)
    backend.set_status(task.id, "stopped")
    assert backend.queue_entries(queue) == []
    assert backend.claim([queue], f"w-{uid}") is None


def test_claim_takes_queues_in_the_given_order(backend: Backend, uid: str) -> None:
    first, second = f"first-{uid}", f"second-{uid}"
    backend.create_queue(first)
    low = backend.enqueue(make_task(backend, uid).id, second, priority=100)
    assert backend.claim([first, second], f"w-{uid}").id == low.id
    x = backend.enqueue(make_task(backend, uid).id, second, priority=100)
    y = backend.enqueue(make_task(backend, uid).id, first)
    assert backend.claim([first, second], f"w-{uid}").id == y.id
    assert backend.claim([first, second], f"w-{uid}").id == x.id


def test_claimed_task_is_in_progress_for_the_worker(backend: Backend, uid: str) -> None:
    queue, worker = f"cl-{uid}", f"w-{uid}"
    task = backend.enqueue(make_task(backend, uid).id, queue)
    claimed = backend.claim([queue], worker)
    assert claimed.id == task.id
    assert claimed.status == "in_progress" and claimed.worker == worker
    assert claimed.started is not None
    assert backend.get_queue(queue).length == 0


def test_claim_needs_a_queue(backend: Backend, uid: str) -> None:
    with pytest.raises(InvalidInput):
        backend.claim([], f"w-{uid}")


def test_claim_on_an_empty_queue_waits_then_gives_none(backend: Backend, uid: str) -> None:
    assert backend.claim([f"empty-{uid}"], f"w-{uid}", timeout=0.2) is None


def test_long_poll_claim_gets_a_task_enqueued_meanwhile(backend: Backend, uid: str) -> None:
    queue = f"lp-{uid}"
    backend.create_queue(queue)
    task = make_task(backend, uid)
    got: list[Task | None] = []
    claimer = threading.Thread(target=lambda: got.append(backend.claim([queue], uid, timeout=30)))
    claimer.start()
    time.sleep(0.3)  # let the claim start waiting (the test holds either way)
    backend.enqueue(task.id, queue)
    claimer.join(timeout=40)
    assert not claimer.is_alive()
    assert got and got[0] is not None and got[0].id == task.id


def test_interrupt_claims_ends_a_waiting_claim_and_takes_nothing(target, uid: str) -> None:
    queue = f"intr-{uid}"
    store, other = target.open(), target.open()
    try:
        store.create_queue(queue)
        got: list[Task | None] = []
        claimer = threading.Thread(target=lambda: got.append(store.claim([queue], uid, timeout=30)))
        claimer.start()
        time.sleep(0.3)  # let the claim start waiting (the test holds either way)
        began = time.monotonic()
        store.interrupt_claims()
        claimer.join(timeout=40)
        assert got == [None] and time.monotonic() - began < 5
        task = make_task(other, uid)
        other.enqueue(task.id, queue)
        time.sleep(0.3)  # a claim the server still held for the interrupted one would take it
        assert other.get_task(task.id).status == "queued"
        taken = other.claim([queue], f"other-{uid}", timeout=5)
        assert taken is not None and taken.id == task.id
        # A claim that starts after the interrupt waits as usual.
        began = time.monotonic()
        assert store.claim([queue], uid, timeout=0.5) is None
        assert time.monotonic() - began >= 0.4
    finally:
        store.close()
        other.close()


def test_every_waiting_claimer_gets_one_task(backend: Backend, uid: str) -> None:
    queue, other = f"herd-{uid}", f"herd-other-{uid}"
    backend.create_queue(queue)
    got: list[Task | None] = []
    claimers = [
        threading.Thread(target=lambda q=qs: got.append(backend.claim(q, uid, timeout=30)))
        for qs in ([queue], [queue], [other, queue], [queue, other])
    ]
    for claimer in claimers:
        claimer.start()
    time.sleep(0.3)  # let them wait (the test holds either way)
    tasks = [backend.enqueue(make_task(backend, uid).id, queue) for _ in claimers]
    for claimer in claimers:
        claimer.join(timeout=40)
        assert not claimer.is_alive()
    assert sorted(t.id for t in got if t) == sorted(t.id for t in tasks)  # each exactly once
    assert backend.queue_entries(queue) == []


def test_concurrent_first_use_of_a_project_and_a_queue(target, uid: str) -> None:
    project, queue, writers = f"race-{uid}", f"race-{uid}", 6
    stores = [target.open() for _ in range(writers)]
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def create(store: Backend) -> None:
        start.wait()
        try:
            store.enqueue(store.create_task(Task(name="racer", project=project)).id, queue)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert stores[0].list_projects().count(project) == 1
    assert len(stores[0].queue_entries(queue)) == writers
    for store in stores:
        store.close()


# -- workers and leases ----------------------------------------------------------------
def test_register_heartbeat_and_list_workers(backend: Backend, uid: str) -> None:
    worker_id = f"host-{uid}:gpu0/1"
    worker = backend.register_worker(worker_id, ["default", "gpu"], name="host", stats={"cpu": 1})
    assert worker.id == worker_id and worker.queues == ["default", "gpu"]
    assert worker.name == "host" and worker.stats == {"cpu": 1} and worker.tasks == []
    beat = backend.heartbeat(worker_id, stats={"cpu": 55.5, "gpus": [{"util": 3}]})
    assert beat.stats == {"cpu": 55.5, "gpus": [{"util": 3}]}
    assert beat.last_heartbeat >= worker.last_heartbeat
    assert backend.heartbeat(worker_id).stats == beat.stats  # no stats: kept
    again = backend.register_worker(worker_id, ["cpu"])
    assert again.queues == ["cpu"] and again.registered == worker.registered

    queue = f"wq-{uid}"
    task = backend.enqueue(make_task(backend, uid).id, queue)
    backend.claim([queue], worker_id)
    listed = {w.id: w for w in backend.list_workers()}
    assert listed[worker_id].tasks == [task.id]
    assert worker_id in {w.id for w in backend.list_workers(alive_within=3600)}

    backend.unregister_worker(worker_id)
    assert worker_id not in {w.id for w in backend.list_workers()}
    with pytest.raises(NotFound):
        backend.heartbeat(worker_id)


def test_worker_stats_keep_a_short_history_per_worker(backend: Backend, uid: str) -> None:
    busy, idle = f"busy-{uid}", f"idle-{uid}"
    backend.register_worker(busy, ["default"], stats={"cpu_pct": -1.0})
    backend.register_worker(idle, ["default"])  # no stats: no sample
    for n in range(WORKER_STATS_KEPT + 5):
        gpus = [{"index": 0, "utilization_pct": float(n % 100)}]
        backend.heartbeat(busy, stats={"cpu_pct": float(n), "gpus": gpus})
    backend.heartbeat(busy)  # no stats: no sample
    history = backend.get_worker_stats()
    assert idle not in history
    samples = history[busy]
    assert len(samples) == WORKER_STATS_KEPT  # the oldest went
    assert [stats["cpu_pct"] for _, stats in samples] == [
        float(n) for n in range(5, WORKER_STATS_KEPT + 5)
    ]
    assert samples[-1][1]["gpus"] == [{"index": 0, "utilization_pct": 24.0}]
    times = [ts for ts, _ in samples]
    assert times == sorted(times)

    newer = backend.get_worker_stats(after=times[-3])[busy]
    assert [stats["cpu_pct"] for _, stats in newer] == [
        float(WORKER_STATS_KEPT + 3), float(WORKER_STATS_KEPT + 4)
    ]  # fmt: skip
    assert busy not in backend.get_worker_stats(after=times[-1])

    backend.unregister_worker(busy)
    assert busy not in backend.get_worker_stats()


def test_a_lapsed_lease_fails_the_task_as_worker_lost(backend: Backend, target, uid: str) -> None:
    queue, worker = f"lease-{uid}", f"w-{uid}"
    backend.register_worker(worker, [queue])
    task = backend.enqueue(make_task(backend, uid).id, queue)
    backend.claim([queue], worker, lease_s=0.05)
    time.sleep(0.2)
    reaped = backend.reap_expired()
    if not target.is_http:  # the server's own reaper may have been first
        assert task.id in reaped
    lost = backend.get_task(task.id)
    assert lost.status == "failed" and lost.status_message == "worker lost"
    assert lost.completed is not None
    assert task.id not in {t for w in backend.list_workers() for t in w.tasks}
    assert task.id not in backend.reap_expired()


def test_a_read_after_a_lapsed_lease_sees_the_worker_lost(backend: Backend, uid: str) -> None:
    """No daemon or reaper runs: reading the task is what fails it (on the SQL stores)."""
    queue, worker = f"lapse-{uid}", f"w-{uid}"
    backend.register_worker(worker, [queue])
    task = backend.enqueue(make_task(backend, uid).id, queue)
    backend.claim([queue], worker, lease_s=0.05)
    time.sleep(REAP_ON_READ_S + 0.1)  # a read of this store may have reaped just before
    lost = backend.get_task(task.id)
    assert (lost.status, lost.status_message) == ("failed", "worker lost")
    assert task.id not in {t.id for t in backend.query_tasks(status="in_progress")}
    # The worker coming back hears what it would from the server's reaper.
    assert task.id not in backend.heartbeat(worker).tasks
    with pytest.raises(Conflict):
        backend.set_status(task.id, "completed", expected=["in_progress"])
    assert backend.get_task(task.id).status == "failed"


def test_a_heartbeat_renews_the_lease(backend: Backend, uid: str) -> None:
    queue, worker = f"renew-{uid}", f"w-{uid}"
    backend.register_worker(worker, [queue])
    task = backend.enqueue(make_task(backend, uid).id, queue)
    backend.claim([queue], worker, lease_s=1.0)
    backend.heartbeat(worker, lease_s=60)
    time.sleep(1.2)
    assert task.id not in backend.reap_expired()
    assert backend.get_task(task.id).status == "in_progress"
    backend.set_status(task.id, "completed")


# -- logs, scalars, plots ---------------------------------------------------------------
def test_logs_have_increasing_seq_and_after(backend: Backend, uid: str) -> None:
    task = make_task(backend, uid)
    assert backend.append_logs(task.id, ["one", "two"]) == 2
    assert backend.append_logs(task.id, [(1700000000.5, "error", "three")]) == 3
    assert backend.append_logs(task.id, []) == 3
    lines = backend.get_logs(task.id)
    assert [(line.seq, line.text) for line in lines] == [(1, "one"), (2, "two"), (3, "three")]
    assert lines[2].level == "error" and lines[2].ts == 1700000000.5
    assert lines[0].level == "info" and lines[0].ts > 0
    assert [line.text for line in backend.get_logs(task.id, after=2)] == ["three"]
    assert [line.seq for line in backend.get_logs(task.id, after=0, limit=1)] == [1]
    assert backend.get_logs(task.id, after=3) == []
    with pytest.raises(NotFound):
        backend.append_logs("0" * 32, ["x"])
    with pytest.raises(NotFound):
        backend.get_logs("0" * 32)


def test_logs_tail_pages_backwards_and_search(backend: Backend, uid: str) -> None:
    task = make_task(backend, uid)
    backend.append_logs(task.id, [f"line {n}" for n in range(1, 11)] + ["Epoch 100% done"])

    def seqs(**query) -> list[int]:
        return [line.seq for line in backend.get_logs(task.id, **query)]

    assert seqs(limit=3, newest=True) == [9, 10, 11]  # the tail, oldest first
    assert seqs(limit=3, newest=True, before=9) == [6, 7, 8]  # the page before it
    assert seqs(limit=3, newest=True, before=3) == [1, 2]
    assert seqs(before=4) == [1, 2, 3] and seqs(after=2, before=5) == [3, 4]
    assert seqs(contains="LINE 1") == [1, 10]  # any case
    assert seqs(contains="line 1", newest=True, limit=1) == [10]
    assert seqs(contains="100%") == [11]  # LIKE's wildcards are text here
    assert seqs(contains="_") == []
    assert seqs(contains="line", after=8, before=10) == [9]


def test_scalars_by_title_and_series(backend: Backend, uid: str) -> None:
    task = make_task(backend, uid)
    backend.report_scalars(task.id, [("loss", "train", 2, 0.5), ("loss", "train", 1, 0.9)])
    backend.report_scalars(task.id, [("loss", "val", 1, 1.0), ("acc", "val", 1, 0.25)])
    assert backend.get_scalars(task.id) == {
        "loss": {"train": [(1, 0.9), (2, 0.5)], "val": [(1, 1.0)]},
        "acc": {"val": [(1, 0.25)]},
    }
    with pytest.raises(NotFound):
        backend.get_scalars("0" * 32)


def test_non_finite_scalars_are_recorded(backend: Backend, uid: str) -> None:
    """A diverging loss is kept as it is: NaN and infinities, on every backend."""
    task = make_task(backend, uid)
    values = [0.5, float("nan"), float("inf"), float("-inf")]
    backend.report_scalars(task.id, [("loss", "train", i, v) for i, v in enumerate(values)])
    points = backend.get_scalars(task.id)["loss"]["train"]
    assert [i for i, _ in points] == [0, 1, 2, 3]
    got = [v for _, v in points]
    assert got[0] == 0.5 and math.isnan(got[1]) and got[2:] == [float("inf"), float("-inf")]
    with pytest.raises(InvalidInput):
        backend.report_scalars(task.id, [("loss", "train", 4, "not a number")])


def test_log_lines_keep_a_nul_byte_readable(backend: Backend, uid: str) -> None:
    task = make_task(backend, uid)
    backend.append_logs(task.id, ["bin\x00ary"])
    assert backend.get_logs(task.id)[0].text == "bin\ufffdary"


def test_plots_replace_on_the_same_key(backend: Backend, uid: str) -> None:
    task = make_task(backend, uid)
    backend.report_plot(task.id, "confusion", "val", 1, {"data": [1, 2]})
    backend.report_plot(task.id, "roc", "val", 1, {"data": []})
    backend.report_plot(task.id, "confusion", "val", 1, {"data": [3]})
    plots = {(p["title"], p["iteration"]): p["figure"] for p in backend.get_plots(task.id)}
    assert plots == {("confusion", 1): {"data": [3]}, ("roc", 1): {"data": []}}
    with pytest.raises(NotFound):
        backend.report_plot("0" * 32, "t", "s", 0, {})


# -- artifacts --------------------------------------------------------------------------
def test_artifacts_are_recorded_replaced_and_found_by_hash(backend: Backend, uid: str) -> None:
    task = make_task(backend, uid)
    sha = (uid * 7)[:64].ljust(64, "0")
    first = Artifact(
        name="model", uri="s3://b/model.pkl", sha256=sha, size=123, type="pickle",
        preview="LinearModel", metadata={"framework": "sklearn"},
    )  # fmt: skip
    stored = backend.add_artifact(task.id, first)
    assert stored.created > 0 and stored.name == "model"
    backend.add_artifact(task.id, Artifact(name="data", uri="file:///tmp/d.csv", size=1))
    arts = backend.get_artifacts(task.id)
    assert set(arts) == {"model", "data"}
    assert arts["model"].sha256 == sha and arts["model"].metadata == {"framework": "sklearn"}
    assert set(backend.get_task(task.id).artifacts) == {"model", "data"}

    backend.add_artifact(task.id, Artifact(name="model", uri="s3://b/model2.pkl", size=7))
    assert backend.get_artifacts(task.id)["model"].uri == "s3://b/model2.pkl"
    found = backend.find_artifact_by_hash(sha)
    assert found is None  # replaced, so that hash is gone
    backend.add_artifact(task.id, first)
    assert backend.find_artifact_by_hash(sha).uri == "s3://b/model.pkl"
    assert backend.find_artifact_by_hash("f" * 64) is None
    assert backend.find_artifact_by_hash("") is None  # unhashed artifacts match nothing


def test_unsafe_artifact_names_are_invalid(backend: Backend, uid: str) -> None:
    task = make_task(backend, uid)
    for name in ("a/b", "..", "", "x\\y"):
        with pytest.raises(InvalidInput):
            backend.add_artifact(task.id, Artifact(name=name, uri="file:///x"))
    with pytest.raises(NotFound):
        backend.add_artifact("0" * 32, Artifact(name="ok", uri="file:///x"))


# -- atomic claims across processes ------------------------------------------------------
CLAIMERS = 8
CLAIM_TASKS = 500


def _claim_until_empty(url, token, queue, worker, ready, go, results) -> None:
    """In a spawned process: claim from ``queue`` until it is empty."""
    backend = backend_for_url(url, token=token)
    claimed: list[str] = []
    ready.wait()  # every process is up: start together
    go.wait()
    while (task := backend.claim([queue], worker)) is not None:
        claimed.append(task.id)
    backend.close()
    results.put((worker, claimed))


@pytest.mark.slow
def test_concurrent_claims_take_each_task_exactly_once(target, uid: str) -> None:
    queue = f"atomic-{uid}"
    loader = backend_for_url(target.sql_url)  # fill the queue fast, straight into the store
    ids = []
    for i in range(CLAIM_TASKS):
        task = loader.create_task(Task(name=f"t{i}", project=f"atomic-{uid}"))
        loader.enqueue(task.id, queue)
        ids.append(task.id)

    ctx = mp.get_context("spawn")
    ready, go, results = ctx.Barrier(CLAIMERS + 1), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_claim_until_empty,
            args=(target.url, target.token, queue, f"w{i}-{uid}", ready, go, results),
        )
        for i in range(CLAIMERS)
    ]
    for proc in procs:
        proc.start()
    ready.wait(timeout=120)
    go.set()
    by_worker = dict(results.get(timeout=180) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0

    claimed = [task_id for got in by_worker.values() for task_id in got]
    assert len(claimed) == len(set(claimed)) == CLAIM_TASKS  # none twice
    assert set(claimed) == set(ids)  # none lost
    assert sum(1 for got in by_worker.values() if got) >= 2  # they did compete
    assert loader.queue_entries(queue) == []
    for worker, got in by_worker.items():
        for task_id in got[:20]:
            task = loader.get_task(task_id)
            assert task.status == "in_progress" and task.worker == worker
    loader.close()


def test_claims_racing_aborts_of_queued_tasks_never_fail(target, uid: str) -> None:
    # A claim takes a queue entry and its task; an abort of a queued task takes the task
    # and then its entry. Racing each other they must neither deadlock nor lose a task.
    queue = f"race-{uid}"
    claimer, aborter = target.open(), target.open()
    ids = [
        claimer.create_task(Task(name=f"r{i}", project=f"p-{uid}"), queue=queue).id
        for i in range(60)
    ]
    errors: list[BaseException] = []

    def claim_all() -> None:
        try:
            while claimer.claim([queue], f"w-{uid}") is not None:
                pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def abort_all() -> None:
        for task_id in reversed(ids):
            try:
                aborter.set_status(task_id, "stopped", "aborted", expected=["queued"])
            except Conflict:  # claimed first: fine
                pass
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=claim_all), threading.Thread(target=abort_all)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    statuses = {claimer.get_task(task_id).status for task_id in ids}
    assert statuses <= {"in_progress", "stopped"}
    assert claimer.queue_entries(queue) == []
    claimer.close()
    aborter.close()


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused_before_anything_is_written(
    backend: Backend, uid: str, bad: float
) -> None:
    """JSON has no NaN: every backend refuses one (422 over HTTP), and nothing is left
    half-written (no task created, no runtime changed, the task still claimable)."""
    project = f"nan-{uid}"
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        backend.create_task(Task(name="t", project=project, hyperparams={"Args": {"lr": bad}}))
    assert backend.query_tasks(project=project) == []
    task = make_task(backend, uid, project=project)
    with pytest.raises(InvalidInput, match=r"runtime\['x'\]"):
        backend.merge_runtime(task.id, {"x": bad})
    with pytest.raises(InvalidInput):
        backend.update_task(task.id, configuration={"c": "ok"}, hyperparams={"A": {"b": [1, bad]}})
    with pytest.raises(InvalidInput):
        backend.add_artifact(task.id, Artifact(name="a", uri="file:///a", metadata={"m": bad}))
    with pytest.raises(InvalidInput):
        backend.report_plot(task.id, "t", "s", 0, {"data": [{"y": [bad]}]})
    again = backend.get_task(task.id)
    assert again.runtime == {} and again.hyperparams == {} and again.configuration == {}
    assert backend.get_artifacts(task.id) == {} and backend.get_plots(task.id) == []
    queue = f"q-{uid}"
    backend.enqueue(task.id, queue)
    claimed = backend.claim([queue], f"w-{uid}", timeout=0)
    assert claimed is not None and claimed.id == task.id


def test_deeply_nested_values_are_refused(backend: Backend, uid: str) -> None:
    ok = make_task(backend, uid, hyperparams={"Args": _nested(62)})
    assert backend.get_task(ok.id).hyperparams["Args"] == _nested(62)
    with pytest.raises(InvalidInput, match="nested more than 64 levels"):
        make_task(backend, uid, hyperparams={"Args": _nested(253)})
    with pytest.raises(InvalidInput, match="nested more than 64 levels"):
        backend.merge_runtime(ok.id, {"deep": _nested(100)})
    assert backend.query_tasks(project=f"proj-{uid}") == [backend.get_task(ok.id)]


def test_text_that_is_not_unicode_is_refused(backend: Backend, uid: str) -> None:
    with pytest.raises(InvalidInput, match="surrogate|unicode"):
        make_task(backend, uid, name="bad \udc80 name")
    with pytest.raises(InvalidInput, match="surrogate|unicode"):
        make_task(backend, uid, hyperparams={"Args": {"k\udc80": 1}})
    assert backend.query_tasks(project=f"proj-{uid}") == []


def _pipeline_with_steps(backend: Backend, uid: str, queue: str) -> tuple[Task, dict[str, Task]]:
    controller = backend.enqueue(make_task(backend, uid, type="controller").id, f"svc-{uid}")
    backend.claim([f"svc-{uid}"], f"svc-w-{uid}", lease_s=60)
    steps = {name: make_task(backend, uid, name=name, parent=controller.id) for name in "abcd"}
    for name in "abc":
        backend.enqueue(steps[name].id, queue)
    backend.claim([queue], f"w-{uid}")  # a: running
    backend.claim([queue], f"w-{uid}")  # b: running, then done
    backend.set_status(steps["b"].id, "completed")
    return controller, steps  # c: queued; d: created, never enqueued


@pytest.mark.parametrize("how", ["stopped", "failed"])
def test_a_pipeline_that_ends_badly_stops_its_steps(backend: Backend, uid: str, how: str) -> None:
    queue = f"steps-{uid}"
    controller, steps = _pipeline_with_steps(backend, uid, queue)
    backend.set_status(controller.id, how, "aborted by user" if how == "stopped" else "boom")
    status = {name: backend.get_task(t.id) for name, t in steps.items()}
    assert status["a"].status == "stopped" and status["c"].status == "stopped"
    assert f"its pipeline {controller.id} {how}" in status["a"].status_message
    assert status["b"].status == "completed" and status["d"].status == "created"
    assert backend.queue_entries(queue) == []


def test_a_pipeline_whose_agent_is_lost_stops_its_steps(backend: Backend, uid: str) -> None:
    queue = f"steps-{uid}"
    controller = backend.enqueue(make_task(backend, uid, type="controller").id, f"svc-{uid}")
    backend.claim([f"svc-{uid}"], f"svc-w-{uid}", lease_s=0.05)
    step = backend.enqueue(make_task(backend, uid, parent=controller.id).id, queue)
    time.sleep(0.2)
    backend.reap_expired()
    assert backend.get_task(controller.id).status_message == "worker lost"
    assert backend.get_task(step.id).status == "stopped"
    assert backend.queue_entries(queue) == []
