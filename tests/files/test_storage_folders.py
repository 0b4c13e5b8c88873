"""StorageManager.upload_folder / download_folder / list on a local folder, S3 (moto's
server) and a real ``agent server`` subprocess."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from agent.core.errors import InvalidInput, NotFound
from agent.files.base import StorageError
from agent.files.storage_manager import StorageManager
from tests.server.live_server import LiveServer

from .conftest import AWS_REGION, free_port

SERVER_TOKEN = "folders-token"


@dataclass
class Remote:
    """A folder URL on one store, and how that store names the files under it."""

    url: str
    names_start: str  # "" for a local folder, the key prefix for S3 and the server

    def names(self, *relative: str) -> list[str]:
        return [self.names_start + r for r in relative]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("folders-server")
    with LiveServer(f"sqlite:///{workdir / 'server.db'}", workdir, token=SERVER_TOKEN) as live:
        yield live


@pytest.fixture(params=["local", "s3", "server"])
def remote(request: pytest.FixtureRequest, tmp_path: Path, ns: str) -> Remote:
    if request.param == "local":
        return Remote(str(tmp_path / "remote" / "data"), "")
    if request.param == "s3":
        request.getfixturevalue("s3_env")
        bucket = request.getfixturevalue("s3_bucket")
        return Remote(f"s3://{bucket}/{ns}/data", f"{ns}/data/")
    live = request.getfixturevalue("live_server")
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("AGENT_API_URL", live.url)
    monkeypatch.setenv("AGENT_API_TOKEN", SERVER_TOKEN)
    return Remote(f"{live.url}/api/v1/files/{ns}/data", f"{ns}/data/")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A local folder: a.txt, b.json, sub/c.json, sub/deeper/d.bin."""
    root = tmp_path / "tree"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "b.json").write_text('{"b": 1}')
    (root / "sub" / "c.json").write_text('{"c": 2}')
    (root / "sub" / "deeper" / "d.bin").write_bytes(b"\x00" * 1000)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_upload_list_download_keeps_the_tree(remote: Remote, tree: Path, tmp_path: Path) -> None:
    assert StorageManager.upload_folder(tree, remote.url) == remote.url

    names = StorageManager.list(remote.url)
    local = Path(StorageManager.download_folder(remote.url, tmp_path / "out"))

    expected = ["a.txt", "b.json", "sub/c.json", "sub/deeper/d.bin"]
    assert names == remote.names(*expected)
    assert local == tmp_path / "out"
    assert _files(local / remote.names_start) == _files(tree)


def test_list_with_full_paths_and_sizes(remote: Remote, tree: Path) -> None:
    StorageManager.upload_folder(tree, remote.url)

    full = StorageManager.list(remote.url, return_full_path=True)
    with_sizes = StorageManager.list(remote.url + "/sub", with_metadata=True)
    full_with_sizes = StorageManager.list(remote.url, return_full_path=True, with_metadata=True)

    assert full[0] == f"{remote.url}/a.txt"
    assert full[-1] == f"{remote.url}/sub/deeper/d.bin"
    # S3 and the server name files by key, a local folder by their path inside it.
    sub_names = remote.names("sub/c.json", "sub/deeper/d.bin")
    if not remote.names_start:
        sub_names = ["c.json", "deeper/d.bin"]
    assert with_sizes == [{"name": sub_names[0], "size": 8}, {"name": sub_names[1], "size": 1000}]
    assert full_with_sizes[-1] == {"name": f"{remote.url}/sub/deeper/d.bin", "size": 1000}
    assert Path(StorageManager.get_local_copy(full[0])).read_text() == "alpha"


def test_wildcards_filter_on_the_name_or_the_relative_path(
    remote: Remote, tree: Path, tmp_path: Path
) -> None:
    StorageManager.upload_folder(tree, remote.url, match_wildcard="*.json")
    assert StorageManager.list(remote.url) == remote.names("b.json", "sub/c.json")

    StorageManager.upload_folder(tree, remote.url)
    out = Path(StorageManager.download_folder(remote.url, tmp_path / "o", match_wildcard="sub/*"))

    assert sorted(_files(out / remote.names_start)) == ["sub/c.json", "sub/deeper/d.bin"]


def test_download_keeps_local_files_unless_overwrite(
    remote: Remote, tree: Path, tmp_path: Path
) -> None:
    StorageManager.upload_folder(tree, remote.url)
    out = Path(StorageManager.download_folder(remote.url, tmp_path / "out"))
    local_a = out / remote.names_start / "a.txt"
    local_a.write_text("edited here")

    StorageManager.download_folder(remote.url, out)
    assert local_a.read_text() == "edited here"

    StorageManager.download_folder(remote.url, out, overwrite=True)
    assert local_a.read_text() == "alpha"


