"""Models as in ClearML: OutputModel, InputModel, Model; content-addressed weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import InputModel, Model, OutputModel, Task
from agent.core.errors import InvalidInput, NotFound
from agent.files.base import StorageError
from agent.sdk.model import tags_match


@pytest.fixture
def task(backend) -> Task:
    return Task.create(project_name="zoo", task_name="train")


def _blobs(home: Path) -> list[Path]:
    return sorted(p for p in (home / "files" / "blobs").rglob("*") if p.is_file())


def _weights(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_output_model_weights_round_trip_and_task_models(task, tmp_path, agent_home):
    model = OutputModel(task=task, name="resnet", framework="PyTorch", tags=["cv"])
    assert model.project == "zoo" and model.task == task.id and model.url == ""
    weights = _weights(tmp_path, "model.pt", b"weights-1")
    uri = model.update_weights(weights, iteration=3)
    assert not weights.exists()  # auto_delete_file=True, as in ClearML
    assert uri == model.url and model.size == 9 and model.iteration == 3

    again = InputModel(model_id=model.id)
    local = Path(again.get_weights())
    assert local.name == "model.pt" and local.read_bytes() == b"weights-1"
    assert again.framework == "PyTorch" and again.tags == ["cv"]

    outputs = task.models["output"]
    assert [m.id for m in outputs] == [model.id]
    assert outputs["resnet"].id == model.id and outputs[-1].name == "resnet"
    assert task.models["input"] == []
    with pytest.raises(KeyError, match="resnet"):
        outputs["nope"]


def test_the_same_weights_are_stored_once(task, tmp_path, agent_home):
    first = OutputModel(task=task, name="a")
    first.update_weights(_weights(tmp_path, "a.bin", b"same bytes"))
    second = OutputModel(task=task, name="b")
    second.update_weights(_weights(tmp_path, "b.bin", b"same bytes"), auto_delete_file=False)
    assert first.url == second.url and first.sha256 == second.sha256
    assert len(_blobs(agent_home)) == 1
    assert Path(second.get_weights()).name == "b.bin"
    assert [m.name for m in task.models["output"]] == ["a", "b"]


def test_a_folder_is_a_package_that_zips_the_same_each_time(task, tmp_path):
    folder = tmp_path / "checkpoint"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "w.bin").write_bytes(b"\x00" * 100)
    model = OutputModel(task=task, name="pkg")
    model.update_weights_package(weights_path=folder, auto_delete_file=False)
    assert model.is_package

    got = Model(model.id)
    root = Path(got.get_weights_package(return_path=True))
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "config.json",
        "sub/w.bin",
    ]
    assert got.get_local_copy() == str(root)
    os.utime(folder / "config.json", (1, 1))  # only the content decides the blob
    other = OutputModel(task=task, name="pkg2")
    other.update_weights_package(weights_path=folder, auto_delete_file=False)
    assert other.sha256 == model.sha256


def test_input_models_are_found_by_name_and_connected(task, tmp_path):
    old = OutputModel(task=task, name="clf", tags=["v1"])
    old.update_weights(_weights(tmp_path, "clf.pkl", b"1"))
    new = OutputModel(task=task, name="clf", tags=["v2"])
    new.update_weights(_weights(tmp_path, "clf.pkl", b"2"))

    user = Task.create(project_name="zoo", task_name="serve")
    found = InputModel(name="clf", project="zoo")
    assert found.id == new.id  # the last updated
    user.connect(found, name="classifier")
    assert user.models["input"]["classifier"].id == new.id
    with pytest.raises(NotFound, match="agent models"):
        InputModel(name="nothing", project="zoo")


def test_query_models_with_clearml_tag_filters(task):
    a = OutputModel(task=task, name="a", tags=["best", "prod"])
    b = OutputModel(task=task, name="b", tags=["best"])
    c = OutputModel(task=task, name="c", tags=["qa"])
    b.publish()
    ids = lambda models: [m.id for m in models]  # noqa: E731
    assert set(ids(Model.query_models(project_name="zoo"))) == {a.id, b.id, c.id}
    assert set(ids(Model.query_models(tags=["best", "qa"]))) == {a.id, b.id, c.id}
    assert ids(Model.query_models(tags=["__$all", "best", "prod"])) == [a.id]
    assert set(ids(Model.query_models(tags=["best", "-prod"]))) == {b.id}
    assert ids(Model.query_models(only_published=True)) == [b.id]
    assert len(Model.query_models(project_name="zoo", max_results=2)) == 2
    a.set_metadata("epochs", 10)
    assert ids(Model.query_models(metadata={"epochs": "10"})) == [a.id]
    assert tags_match(["__$all", "a", "__$not", "b"], ["a"])
    assert not tags_match(["__$all", "a", "__$not", "b"], ["a", "b"])


def test_a_corrupt_or_missing_blob_is_a_clear_error(task, tmp_path, agent_home):
    model = OutputModel(task=task, name="fragile")
    model.update_weights(_weights(tmp_path, "w.bin", b"good weights"))
    (blob,) = _blobs(agent_home)
    blob.chmod(0o644)
    blob.write_bytes(b"evil weights")
    with pytest.raises(StorageError, match=r"model 'fragile' .* file 'w.bin' is corrupt"):
        Model(model.id).get_weights(raise_on_error=True)
    assert Model(model.id).get_weights() is None  # ClearML's default: None on errors
    blob.unlink()
    with pytest.raises(NotFound, match=r"model 'fragile' .* file 'w.bin' is missing"):
        Model(model.id).get_weights(raise_on_error=True)


def test_output_model_needs_a_task_and_weights(backend, tmp_path):
    with pytest.raises(InvalidInput, match="Task.init"):
        OutputModel(name="orphan")
    task = Task.create(project_name="zoo", task_name="t")
    with pytest.raises(InvalidInput, match="weights_filename"):
        OutputModel(task=task).update_weights()


def test_import_model_and_base_model_id(task, tmp_path):
    path = _weights(tmp_path, "pre.onnx", b"onnx")
    imported = InputModel.import_model(str(path), name="pretrained", project="zoo",
                                       framework="ONNX", create_as_published=True)  # fmt: skip
    assert path.exists()  # importing never deletes the user's file
    assert imported.published and imported.task is None
    assert Path(imported.get_weights()).read_bytes() == b"onnx"

    pipeline = Task.create(project_name="zoo", task_name="pipe")
    OutputModel(base_model_id=imported.id).connect(task=pipeline, name="best")
    assert pipeline.models["output"]["best"].id == imported.id
