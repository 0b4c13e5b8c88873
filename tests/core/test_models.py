"""TaskStatus, transition() and the records' JSON round trip."""

from __future__ import annotations

import itertools
import json

import pytest

from agent.core.errors import ERRORS_BY_NAME, Conflict, IllegalTransition
from agent.core.models import (
    ALLOWED_TRANSITIONS,
    RUNS_ON_KEY,
    SUCCESS_STATES,
    TERMINAL_STATES,
    Artifact,
    Script,
    Task,
    TaskStatus,
    TaskTypes,
    new_id,
    transition,
)

S = TaskStatus
ALL_MOVES = list(itertools.product(TaskStatus, TaskStatus))
LEGAL = {(cur, new) for cur, targets in ALLOWED_TRANSITIONS.items() for new in targets}


def test_every_status_has_its_rules() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(TaskStatus)


@pytest.mark.parametrize("current, new", sorted(LEGAL, key=str))
def test_legal_moves_return_the_new_status(current: TaskStatus, new: TaskStatus) -> None:
    assert transition(current, new) is new
    assert transition(current.value, new.value) is new  # plain strings too


@pytest.mark.parametrize("current, new", [m for m in ALL_MOVES if m not in LEGAL], ids=str)
def test_every_other_move_is_refused(current: TaskStatus, new: TaskStatus) -> None:
    with pytest.raises(IllegalTransition) as info:
        transition(current, new, task_id="abc")
    assert info.value.current == current.value and info.value.new == new.value
    assert "abc" in str(info.value)


def test_the_lifecycle_of_design_md() -> None:
    assert transition(S.created, S.queued) is S.queued
    assert transition(S.queued, S.in_progress) is S.in_progress
    for end in (S.completed, S.failed, S.stopped):
        assert transition(S.in_progress, end) is end
    for end in (S.failed, S.stopped):  # retry: back on a queue, or reset
        assert transition(end, S.queued) is S.queued
        assert transition(end, S.created) is S.created
    assert transition(S.archived, S.created) is S.created


def test_no_status_moves_to_itself() -> None:
    for status in TaskStatus:
        with pytest.raises(IllegalTransition):
            transition(status, status)


def test_unknown_statuses_are_refused() -> None:
    with pytest.raises(IllegalTransition):
        transition("created", "exploded")
    with pytest.raises(IllegalTransition):
        transition("limbo", "created")


def test_illegal_transition_is_a_conflict_known_by_name() -> None:
    assert issubclass(IllegalTransition, Conflict)
    assert IllegalTransition.http_status == 409
    assert ERRORS_BY_NAME["IllegalTransition"] is IllegalTransition


def test_terminal_and_success_states() -> None:
    assert TERMINAL_STATES == {S.completed, S.failed, S.stopped, S.cached, S.skipped, S.published}
    assert SUCCESS_STATES == {S.completed, S.cached, S.published}
    assert SUCCESS_STATES <= TERMINAL_STATES
    assert S.cached.is_success and not S.failed.is_success
    assert S.failed.is_terminal and not S.in_progress.is_terminal and not S.archived.is_terminal
    # nothing running may end without passing through a terminal state
    assert ALLOWED_TRANSITIONS[S.in_progress] <= TERMINAL_STATES


def test_task_round_trips_through_json() -> None:
    task = Task(
        name="train",
        project="p",
        type=TaskTypes.training,
        tags=["a"],
        script=Script(repository="r", entry_point="e.py", requirements=["x"]),
        hyperparams={"Args": {"lr": 0.1}},
        artifacts={"m": Artifact(name="m", uri="file:///m", size=3)},
        runtime={"k": [1, 2]},
    )
    data = json.loads(json.dumps(task.to_dict()))
    assert data["type"] == "training" and data["status"] == "created"
    again = Task.from_dict({**data, "unknown_key": 1})
    assert again == Task.from_dict(task.to_dict())
    assert again.script.entry_point == "e.py" and again.artifacts["m"].size == 3
    assert again.task_status is S.created


def test_from_dict_fills_a_missing_container() -> None:
    assert Task.from_dict({"name": "x", "container": None}).container["image"] == ""


def test_new_ids_are_unique_hex() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_the_shown_worker_is_the_node_recorded_by_the_lease_holder() -> None:
    runs_on = {RUNS_ON_KEY: {"worker": "glue", "node": "slurm:n1"}}
    task = Task(worker="glue", runtime=runs_on)
    assert (task.shown_worker, task.worker_label) == ("slurm:n1", "slurm:n1 (via glue)")
    claimed_since = Task(worker="daemon-2", runtime=runs_on)  # enqueued again: stale
    assert (claimed_since.shown_worker, claimed_since.worker_label) == ("daemon-2", "daemon-2")
    assert Task(worker="daemon-2").worker_label == "daemon-2"
