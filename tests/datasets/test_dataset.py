"""Datasets as ClearML Data documents them: versions with parents, content-addressed files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import Dataset, Task
from agent.core.errors import InvalidInput, NotFound
from agent.files.base import StorageError


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _blob_files(home: Path) -> list[Path]:
    return [p for p in (home / "files" / "blobs").rglob("*") if p.is_file()]


def _stored_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in _blob_files(home))


def test_create_add_upload_finalize_get_local_copy(backend, tmp_path, agent_home):
    src = _tree(tmp_path / "src", {"a.csv": b"1,2\n", "sub/b.txt": b"bee", "sub/c.bin": b"c" * 50})
    ds = Dataset.create(dataset_name="raw", dataset_project="data", dataset_tags=["v"])
    assert ds.version == "1.0.0" and not ds.is_final()
    assert ds.add_files(src) == 3
    assert ds.add_files(src) == 0  # unchanged files do not count
    ds.upload(show_progress=False)
    assert ds.finalize()

    task = Task.get_task(ds.id)
    assert task.task_type == "data_processing" and task.status == "completed"
    assert "state" in task.artifacts and task.project == "data"

    got = Dataset.get(dataset_project="data", dataset_name="raw")
    assert got.id == ds.id and got.is_final() and got.tags == ["v"]
    assert got.list_files() == ["a.csv", "sub/b.txt", "sub/c.bin"]
    assert got.list_files("sub/*.txt") == ["sub/b.txt"]
    assert got.list_files("sub") == ["sub/b.txt", "sub/c.bin"]
    assert got.list_added_files() == ["a.csv", "sub/b.txt", "sub/c.bin"]
    folder = Path(got.get_local_copy())
    assert (folder / "sub" / "b.txt").read_bytes() == b"bee"
    assert (folder / "a.csv").stat().st_mode & 0o222 == 0  # a read-only cached copy
    assert got.get_local_copy() == str(folder)  # cached

    mutable = Path(got.get_mutable_local_copy(tmp_path / "work"))
    (mutable / "a.csv").write_text("changed")
    assert (folder / "a.csv").read_bytes() == b"1,2\n"
    with pytest.raises(InvalidInput, match="overwrite=True"):
        got.get_mutable_local_copy(tmp_path / "work")
    assert got.get_mutable_local_copy(tmp_path / "work", overwrite=True)
    assert (mutable / "a.csv").read_bytes() == b"1,2\n"


def test_a_child_stores_only_what_changed(backend, tmp_path, agent_home):
    files = {f"f{i}.txt": f"content {i}".encode() * 100 for i in range(20)}
    src = _tree(tmp_path / "src", files)
    parent = Dataset.create(dataset_name="d", dataset_project="p")
    parent.add_files(src)
    parent.finalize(auto_upload=True)
    before = _stored_bytes(agent_home)

    child = Dataset.create(dataset_name="d", dataset_project="p", parent_datasets=[parent.id])
    assert child.version == "1.0.1" and child.get_parents() == [parent.id]
    assert child.list_files() == parent.list_files()
    (src / "f3.txt").write_bytes(b"new content")
    child.add_files(src / "f3.txt")
    child.add_files(
        _tree(tmp_path / "more", {"extra.txt": b"extra"}) / "extra.txt", dataset_path="x"
    )
    assert child.remove_files("f1*") == 11  # f1.txt, f10..f19.txt
    child.upload(show_progress=False)
    child.finalize()

    assert _stored_bytes(agent_home) - before == len(b"new content") + len(b"extra")
    got = Dataset.get(dataset_id=child.id)
    assert got.list_added_files() == ["x/extra.txt"]
    assert got.list_modified_files() == ["f3.txt"]
    assert len(got.list_removed_files()) == 11
    folder = Path(got.get_local_copy())
    assert (folder / "f3.txt").read_bytes() == b"new content"
    assert (folder / "f0.txt").read_bytes() == files["f0.txt"]
    assert not (folder / "f1.txt").exists()
    # the newest version of the name is the child
    assert Dataset.get(dataset_project="p", dataset_name="d").id == child.id
    listed = Dataset.list_datasets(dataset_project="p")
    assert [d["version"] for d in listed] == ["1.0.1", "1.0.0"]
    assert listed[0]["modified"] == 1 and listed[0]["added"] == 1 and listed[0]["files"] == 10


def test_the_same_file_in_two_datasets_is_stored_once(backend, tmp_path, agent_home):
    src = _tree(tmp_path / "src", {"big.bin": os.urandom(10_000)})
    for name in ("one", "two"):
        ds = Dataset.create(dataset_name=name, dataset_project="p")
        ds.add_files(src)
        ds.finalize(auto_upload=True)
    assert len(_blob_files(agent_home)) == 1


def test_final_versions_are_read_only_and_unfinished_ones_cannot_be_read(backend, tmp_path):
    src = _tree(tmp_path / "src", {"a": b"a"})
    ds = Dataset.create(dataset_name="d", dataset_project="p")
    ds.add_files(src)
    with pytest.raises(InvalidInput, match="upload"):
        ds.finalize()
    with pytest.raises(InvalidInput, match="finalize"):
        ds.get_local_copy()
    with pytest.raises(InvalidInput, match="not final"):
        Dataset.create(dataset_name="c", dataset_project="p", parent_datasets=[ds])
    ds.finalize(auto_upload=True)
    with pytest.raises(InvalidInput, match="parent_datasets"):
        ds.add_files(src)
    with pytest.raises(NotFound, match="agent datasets"):
        Dataset.get(dataset_project="p", dataset_name="nothing")
    with pytest.raises(NotFound, match="not a dataset"):
        Dataset.get(dataset_id=Task.create(project_name="p", task_name="t").id)
    assert (
        Dataset.get(dataset_project="p", dataset_name="auto", auto_create=True).version == "1.0.0"
    )


def test_a_corrupt_or_missing_file_names_the_dataset_and_the_file(backend, tmp_path, agent_home):
    src = _tree(tmp_path / "src", {"good.csv": b"x,y\n1,2\n"})
    ds = Dataset.create(dataset_name="fragile", dataset_project="p")
    ds.add_files(src)
    ds.finalize(auto_upload=True)
    (blob,) = _blob_files(agent_home)
    blob.chmod(0o644)
    blob.write_bytes(b"x,y\n6,6\n")
    again = Dataset.get(dataset_id=ds.id)
    with pytest.raises(
        StorageError, match=r"dataset p/fragile v1.0.0 .* file 'good.csv' is corrupt"
    ):
        again.get_local_copy()
    assert not any((agent_home / "cache" / "datasets").glob(f"{ds.id}*"))
    blob.unlink()
    with pytest.raises(NotFound, match=r"file 'good.csv' is missing"):
        again.get_local_copy()


def test_alias_records_the_dataset_on_the_current_task(backend, tmp_path):
    ds = Dataset.create(dataset_name="d", dataset_project="p")
    ds.add_files(_tree(tmp_path / "s", {"a": b"a"}))
    ds.finalize(auto_upload=True)
    task = Task.init(project_name="p", task_name="user", capture_output=False)
    Dataset.get(dataset_project="p", dataset_name="d", alias="training")
    assert task.get_parameters()["Datasets/training"] == ds.id
    child = Dataset.get(dataset_id=ds.id, writable_copy=True)
    assert child.get_parents() == [ds.id] and not child.is_final()


def test_parts_split_the_files(backend, tmp_path):
    ds = Dataset.create(dataset_name="d", dataset_project="p")
    ds.add_files(_tree(tmp_path / "s", {f"{i}.txt": b"%d" % i for i in range(5)}))
    ds.finalize(auto_upload=True)
    parts = [sorted(p.name for p in Path(ds.get_local_copy(part=k, num_parts=2)).glob("*.txt"))
             for k in range(2)]  # fmt: skip
    assert sorted(parts[0] + parts[1]) == [f"{i}.txt" for i in range(5)]
    assert not set(parts[0]) & set(parts[1])
