"""LocalFileStore specifics: atomic writes, real paths, symlinks, clashes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.core.errors import Conflict, InvalidInput, NotFound
from agent.files.local import LocalFileStore


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_writes_leave_no_temp_files(local_store: LocalFileStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 10_000)

    local_store.put_file(src, "a/b.bin")
    local_store.put_bytes(b"y", "a/c.bin")
    local_store.put_bytes(b"z", "a/c.bin")

    assert _all_files(local_store.root) == ["a/b.bin", "a/c.bin"]


def test_failed_write_keeps_the_old_blob(local_store: LocalFileStore) -> None:
    local_store.put_bytes(b"old", "k.txt")

    with pytest.raises(OSError), local_store.writer("k.txt") as fh:
        fh.write(b"partial")
        raise OSError("disk full")

    assert (local_store.root / "k.txt").read_bytes() == b"old"
    assert _all_files(local_store.root) == ["k.txt"]


def test_uri_is_the_file_url_of_the_real_file(local_store: LocalFileStore) -> None:
    uri = local_store.put_bytes(b"data", "d/e.txt")

    path = local_store.local_path(uri)

    assert uri == (local_store.root / "d" / "e.txt").as_uri()
    assert path == local_store.root / "d" / "e.txt"
    assert local_store.local_path("d/e.txt") == path
    assert local_store.local_path(str(path)) == path


def test_local_path_of_a_missing_blob_raises(local_store: LocalFileStore) -> None:
    with pytest.raises(NotFound, match="no file stored"):
        local_store.local_path("missing.txt")


def test_root_is_not_created_until_the_first_write(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "later")
    assert not store.exists("x")
    assert not (tmp_path / "later").exists()


def test_symlink_out_of_the_root_is_refused(local_store: LocalFileStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    local_store.root.mkdir(parents=True)
    os.symlink(outside, local_store.root / "link")

    with pytest.raises(InvalidInput, match="leads out"):
        local_store.put_bytes(b"x", "link/evil.txt")
    assert list(outside.iterdir()) == []


def test_path_outside_the_root_is_refused(local_store: LocalFileStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not inside this store"):
        local_store.exists(str(tmp_path / "elsewhere.txt"))
    with pytest.raises(InvalidInput, match="not inside this store"):
        local_store.exists((tmp_path / "elsewhere.txt").as_uri())


def test_a_key_below_a_file_is_a_conflict(local_store: LocalFileStore) -> None:
    local_store.put_bytes(b"file", "a")

    with pytest.raises(Conflict, match="'a/b'"):
        local_store.put_bytes(b"x", "a/b")


def test_a_directory_cannot_be_stored(local_store: LocalFileStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="directory"):
        local_store.put_file(tmp_path, "dir")
