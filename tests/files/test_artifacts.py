"""store_artifact / fetch_artifact on every store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from agent.core.errors import InvalidInput, NotFound
from agent.core.models import Artifact
from agent.files.artifacts import fetch_artifact, store_artifact
from agent.files.base import FileStore, StorageError
from agent.files.local import LocalFileStore

from .conftest import TOKEN

DATA = b"weights " * 1000


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "work" / "model.pkl"
    path.parent.mkdir()
    path.write_bytes(DATA)
    return path


@pytest.fixture
def remote_store(request: pytest.FixtureRequest) -> FileStore:
    return request.getfixturevalue(request.param)


remote_stores = pytest.mark.parametrize("remote_store", ["s3_store", "server_store"], indirect=True)


def test_store_artifact_records_hash_size_and_key(
    store: FileStore, model_file: Path, ns: str
) -> None:
    artifact = store_artifact(
        store, ns, "model", model_file, type="pickle", preview="a model", metadata={"acc": 0.9}
    )

    assert artifact.name == "model"
    assert artifact.uri == store.uri(f"tasks/{ns}/artifacts/model/model.pkl")
    assert artifact.sha256 == hashlib.sha256(DATA).hexdigest()
    assert artifact.size == len(DATA)
    assert (artifact.type, artifact.preview, artifact.metadata) == (
        "pickle",
        "a model",
        {"acc": 0.9},
    )
    assert artifact.created > 0
    assert store.exists(artifact.uri)


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../../b", "a/b", "", ".", "..", "a\\b"])
def test_unsafe_artifact_names_are_refused(
    local_store: LocalFileStore, model_file: Path, name: str
) -> None:
    with pytest.raises(InvalidInput, match="invalid artifact name"):
        store_artifact(local_store, "task1", name, model_file)
    assert not local_store.root.exists()


@pytest.mark.parametrize("task_id", ["../t", "a/b", ""])
def test_unsafe_task_ids_are_refused(
    local_store: LocalFileStore, model_file: Path, task_id: str
) -> None:
    with pytest.raises(InvalidInput, match="invalid task id"):
        store_artifact(local_store, task_id, "model", model_file)


def test_fetch_from_a_local_store_reads_in_place(
    local_store: LocalFileStore, model_file: Path, agent_home: Path
) -> None:
    artifact = store_artifact(local_store, "task1", "model", model_file)

    path = fetch_artifact(artifact)

    assert path == local_store.local_path(artifact.uri)
    assert path.is_relative_to(local_store.root)
    assert not (agent_home / "cache").exists()


@remote_stores
def test_fetch_from_a_remote_store_uses_the_content_cache(
    remote_store: FileStore,
    model_file: Path,
    ns: str,
    agent_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    artifact = store_artifact(remote_store, ns, "model", model_file)

    path = fetch_artifact(artifact, token=TOKEN)

    assert path == agent_home / "cache" / "artifacts" / artifact.sha256 / "model.pkl"
    assert path.read_bytes() == DATA

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached artifact was downloaded again")

    monkeypatch.setattr(type(remote_store), "get_file", no_download)
    assert fetch_artifact(artifact, token=TOKEN) == path


@remote_stores
def test_a_corrupt_cache_entry_is_downloaded_again(
    remote_store: FileStore, model_file: Path, ns: str
) -> None:
    artifact = store_artifact(remote_store, ns, "model", model_file)
    path = fetch_artifact(artifact, token=TOKEN)
    path.write_bytes(b"bit rot" + DATA[7:])

    assert fetch_artifact(artifact, token=TOKEN).read_bytes() == DATA


@remote_stores
def test_a_download_that_does_not_match_the_record_is_refused(
    remote_store: FileStore, model_file: Path, ns: str
) -> None:
    artifact = store_artifact(remote_store, ns, "model", model_file)
    remote_store.put_bytes(b"something else", f"tasks/{ns}/artifacts/model/model.pkl")

    with pytest.raises(StorageError, match="corrupt"):
        fetch_artifact(artifact, token=TOKEN)
    assert not list((Path(os.environ["AGENT_HOME"]) / "cache" / "artifacts").rglob("model.pkl"))


def test_fetch_into_dest_dir_copies(
    store: FileStore, model_file: Path, ns: str, tmp_path: Path
) -> None:
    artifact = store_artifact(store, ns, "model", model_file)

    path = fetch_artifact(artifact, dest_dir=tmp_path / "dest", token=TOKEN)

    assert path == tmp_path / "dest" / "model.pkl"
    assert path.read_bytes() == DATA
    if isinstance(store, LocalFileStore):
        assert not path.samefile(store.local_path(artifact.uri))


def test_fetch_of_a_deleted_artifact_names_it(store: FileStore, model_file: Path, ns: str) -> None:
    artifact = store_artifact(store, ns, "model", model_file)
    store.delete(artifact.uri)

    with pytest.raises(NotFound, match="artifact 'model'.*is gone"):
        fetch_artifact(artifact, token=TOKEN)


def test_fetch_without_a_recorded_hash_still_works(
    server_store: FileStore, ns: str, agent_home: Path
) -> None:
    uri = server_store.put_bytes(b"no hash", f"tasks/{ns}/artifacts/raw/raw.txt")
    artifact = Artifact(name="raw", uri=uri)

    path = fetch_artifact(artifact, token=TOKEN)

    assert path.read_bytes() == b"no hash"
    assert path.is_relative_to(agent_home / "cache" / "artifacts" / "by-uri")


def test_a_malformed_recorded_hash_is_refused(server_store: FileStore, ns: str) -> None:
    uri = server_store.put_bytes(b"x", f"{ns}/x")
    with pytest.raises(InvalidInput, match="malformed sha256"):
        fetch_artifact(Artifact(name="x", uri=uri, sha256="../../etc"), token=TOKEN)