def test_empty_files_need_skip_zero_size_check(
    remote: Remote, tree: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tree / "empty.txt").write_bytes(b"")
    StorageManager.upload_folder(tree, remote.url)

    with caplog.at_level(logging.WARNING):
        first = Path(StorageManager.download_folder(remote.url, tmp_path / "one"))
    second = Path(
        StorageManager.download_folder(remote.url, tmp_path / "two", skip_zero_size_check=True)
    )

    assert not (first / remote.names_start / "empty.txt").exists()
    assert "skip_zero_size_check=True" in caplog.text
    assert (second / remote.names_start / "empty.txt").read_bytes() == b""


def test_missing_remote_folder_is_not_found(remote: Remote, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="cannot download folder"):
        StorageManager.download_folder(remote.url + "/none", tmp_path / "out")

    silenced = StorageManager.download_folder(
        remote.url + "/none", tmp_path / "out", silence_errors=True
    )
    assert silenced == str(tmp_path / "out")


def test_default_download_folder_is_in_the_storage_cache(
    remote: Remote, tree: Path, agent_home: Path
) -> None:
    StorageManager.upload_folder(tree, remote.url)

    first = Path(StorageManager.download_folder(remote.url))
    second = Path(StorageManager.download_folder(remote.url))

    assert first == second
    assert first.is_relative_to(agent_home / "cache" / "storage")
    assert (first / remote.names_start / "sub" / "c.json").read_text() == '{"c": 2}'


def test_missing_local_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"cannot upload folder .*nope.*no such local folder"):
        StorageManager.upload_folder(tmp_path / "nope", str(tmp_path / "remote"))
    with pytest.raises(NotFound, match=r"cannot list .*nope.*no such folder"):
        StorageManager.list(str(tmp_path / "nope"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotFound, match="it is a file"):
        StorageManager.upload_folder(tmp_path / "file.txt", str(tmp_path / "remote"))


def test_local_folder_as_file_url(tree: Path, tmp_path: Path) -> None:
    remote = (tmp_path / "remote").as_uri()

    StorageManager.upload_folder(str(tree), remote)

    assert StorageManager.list(remote, return_full_path=True)[0] == f"{remote}/a.txt"
    assert _files(tmp_path / "remote") == _files(tree)


@pytest.mark.parametrize("url", ["http://example.invalid/data/", "gs://bucket/data"])
def test_urls_that_cannot_hold_folders_are_refused(url: str, tree: Path) -> None:
    with pytest.raises(InvalidInput, match="folder"):
        StorageManager.upload_folder(tree, url)
    with pytest.raises(InvalidInput, match="folder"):
        StorageManager.list(url)


def test_s3_string_prefix_lists_neighbours_as_clearml(
    s3_env: str, s3_bucket: str, ns: str, tree: Path
) -> None:
    StorageManager.upload_folder(tree, f"s3://{s3_bucket}/{ns}/data")
    StorageManager.upload_folder(tree / "sub", f"s3://{s3_bucket}/{ns}/data2")

    assert len(StorageManager.list(f"s3://{s3_bucket}/{ns}/data")) == 6
    assert len(StorageManager.list(f"s3://{s3_bucket}/{ns}/data/")) == 4


def test_missing_bucket_is_not_found(s3_env: str, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="bucket 'no-such-bucket' does not exist"):
        StorageManager.download_folder("s3://no-such-bucket/data/", tmp_path / "out")


def test_s3_keys_that_lead_outside_are_refused(
    s3_env: str, s3_bucket: str, ns: str, tmp_path: Path
) -> None:
    client = boto3.client("s3", endpoint_url=s3_env, region_name=AWS_REGION)
    client.put_object(Bucket=s3_bucket, Key=f"{ns}/../../escaped.txt", Body=b"x")

    with pytest.raises(InvalidInput, match="escaped.txt"):
        StorageManager.download_folder(f"s3://{s3_bucket}/{ns}/", tmp_path / "out" / "in")
    assert not (tmp_path / "escaped.txt").exists()


def test_server_url_without_our_token_is_refused(live_server: LiveServer, ns: str) -> None:
    # No AGENT_API_URL: the server is not ours, so the token is not sent to it.
    with pytest.raises(StorageError, match="refused access"):
        StorageManager.list(f"{live_server.url}/api/v1/files/{ns}/")


def test_unreachable_server_fails_naming_the_files(tree: Path, monkeypatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AGENT_API_URL", url)

    with pytest.raises(StorageError, match=r"failed uploading 4 of 4 files .*a\.txt.*unreachable"):
        StorageManager.upload_folder(tree, f"{url}/api/v1/files/data", retries=1)
