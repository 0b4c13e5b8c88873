"""safe_key, safe_name, sha256_file, atomic_writer, store_for_url, open_uri."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent.core.errors import InvalidInput
from agent.files.base import (
    FileStore,
    atomic_writer,
    safe_key,
    safe_name,
    sha256_file,
)
from agent.files.factory import open_uri, store_for_url
from agent.files.local import LocalFileStore
from agent.files.s3 import S3FileStore
from agent.files.server import ServerFileStore


@pytest.mark.parametrize("key", ["a", "a/b.c", "dir with space/ü.txt", "a..b/c..", ".hidden/x"])
def test_safe_key_accepts_relative_paths(key: str) -> None:
    assert safe_key(key) == key


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty"),
        ("..", "'..' part"),
        ("../x", "'..' part"),
        ("a/../../b", "'..' part"),
        ("/etc/passwd", "absolute"),
        ("a//b", "empty part"),
        ("a/", "empty part"),
        ("a\\b", "backslash"),
        ("..\\x", "backslash"),
        (".", "'.' part"),
        ("a/./b", "'.' part"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
    ],
)
def test_safe_key_refuses_unsafe_keys_saying_why(key: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason) as info:
        safe_key(key)
    assert repr(key) in str(info.value)


@pytest.mark.parametrize("name", ["a/b", "../x", "/abs", "", "..", "a\\b"])
def test_safe_name_refuses_anything_but_one_component(name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid artifact name"):
        safe_name(name, "artifact name")


def test_sha256_file_matches_hashlib_across_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 41
    path = tmp_path / "f"
    path.write_bytes(data)

    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk_size=7) == hashlib.sha256(data).hexdigest()


def test_sha256_file_of_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e").write_bytes(b"")
    assert sha256_file(tmp_path / "e") == hashlib.sha256(b"").hexdigest()


def test_atomic_writer_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    dest = tmp_path / "f.txt"
    dest.write_bytes(b"old")

    with pytest.raises(RuntimeError), atomic_writer(dest) as fh:
        fh.write(b"half of the new")
        raise RuntimeError("disk on fire")

    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_writer_creates_parents_and_replaces(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b" / "f.txt"
    with atomic_writer(dest) as fh:
        fh.write(b"new")
    assert dest.read_bytes() == b"new"


def test_store_for_url_picks_local_for_paths(tmp_path: Path) -> None:
    for url in (str(tmp_path), tmp_path.as_uri()):
        store = store_for_url(url)
        assert isinstance(store, LocalFileStore)
        assert store.root == tmp_path


def test_store_for_url_expands_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = store_for_url("~/files")
    assert isinstance(store, LocalFileStore)
    assert store.root == tmp_path / "files"


def test_store_for_url_picks_s3() -> None:
    store = store_for_url("s3://bucket/some/prefix/")
    assert isinstance(store, S3FileStore)
    assert (store.bucket, store.prefix) == ("bucket", "some/prefix")
    assert store.uri("a/b") == "s3://bucket/some/prefix/a/b"


@pytest.mark.parametrize(
    "url", ["http://host:8008", "http://host:8008/", "http://host:8008/api/v1/files"]
)
def test_store_for_url_picks_the_server(url: str) -> None:
    store = store_for_url(url, token="t")
    assert isinstance(store, ServerFileStore)
    assert store.uri("a b/c") == "http://host:8008/api/v1/files/a%20b/c"


def test_every_store_is_a_file_store(tmp_path: Path) -> None:
    for url in (str(tmp_path), "s3://b", "https://h"):
        assert isinstance(store_for_url(url), FileStore)


@pytest.mark.parametrize("url", ["gs://bucket/x", "ftp://host/x", "azure://c/x"])
def test_store_for_url_refuses_unknown_schemes(url: str) -> None:
    with pytest.raises(InvalidInput, match="no file store"):
        store_for_url(url)


@pytest.mark.parametrize(
    ("uri", "kind", "key"),
    [
        ("s3://b/p/a.txt", S3FileStore, "p/a.txt"),
        ("http://h:1/api/v1/files/t/a%20b.txt", ServerFileStore, "t/a b.txt"),
        ("file:///tmp/x/a.txt", LocalFileStore, "a.txt"),
        ("/tmp/x/a.txt", LocalFileStore, "a.txt"),
    ],
)
def test_open_uri(uri: str, kind: type, key: str) -> None:
    store, got = open_uri(uri, token="t")
    assert isinstance(store, kind)
    assert got == key


@pytest.mark.parametrize(
    "uri", ["http://h/elsewhere/a.txt", "http://h/api/v1/files/%2e%2e/x", "s3://b/../x"]
)
def test_open_uri_refuses_foreign_or_unsafe_uris(uri: str) -> None:
    with pytest.raises(InvalidInput):
        open_uri(uri)
