"""A blob checked once on this machine is trusted while its stat is unchanged; a blob
changed since is checked again and found corrupt."""

from __future__ import annotations

import os
import stat

import pytest

from agent.files import blobs
from agent.files.base import StorageError
from agent.files.local import LocalFileStore


@pytest.fixture
def stored(agent_home, tmp_path):
    store = LocalFileStore(tmp_path / "files")
    source = tmp_path / "weights.bin"
    source.write_bytes(b"w" * 4096)
    return blobs.put_blob(store, source)


def _new_process(monkeypatch) -> None:
    monkeypatch.setattr(blobs, "_verified", set())  # what another process would start with


def test_a_checked_blob_is_not_read_again_by_a_new_process(stored, monkeypatch):
    path = blobs.blob_path(stored.uri, stored.sha256, stored.size, "model 'm'")
    assert any(blobs.verified_dir().rglob(stored.sha256))
    _new_process(monkeypatch)

    def no_hashing(_path):
        raise AssertionError("an unchanged, checked blob was hashed again")

    monkeypatch.setattr(blobs, "sha256_file", no_hashing)
    assert blobs.blob_path(stored.uri, stored.sha256, stored.size, "model 'm'") == path


def test_a_blob_changed_after_its_check_is_found_corrupt(stored, monkeypatch):
    path = blobs.blob_path(stored.uri, stored.sha256, stored.size, "model 'm'")
    _new_process(monkeypatch)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    path.write_bytes(b"x" * 4096)  # same size, other bytes: its mtime moves
    with pytest.raises(StorageError, match="model 'm' is corrupt"):
        blobs.blob_path(stored.uri, stored.sha256, stored.size, "model 'm'")
