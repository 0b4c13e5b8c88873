"""``agent tasks``, ``agent show`` and task ids given as prefixes."""

from __future__ import annotations

import json

import pytest

from agent.core.models import Artifact, Script


def test_tasks_table_lists_newest_first(invoke, backend, make_task, running_task):
    old = make_task(name="prepare", project="iris")
    queued = make_task(name="evaluate", project="iris", type="testing")
    backend.enqueue(queued.id, "cpu")
    running = running_task(name="fit", project="iris", worker="gpu-box")
    result = invoke("tasks")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "queue/worker" in lines[1] and "updated" in lines[1]
    rows = [line for line in lines if "│" in line]
    assert [row.split("│")[1].strip() for row in rows] == [
        running.id[:8],
        queued.id[:8],
        old.id[:8],
    ]
    assert "in_progress" in rows[0] and "gpu-box" in rows[0]
    assert "queued" in rows[1] and "cpu" in rows[1] and "testing" in rows[1]
    assert "created" in rows[2] and "prepare" in rows[2] and "0s ago" in rows[2]


def test_tasks_filters_and_json(invoke, backend, make_task):
    keep = make_task(name="a", project="p1", tags=["nightly"])
    make_task(name="b", project="p1")
    make_task(name="a", project="p2", tags=["nightly"])
    failed = make_task(name="c", project="p1")
    backend.set_status(failed.id, "stopped", "manual")

    def ids(*args):
        result = invoke("tasks", "--json", *args)
        assert result.exit_code == 0, result.stderr
        return [task["id"] for task in json.loads(result.stdout)]

    assert ids("--project", "p1", "--tag", "nightly") == [keep.id]
    assert ids("--project", "p1", "--name", "a") == [keep.id]
    assert ids("--status", "stopped") == [failed.id]
    assert set(ids("--status", "stopped,created", "--project", "p1")) == {
        keep.id,
        failed.id,
    } | {t.id for t in backend.query_tasks(project="p1", name="b")}
    assert len(ids("--limit", "2")) == 2

    record = json.loads(invoke("tasks", "--json", "--project", "p2").stdout)[0]
    assert record["name"] == "a" and record["tags"] == ["nightly"]
    assert {"id", "script", "hyperparams", "runtime", "status_message", "last_update"} <= set(
        record
    )


def test_tasks_empty_says_so_on_stderr(invoke):
    result = invoke("tasks", "--project", "nothing")
    assert result.exit_code == 0
    assert result.stdout == "" and "no tasks match" in result.stderr


def test_tasks_rejects_unknown_status(invoke):
    result = invoke("tasks", "--status", "running")
    assert result.exit_code == 2
    assert "'running' is not one of" in result.stderr


@pytest.fixture
def rich_task(backend, make_task):
    task = make_task(
        name="fit",
        project="iris",
        tags=["v1"],
        script=Script(repository="https://git.example/iris.git", commit="0123456789abcdef"),
        hyperparams={"Args": {"lr": 0.01, "layers": [64, 32]}, "General": {"seed": 7}},
        configuration={"model.yaml": "depth: 3\nwidth: 8\n"},
        runtime={"custom": "value"},
    )
    backend.add_artifact(
        task.id,
        Artifact(
            name="model",
            uri="file:///data/model.pkl",
            sha256="f" * 64,
            size=2048,
            type="pickle",
        ),
    )
    return backend.get_task(task.id)


def test_show_json_is_the_task_dict_with_artifacts(invoke, rich_task):
    result = invoke("show", rich_task.id, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data.pop("models") == {"input": [], "output": []}
    assert data == json.loads(json.dumps(rich_task.to_dict()))
    assert data["artifacts"]["model"]["sha256"] == "f" * 64


def test_show_panel(invoke, rich_task):
    result = invoke("show", rich_task.id[:6])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert rich_task.id in out and "iris" in out and "0123456789ab" in out
    hyper = next(line for line in out.splitlines() if " lr " in line)
    assert "Args" in hyper and "0.01" in hyper
    assert "[64, 32]" in out and "seed" in out
    assert "model.yaml (2 lines)" in out
    artifact = next(line for line in out.splitlines() if "pickle" in line)
    assert "2.0 KB" in artifact and "ffffffffffff" in artifact and "f" * 13 not in artifact
    assert "file:///data/model.pkl" in artifact
    assert "custom" in out


def test_show_pipeline_dag_and_status_message(invoke, backend, make_task):
    dag = {
        "nodes": [
            {"name": "load", "task_id": "1" * 32, "status": "completed", "parents": []},
            {"name": "train", "task_id": "2" * 32, "status": "failed", "parents": ["load"]},
        ]
    }
    controller = make_task(name="pipe", type="controller", runtime={"pipeline": dag})
    backend.update_task(controller.id, status_message="step 'train' failed: exit code 1")
    out = invoke("show", controller.id).stdout
    assert "status message: step 'train' failed: exit code 1" in out
    assert "Pipeline" in out and "2 steps: 1 completed, 1 failed" in out
    train = next(line for line in out.splitlines() if "● train " in line)
    assert "22222222" in train and "load" in train


def test_prefix_ids(invoke, make_task):
    a = make_task(id="abcd1111" + "0" * 24, name="first")
    make_task(id="abcd2222" + "0" * 24, name="second")
    make_task(id="abce3333" + "0" * 24, name="third")

    assert json.loads(invoke("show", "abcd1", "--json").stdout)["id"] == a.id
    assert json.loads(invoke("show", "ABCD1", "--json").stdout)["name"] == "first"

    ambiguous = invoke("show", "abcd")
    assert ambiguous.exit_code == 2
    assert ambiguous.stderr.count("\n") == 1
    assert "ambiguous" in ambiguous.stderr and "first" in ambiguous.stderr
    assert "second" in ambiguous.stderr

    short = invoke("show", "abc")
    assert short.exit_code == 2 and "at least 4 characters" in short.stderr

    unknown = invoke("show", "ffff")
    assert unknown.exit_code == 2
    assert (
        unknown.stderr
        == "error: no task with id or id prefix 'ffff' (list them with `agent tasks`)\n"
    )


def test_full_id_of_any_length_resolves(invoke, make_task):
    odd = make_task(id="xy", name="short id")
    assert json.loads(invoke("show", "xy", "--json").stdout)["name"] == "short id"
    assert odd.id == "xy"


def test_show_lists_scalars_with_nan(invoke, backend, make_task):
    task = make_task(name="fit", project="p")
    backend.report_scalars(task.id, [("loss", "train", 0, 0.5), ("loss", "train", 1, float("nan"))])
    result = invoke("show", task.id)
    assert result.exit_code == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if " train " in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[-5:] == ["loss", "train", "NaN", "0.5", "0.5"], row
