"""S3FileStore specifics, against moto's S3 server on loopback."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import botocore.session
import pytest
from botocore.loaders import JSONFileLoader

from agent.core.errors import NotFound
from agent.files.base import StorageError
from agent.files.s3 import S3FileStore, endpoint_url, make_s3_client, shared_loader

from .conftest import free_port


def test_missing_bucket_is_reported_not_created(s3_env: str, tmp_path: Path) -> None:
    store = S3FileStore("s3://no-such-bucket-for-agent/p")

    with pytest.raises(NotFound, match=r"bucket 'no-such-bucket-for-agent' does not exist.*s3 mb"):
        store.put_bytes(b"x", "a.txt")
    with pytest.raises(NotFound, match="does not exist"):
        store.exists("a.txt")
    with pytest.raises(NotFound, match="does not exist"):
        store.get_file("a.txt", tmp_path / "a.txt")
    src = tmp_path / "src"
    src.write_bytes(b"x")
    with pytest.raises(NotFound, match="does not exist"):
        store.put_file(src, "a.txt")


def test_missing_object_in_an_existing_bucket(s3_store: S3FileStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no such object"):
        s3_store.get_file("nothing-here", tmp_path / "x")


def test_objects_live_under_the_prefix(s3_store: S3FileStore) -> None:
    s3_store.put_bytes(b"x", "a/b.txt")

    listing = s3_store.client.list_objects_v2(Bucket=s3_store.bucket, Prefix=s3_store.prefix)

    assert [o["Key"] for o in listing["Contents"]] == [f"{s3_store.prefix}/a/b.txt"]


def test_aws_endpoint_url_is_used_when_agent_variable_is_unset(
    s3_env: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENT_S3_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env)
    store = S3FileStore(f"s3://{s3_bucket}/aws-endpoint")

    assert store.exists(store.put_bytes(b"x", "k"))


def test_agent_endpoint_beats_aws_endpoint(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    assert endpoint_url() == s3_env


def test_missing_credentials_say_what_to_set(
    s3_env: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = S3FileStore(f"s3://{s3_bucket}")

    with pytest.raises(StorageError, match="no AWS credentials.*AWS_ACCESS_KEY_ID"):
        store.put_bytes(b"x", "k")


def test_constructor_contacts_nothing() -> None:
    store = S3FileStore("s3://bucket")
    assert store._client is None


def test_clients_read_botocores_models_once_per_process(
    s3_store: S3FileStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "x.txt"
    source.write_text("x")
    S3FileStore(s3_store.url, client=make_s3_client()).put_file(source, "first")
    reads: list[str] = []
    read = JSONFileLoader.load_file

    def counted(self: JSONFileLoader, path: str, *args: object) -> object:
        reads.append(path)
        return read(self, path, *args)

    monkeypatch.setattr(JSONFileLoader, "load_file", counted)

    def upload(n: int) -> str:  # a client per thread, made in threads at once
        return S3FileStore(s3_store.url, client=make_s3_client()).put_file(source, f"k{n}")

    with ThreadPoolExecutor(4) as pool:
        uris = list(pool.map(upload, range(8)))
    assert all(s3_store.exists(uri) for uri in uris)
    assert reads == [], "a new client read botocore's JSON again"
    paths = shared_loader(botocore.session.Session()).search_paths
    assert len(paths) == len(set(paths))
