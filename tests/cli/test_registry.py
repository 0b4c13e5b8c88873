"""``agent models``, ``agent datasets`` and what ``agent show`` says of models and datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.store.factory import reset_backends


@pytest.fixture
def registry(agent_home: Path, tmp_path: Path):
    """A dataset with a child version, and a task with an output and an input model."""
    from agent import Dataset, InputModel, OutputModel, Task

    src = tmp_path / "src"
    src.mkdir()
    for i in range(25):
        (src / f"f{i:02}.csv").write_text(f"{i}\n")
    parent = Dataset.create(dataset_name="raw", dataset_project="data")
    parent.add_files(src)
    parent.finalize(auto_upload=True)
    child = Dataset.create(dataset_name="raw", dataset_project="data", parent_datasets=[parent])
    (src / "f00.csv").write_text("changed\n")
    child.add_files(src / "f00.csv")
    child.remove_files("f01.csv")
    child.finalize(auto_upload=True)
    train = Task.create(project_name="data", task_name="train")
    (tmp_path / "m.pkl").write_bytes(b"model")
    model = OutputModel(task=train, name="clf", framework="ScikitLearn", tags=["best"])
    model.update_weights(tmp_path / "m.pkl")
    pre = InputModel.import_model(str(tmp_path / "m.pkl"), name="base", project="zoo")
    pre.connect(train, name="warm_start")
    reset_backends()
    return {"parent": parent.id, "child": child.id, "task": train.id, "model": model.id,
            "base": pre.id}  # fmt: skip


def test_models_lists_the_registry(invoke, registry):
    result = invoke("models")
    assert result.exit_code == 0, result.stderr
    assert "clf" in result.stdout and "ScikitLearn" in result.stdout and "best" in result.stdout
    listed = json.loads(invoke("models", "--project", "data", "--json").stdout)
    assert [m["id"] for m in listed] == [registry["model"]]
    by_task = json.loads(invoke("models", "--task", registry["task"][:8], "--json").stdout)
    assert [m["name"] for m in by_task] == ["clf"]
    assert "no models match" in invoke("models", "--project", "none").stderr


def test_datasets_lists_versions_with_their_changes(invoke, registry):
    result = invoke("datasets")
    assert result.exit_code == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "│" in line]
    assert "1.0.1" in rows[0] and "+0 ~1 -1" in rows[0] and "24" in rows[0]
    assert "1.0.0" in rows[1] and "+25 ~0 -0" in rows[1]
    listed = json.loads(invoke("datasets", "--project", "data", "--json").stdout)
    assert [d["id"] for d in listed] == [registry["child"], registry["parent"]]
    assert listed[0]["parents"] == [registry["parent"]]


def test_show_gives_a_tasks_models_a_datasets_files_and_a_model(invoke, registry):
    shown = invoke("show", registry["task"])
    assert shown.exit_code == 0, shown.stderr
    assert "Models" in shown.stdout and "warm_start" in shown.stdout and "clf" in shown.stdout
    assert "models/output" not in shown.stdout  # links are not runtime noise
    data = json.loads(invoke("show", registry["task"], "--json").stdout)
    assert [m["id"] for m in data["models"]["output"]] == [registry["model"]]
    assert [m["link"] for m in data["models"]["input"]] == ["warm_start"]

    ds = invoke("show", registry["parent"])
    assert "Dataset raw v1.0.0: 25 files" in ds.stdout and "f00.csv" in ds.stdout
    assert "and 5 more (--json lists all)" in ds.stdout
    child = json.loads(invoke("show", registry["child"], "--json").stdout)["dataset"]
    assert child["modified"] == 1 and child["removed"] == 1 and len(child["files_list"]) == 24

    model = invoke("show", registry["model"][:8])
    assert model.exit_code == 0, model.stderr
    assert "ScikitLearn" in model.stdout and registry["task"] in model.stdout
    assert json.loads(invoke("show", registry["base"], "--json").stdout)["task"] is None
    missing = invoke("show", "ffffffff")
    assert missing.exit_code == 2 and "agent tasks" in missing.stderr
