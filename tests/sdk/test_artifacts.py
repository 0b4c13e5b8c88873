"""Artifacts: each serialization round trip, files and directories, destinations."""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agent import Task
from agent.core.errors import InvalidInput
from agent.sdk.serialization import MMAP_MIN_BYTES


@dataclass
class Point:
    x: int
    y: int


@pytest.fixture
def task(backend) -> Task:
    return Task.create(project_name="p", task_name="artifacts")


def test_numpy_round_trip(task):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    view = task.upload_artifact("arr", array, metadata={"unit": "m"})
    assert (view.type, view.format, view.metadata) == ("numpy", "npy", {"unit": "m"})
    assert "shape=(3, 4)" in view.preview and view.size > 0 and len(view.sha256) == 64
    loaded = task.artifacts["arr"].get()
    assert loaded.dtype == np.float32 and np.array_equal(loaded, array)
    assert task.artifacts["arr"].get_local_copy().endswith("arr.npy")


def test_large_numpy_loads_memory_mapped_copy_on_write(task):
    array = np.ones(MMAP_MIN_BYTES // 8 + 1, dtype=np.float64)
    task.upload_artifact("big", array)
    loaded = task.artifacts["big"].get()
    assert isinstance(loaded, np.memmap)
    loaded[0] = 5.0  # private to this process
    assert task.artifacts["big"].get()[0] == 1.0


def test_object_numpy_array_is_pickled(task):
    array = np.array([{"a": 1}, None], dtype=object)
    task.upload_artifact("objs", array)
    view = task.artifacts["objs"]
    assert (view.type, view.format) == ("numpy", "pickle")
    assert view.get()[0] == {"a": 1}


def test_pandas_parquet_round_trip(task):
    frame = pd.DataFrame(
        {"a": [1, 2, 3], "b": ["x", "y", "z"]}, index=pd.Index([10, 20, 30], name="id")
    )
    view = task.upload_artifact("df", frame)
    assert (view.type, view.format) == ("pandas", "parquet")
    assert view.url.endswith("df.parquet") and "3 rows x 2 columns" in view.preview
    pd.testing.assert_frame_equal(task.artifacts["df"].get(), frame)


def test_pandas_without_string_columns_falls_back_to_pickle(task):
    frame = pd.DataFrame({0: [1.5], 1: [2.5]})
    view = task.upload_artifact("df", frame)
    assert (view.type, view.format) == ("pandas", "pickle")
    pd.testing.assert_frame_equal(task.artifacts["df"].get(), frame)


def test_pandas_csv_by_extension(task):
    frame = pd.DataFrame({"a": [1, 2]})
    view = task.upload_artifact("df", frame, extension_name=".csv.gz")
    assert view.url.endswith("df.csv.gz")
    with gzip.open(view.get_local_copy(), "rt") as fh:
        assert fh.readline().strip() == ",a"
    pd.testing.assert_frame_equal(task.artifacts["df"].get(), frame)
    with pytest.raises(InvalidInput, match="does not fit a DataFrame"):
        task.upload_artifact("df", frame, extension_name=".xlsx")


@pytest.mark.parametrize("value", [{"a": [1, 2.5, None, True]}, [1, "two"], "plain text", 3, None])
def test_json_round_trip(task, value):
    view = task.upload_artifact("val", value)
    assert (view.type, view.format) == ("json", "json")
    assert task.artifacts["val"].get() == value


@pytest.mark.parametrize("value", [{1: "int key"}, (1, 2), Point(1, 2), {"p": Point(3, 4)}])
def test_pickle_round_trip_keeps_types(task, value):
    view = task.upload_artifact("obj", value)
    assert view.type == "pickle" and view.url.endswith("obj.pkl")
    loaded = task.artifacts["obj"].get()
    assert loaded == value and type(loaded) is type(value)


def test_auto_pickle_false_refuses(task):
    with pytest.raises(InvalidInput, match="auto_pickle=False"):
        task.upload_artifact("obj", Point(1, 2), auto_pickle=False)


def test_custom_serializer(task):
    def to_bytes(p: Point) -> bytes:
        return f"{p.x},{p.y}".encode()

    def from_bytes(data: bytes) -> Point:
        return Point(*map(int, data.decode().split(",")))

    view = task.upload_artifact("pt", Point(5, 6), serialization_function=to_bytes)
    assert view.type == "custom" and view.url.endswith("pt.bin")
    assert Path(view.get_local_copy()).read_bytes() == b"5,6"
    with pytest.raises(InvalidInput, match="deserialization_function"):
        task.artifacts["pt"].get()
    assert task.artifacts["pt"].get(deserialization_function=from_bytes) == Point(5, 6)
    view = task.upload_artifact(
        "pt2", Point(1, 1), serialization_function=to_bytes, extension_name="txt"
    )
    assert view.url.endswith("pt2.txt")
    with pytest.raises(InvalidInput, match="not bytes"):
        task.upload_artifact("bad", 1, serialization_function=str)


def test_file_and_directory(task, tmp_path: Path):
    file = tmp_path / "model.bin"
    file.write_bytes(b"\x00weights")
    view = task.upload_artifact("model", str(file))
    assert (view.type, view.format) == ("file", "file") and view.url.endswith("model/model.bin")
    local = task.artifacts["model"].get()
    assert Path(local).read_bytes() == b"\x00weights"

    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    view = task.upload_artifact("ckpt", folder)
    assert (view.type, view.format) == ("file", "zip") and "2 files" in view.preview
    extracted = Path(task.artifacts["ckpt"].get())
    assert (extracted / "sub" / "b.txt").read_text() == "b"
    assert task.artifacts["ckpt"].get_local_copy(extract_archive=False).endswith("ckpt.zip")

    with pytest.raises(FileNotFoundError):
        task.upload_artifact("gone", tmp_path / "missing.bin")
    doomed = tmp_path / "doomed.txt"
    doomed.write_text("x")
    task.upload_artifact("doomed", doomed, delete_after_upload=True)
    assert not doomed.exists() and task.artifacts["doomed"].get_local_copy()


def test_local_store_reads_in_place(task, agent_home: Path):
    view = task.upload_artifact("v", {"a": 1})
    local = Path(view.get_local_copy())
    assert local.is_relative_to(agent_home / "files")
    assert local == Path(task.artifacts["v"].get_local_copy())


def test_output_uri_and_files_url_pick_the_destination(backend, tmp_path: Path, monkeypatch):
    custom = Task.create(project_name="p", task_name="t")
    custom.output_uri = str(tmp_path / "mine")
    view = custom.upload_artifact("x", [1])
    assert Path(view.get_local_copy()).is_relative_to(tmp_path / "mine")

    monkeypatch.setenv("AGENT_FILES_URL", (tmp_path / "shared").as_uri())
    other = Task.create(project_name="p", task_name="t2")
    assert Path(other.upload_artifact("x", [1]).get_local_copy()).is_relative_to(
        tmp_path / "shared"
    )


def test_replace_background_upload_and_bad_names(task):
    task.upload_artifact("v", 1)
    assert task.upload_artifact("v", 2, wait_on_upload=False) is True
    task.wait_for_uploads()
    assert task.artifacts["v"].get() == 2 and list(task.artifacts) == ["v"]
    with pytest.raises(InvalidInput, match="artifact name"):
        task.upload_artifact("../evil", 1)


def test_preview_argument_and_get_local_copy_errors(task):
    view = task.upload_artifact("v", list(range(5)), preview="five numbers")
    assert view.preview == "five numbers"
    Path(view.get_local_copy()).unlink()
    assert task.artifacts["v"].get_local_copy(raise_on_error=False) is None


def test_pickled_file_loads_with_plain_pickle(task):
    view = task.upload_artifact("obj", Point(1, 2))
    with open(view.get_local_copy(), "rb") as fh:
        assert pickle.load(fh) == Point(1, 2)
