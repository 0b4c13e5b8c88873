"""``agent abort``, ``agent enqueue``, ``agent clone``."""

from __future__ import annotations

import json

import pytest

from agent.cli.control import apply_overrides, parse_override


def test_abort_queued_leaves_the_queue(invoke, backend, make_task):
    task = make_task()
    backend.enqueue(task.id, "default")
    result = invoke("abort", task.id[:8])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{task.id[:8]}: removed from queue 'default' and stopped\n"
    after = backend.get_task(task.id)
    assert after.status == "stopped" and after.status_message == "aborted by user"
    assert backend.queue_entries("default") == []


def test_abort_running_marks_it_stopped(invoke, backend, running_task):
    task = running_task(worker="w7")
    result = invoke("abort", task.id)
    assert result.exit_code == 0, result.stderr
    assert "stopped; the agent running it on worker w7 kills its process" in result.stdout
    after = backend.get_task(task.id)
    assert after.status == "stopped" and after.status_message == "aborted by user"


def test_abort_json_prints_the_stopped_task(invoke, backend, running_task):
    task = running_task()
    result = invoke("abort", task.id[:8], "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["id"] == task.id
    assert (record["status"], record["status_message"]) == ("stopped", "aborted by user")


@pytest.mark.parametrize("final", ["completed", "failed"])
def test_abort_finished_task_is_a_clear_error(invoke, backend, running_task, final):
    task = running_task()
    backend.set_status(task.id, final)
    result = invoke("abort", task.id)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: task {task.id[:8]} is already {final}: "
        "only queued or running tasks can be aborted\n"
    )
    assert backend.get_task(task.id).status == final


def test_abort_created_task_is_refused(invoke, make_task):
    result = invoke("abort", make_task().id)
    assert result.exit_code == 2 and "is created: only queued or running" in result.stderr


def test_enqueue_with_priority(invoke, backend, make_task):
    low, high = make_task(name="low"), make_task(name="high")
    assert invoke("enqueue", low.id, "--queue", "gpu").exit_code == 0
    result = invoke("enqueue", high.id[:5], "--queue", "gpu", "--priority", "5")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{high.id[:8]}: queued on 'gpu'\n"
    assert backend.queue_entries("gpu") == [high.id, low.id]


def test_enqueue_json_prints_the_queued_task(invoke, backend, make_task):
    task = make_task()
    result = invoke("enqueue", task.id[:6], "--queue", "gpu", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["id"], record["status"], record["queue"]) == (task.id, "queued", "gpu")
    assert backend.queue_entries("gpu") == [task.id]


def test_enqueue_refusals_say_what_to_do(invoke, backend, running_task):
    task = running_task()
    busy = invoke("enqueue", task.id, "--queue", "other")
    assert busy.exit_code == 2 and f"abort it first (agent abort {task.id[:8]})" in busy.stderr
    backend.set_status(task.id, "completed")
    done = invoke("enqueue", task.id, "--queue", "other")
    assert done.exit_code == 2
    assert done.stderr == (
        f"error: cannot enqueue task {task.id[:8]}: it is completed; "
        f"run a copy instead (agent clone {task.id[:8]} --queue other)\n"
    )


def test_enqueue_needs_a_queue(invoke, make_task):
    result = invoke("enqueue", make_task().id)
    assert result.exit_code == 2 and "--queue" in result.stderr


def test_clone_set_and_queue(invoke, backend, make_task):
    source = make_task(hyperparams={"Args": {"lr": 0.1, "epochs": 3}}, tags=["base"])
    result = invoke(
        "clone",
        source.id[:6],
        "--name",
        "retrain",
        "--set",
        "Args/lr=0.01",
        "--set",
        "Args/layers=[64, 32]",
        "--set",
        "Args/optimizer=adam",
        "--set",
        "General/note=a=b",
        "--queue",
        "gpu",
        "--priority",
        "3",
    )
    assert result.exit_code == 0, result.stderr
    new_id = result.stdout.strip()
    assert len(new_id) == 32 and new_id != source.id
    clone = backend.get_task(new_id)
    assert clone.name == "retrain" and clone.status == "queued" and clone.queue == "gpu"
    assert clone.hyperparams == {
        "Args": {"lr": 0.01, "epochs": 3, "layers": [64, 32], "optimizer": "adam"},
        "General": {"note": "a=b"},
    }
    assert backend.get_task(source.id).hyperparams == {"Args": {"lr": 0.1, "epochs": 3}}
    assert backend.queue_entries("gpu") == [new_id]
    assert "note: Args/layers is new" in result.stderr


def test_clone_json(invoke, backend, make_task):
    source = make_task(name="base")
    result = invoke("clone", source.id, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["name"] == "base" and data["status"] == "created" and data["id"] != source.id
    assert data == json.loads(json.dumps(backend.get_task(data["id"]).to_dict()))


@pytest.mark.parametrize("bad", ["lr=0.1", "Args/lr", "/lr=1", "Args/=1", "=1"])
def test_clone_bad_set_is_exit_2_and_makes_nothing(invoke, backend, make_task, bad):
    source = make_task()
    result = invoke("clone", source.id, "--set", bad)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "is not Section/name=value" in result.stderr and "--set" in result.stderr
    assert [t.id for t in backend.query_tasks()] == [source.id]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Args/lr=0.5", ("Args", "lr", 0.5)),
        ("Args/n=3", ("Args", "n", 3)),
        ("Args/flag=true", ("Args", "flag", True)),
        ("Args/none=null", ("Args", "none", None)),
        ('Args/s="3"', ("Args", "s", "3")),
        ("Args/s=hello world", ("Args", "s", "hello world")),
        ("Args/empty=", ("Args", "empty", "")),
        ('Args/d={"a": 1}', ("Args", "d", {"a": 1})),
        ("Data/path/with/slash=x", ("Data", "path/with/slash", "x")),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_apply_overrides_copies():
    source = {"Args": {"a": 1}}
    result, new = apply_overrides(source, [("Args", "a", 2), ("Other", "b", 3)])
    assert result == {"Args": {"a": 2}, "Other": {"b": 3}} and new == ["Other/b"]
    assert source == {"Args": {"a": 1}}


NOBODY_ON_GPU = "warning: no agent serves queue 'gpu' (start one: agent daemon --queue gpu)\n"


def test_enqueue_and_clone_say_when_nobody_serves_the_queue(invoke, backend, make_task):
    enqueued = invoke("enqueue", make_task().id, "--queue", "gpu")
    assert enqueued.exit_code == 0 and enqueued.stderr == NOBODY_ON_GPU
    cloned = invoke("clone", make_task().id, "--queue", "gpu")
    assert cloned.exit_code == 0 and cloned.stderr == NOBODY_ON_GPU
    services = invoke("enqueue", make_task().id, "--queue", "services")
    assert services.stderr == (
        "warning: no agent serves queue 'services' "
        "(start one: agent daemon --queue services --services-mode)\n"
    )

    backend.register_worker("w-gpu", ["gpu"], stats={"heartbeat_s": 5.0})
    assert invoke("enqueue", make_task().id, "--queue", "gpu").stderr == ""
    assert invoke("clone", make_task().id, "--queue", "gpu").stderr == ""
