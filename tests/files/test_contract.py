"""The FileStore contract, run against every store on a real backend."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from agent.core.errors import InvalidInput, NotFound
from agent.files.base import FileStore, StoredFile
from agent.files.factory import open_uri
from agent.files.local import LocalFileStore

from .conftest import TOKEN

UNSAFE_KEYS = [
    "",
    "..",
    "../x",
    "a/../../b",
    "/abs/x",
    "a//b",
    "a/",
    "a\\b",
    ".",
    "a/./b",
    "a\x00b",
]


def test_store_follows_the_protocol(store: FileStore) -> None:
    assert isinstance(store, FileStore)


def test_put_file_then_get_file_round_trips(store: FileStore, tmp_path: Path, ns: str) -> None:
    data = os.urandom(300_000)
    src = tmp_path / "data.bin"
    src.write_bytes(data)

    uri = store.put_file(src, f"{ns}/dir/data.bin")
    dest = store.get_file(uri, tmp_path / "out" / "copy.bin")

    assert uri == store.uri(f"{ns}/dir/data.bin")
    assert dest == tmp_path / "out" / "copy.bin"
    assert dest.read_bytes() == data


def test_large_file_round_trips(store: FileStore, tmp_path: Path, ns: str) -> None:
    data = os.urandom(9 * 1024 * 1024)  # past boto3's 8 MiB multipart threshold
    src = tmp_path / "big.bin"
    src.write_bytes(data)

    uri = store.put_file(src, f"{ns}/big.bin")
    dest = store.get_file(uri, tmp_path / "big-copy.bin")

    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_put_bytes_makes_the_blob_exist(store: FileStore, ns: str, tmp_path: Path) -> None:
    key = f"{ns}/a.txt"
    assert not store.exists(key)

    uri = store.put_bytes(b"hello", key)

    assert store.exists(uri)
    assert store.exists(key)
    assert store.get_file(uri, tmp_path / "a.txt").read_bytes() == b"hello"


def test_put_replaces_the_whole_blob(store: FileStore, ns: str, tmp_path: Path) -> None:
    uri = store.put_bytes(b"a long first version", f"{ns}/v.txt")
    assert store.put_bytes(b"v2", f"{ns}/v.txt") == uri

    assert store.get_file(uri, tmp_path / "v.txt").read_bytes() == b"v2"


def test_empty_blob(store: FileStore, ns: str, tmp_path: Path) -> None:
    uri = store.put_bytes(b"", f"{ns}/empty")

    assert store.exists(uri)
    assert store.get_file(uri, tmp_path / "empty").read_bytes() == b""


def test_delete_removes_and_is_idempotent(store: FileStore, ns: str) -> None:
    uri = store.put_bytes(b"x", f"{ns}/gone.txt")

    store.delete(uri)
    assert not store.exists(uri)
    store.delete(uri)  # missing: no error


def test_get_of_a_missing_blob_raises_not_found(store: FileStore, ns: str, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        store.get_file(store.uri(f"{ns}/never-stored"), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_get_file_into_a_directory_keeps_the_name(
    store: FileStore, ns: str, tmp_path: Path
) -> None:
    uri = store.put_bytes(b"named", f"{ns}/sub/named.txt")
    out = tmp_path / "outdir"
    out.mkdir()

    dest = store.get_file(uri, out)

    assert dest == out / "named.txt"
    assert dest.read_bytes() == b"named"


def test_keys_with_spaces_and_unicode(store: FileStore, ns: str, tmp_path: Path) -> None:
    key = f"{ns}/a dir/ünïcödé #1?.txt"
    uri = store.put_bytes(b"odd", key)

    assert store.exists(uri)
    assert store.get_file(uri, tmp_path / "odd.txt").read_bytes() == b"odd"


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_unsafe_keys_are_refused(store: FileStore, key: str, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    with pytest.raises(InvalidInput):
        store.put_bytes(b"x", key)
    with pytest.raises(InvalidInput):
        store.put_file(src, key)
    with pytest.raises(InvalidInput):
        store.exists(key)


def test_uri_of_another_store_is_refused(store: FileStore) -> None:
    with pytest.raises(InvalidInput):
        store.exists("s3://some-other-bucket/x")


def test_missing_source_file_raises_not_found(store: FileStore, tmp_path: Path, ns: str) -> None:
    with pytest.raises(NotFound, match="no such file"):
        store.put_file(tmp_path / "nope.bin", f"{ns}/nope.bin")


def test_uri_opens_the_store_that_holds_it(store: FileStore, ns: str, tmp_path: Path) -> None:
    uri = store.put_bytes(b"by uri", f"{ns}/k/by-uri.txt")

    other, key = open_uri(uri, token=TOKEN)

    assert type(other) is type(store)
    assert other.get_file(key, tmp_path / "x").read_bytes() == b"by uri"


def test_local_path_only_for_local_stores(store: FileStore, ns: str) -> None:
    uri = store.put_bytes(b"in place", f"{ns}/p.txt")

    path = store.local_path(uri)

    if isinstance(store, LocalFileStore):
        assert path is not None
        assert path.read_bytes() == b"in place"
        assert path.is_relative_to(store.root)
    else:
        assert path is None


def test_list_files_by_string_prefix(store: FileStore, ns: str) -> None:
    store.put_bytes(b"12345", f"{ns}/data/a.txt")
    store.put_bytes(b"", f"{ns}/data/sub/empty.bin")
    store.put_bytes(b"xy", f"{ns}/data2/b.txt")
    store.put_bytes(b"z", f"{ns}/other.txt")

    in_folder = store.list_files(f"{ns}/data/")
    by_prefix = store.list_files(f"{ns}/data")

    assert in_folder == [
        StoredFile(f"{ns}/data/a.txt", 5),
        StoredFile(f"{ns}/data/sub/empty.bin", 0),
    ]
    assert [f.key for f in by_prefix] == [
        f"{ns}/data/a.txt",
        f"{ns}/data/sub/empty.bin",
        f"{ns}/data2/b.txt",
    ]
    assert [f.key for f in store.list_files(f"{ns}/")][-1] == f"{ns}/other.txt"
    assert store.list_files(f"{ns}/nothing-here/") == []


@pytest.mark.parametrize("prefix", ["..", "../", "a/../../b", "/abs", "a//"])
def test_list_files_refuses_prefixes_that_leave_the_store(store: FileStore, prefix: str) -> None:
    with pytest.raises(InvalidInput):
        store.list_files(prefix)
