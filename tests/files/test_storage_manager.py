"""StorageManager.get_local_copy / upload_file over http, s3, the server and local files."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from agent.core.errors import InvalidInput, NotFound
from agent.files.storage_manager import StorageManager

from .conftest import TOKEN, FilesServer, HttpSite


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_http_download_lands_in_the_cache_and_is_reused(
    http_site: HttpSite, agent_home: Path
) -> None:
    (http_site.root / "data.csv").write_text("a,b\n1,2\n")
    url = f"{http_site.url}/data.csv"

    first = Path(StorageManager.get_local_copy(url))
    second = Path(StorageManager.get_local_copy(url))

    assert first == second
    assert first.name == "data.csv"
    assert first.is_relative_to(agent_home / "cache" / "storage")
    assert first.read_text() == "a,b\n1,2\n"
    assert http_site.hits == ["/data.csv"]


def test_force_download_fetches_again(http_site: HttpSite) -> None:
    (http_site.root / "v.txt").write_text("v1")
    url = f"{http_site.url}/v.txt"
    StorageManager.get_local_copy(url)
    (http_site.root / "v.txt").write_text("v2")

    assert Path(StorageManager.get_local_copy(url)).read_text() == "v1"
    assert Path(StorageManager.get_local_copy(url, force_download=True)).read_text() == "v2"
    assert len(http_site.hits) == 2


def test_cache_context_keeps_downloads_apart(http_site: HttpSite, agent_home: Path) -> None:
    (http_site.root / "f.txt").write_text("x")
    url = f"{http_site.url}/f.txt"

    plain = Path(StorageManager.get_local_copy(url))
    in_context = Path(StorageManager.get_local_copy(url, cache_context="datasets"))

    assert plain != in_context
    assert in_context.is_relative_to(agent_home / "cache" / "storage" / "datasets")
    with pytest.raises(InvalidInput, match="cache context"):
        StorageManager.get_local_copy(url, cache_context="../x")


def test_http_404_is_not_found(http_site: HttpSite) -> None:
    with pytest.raises(NotFound, match="404"):
        StorageManager.get_local_copy(f"{http_site.url}/missing.bin")


def test_zip_over_http_is_extracted_once(http_site: HttpSite) -> None:
    (http_site.root / "ds.zip").write_bytes(_zip_bytes({"ds/a.txt": b"A", "b.txt": b"B"}))
    url = f"{http_site.url}/ds.zip"

    folder = Path(StorageManager.get_local_copy(url, extract_archive=True))

    assert folder.is_dir()
    assert (folder / "ds" / "a.txt").read_bytes() == b"A"
    assert (folder / "b.txt").read_bytes() == b"B"
    assert Path(StorageManager.get_local_copy(url, extract_archive=True)) == folder
    assert Path(StorageManager.get_local_copy(url)).is_file()


def test_archive_members_that_escape_are_refused(http_site: HttpSite) -> None:
    (http_site.root / "evil.zip").write_bytes(_zip_bytes({"../../evil.txt": b"x"}))

    with pytest.raises(InvalidInput, match="leads outside"):
        StorageManager.get_local_copy(f"{http_site.url}/evil.zip", extract_archive=True)


def test_local_files_are_returned_in_place(tmp_path: Path) -> None:
    path = tmp_path / "local.txt"
    path.write_text("here")

    assert StorageManager.get_local_copy(str(path)) == str(path)
    assert StorageManager.get_local_copy(path.as_uri()) == str(path)
    with pytest.raises(NotFound):
        StorageManager.get_local_copy(str(tmp_path / "missing.txt"))


def test_local_tar_is_extracted_into_the_cache(tmp_path: Path, agent_home: Path) -> None:
    archive = tmp_path / "ds.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("inner/x.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"X"))

    folder = Path(StorageManager.get_local_copy(archive.as_uri(), extract_archive=True))

    assert (folder / "inner" / "x.txt").read_bytes() == b"X"
    assert folder.is_relative_to(agent_home / "cache" / "storage")


def test_s3_upload_then_local_copy(s3_env: str, s3_bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(b"\x00\x01" * 100)
    remote = f"s3://{s3_bucket}/storage-manager/weights.bin"

    assert StorageManager.upload_file(src, remote) == remote
    local = Path(StorageManager.get_local_copy(remote))

    assert local.name == "weights.bin"
    assert local.read_bytes() == src.read_bytes()


def test_s3_missing_object_is_not_found(s3_env: str, s3_bucket: str) -> None:
    with pytest.raises(NotFound):
        StorageManager.get_local_copy(f"s3://{s3_bucket}/storage-manager/none.bin")


def test_server_upload_and_copy_use_the_configured_token(
    files_server: FilesServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_API_URL", files_server.url)
    monkeypatch.setenv("AGENT_API_TOKEN", TOKEN)
    src = tmp_path / "report.html"
    src.write_text("<html/>")
    remote = f"{files_server.url}/api/v1/files/storage-manager/report.html"

    assert StorageManager.upload_file(src, remote) == remote
    assert Path(StorageManager.get_local_copy(remote)).read_text() == "<html/>"


def test_upload_to_a_local_path_or_directory(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("a")
    (tmp_path / "dir").mkdir()

    assert StorageManager.upload_file(src, str(tmp_path / "b.txt")) == str(tmp_path / "b.txt")
    assert (
        StorageManager.upload_file(src, (tmp_path / "dir").as_uri())
        == (tmp_path / "dir" / "a.txt").as_uri()
    )
    assert (tmp_path / "dir" / "a.txt").read_text() == "a"


@pytest.mark.parametrize("url", ["gs://bucket/x.bin", "ftp://host/x.bin"])
def test_unsupported_schemes_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="not supported"):
        StorageManager.get_local_copy(url)


def test_upload_to_a_plain_web_url_is_refused(http_site: HttpSite, tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("a")
    with pytest.raises(InvalidInput, match="agent server"):
        StorageManager.upload_file(src, f"{http_site.url}/a.txt")


def test_files_server_urls_take_uploads_that_read_back(
    files_server: FilesServer, tmp_path: Path, agent_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "adult.data"
    src.write_text("39, State-gov\n")
    local = StorageManager.get_files_server()
    assert local == (agent_home / "files").as_uri()

    monkeypatch.setenv("AGENT_API_URL", files_server.url)
    monkeypatch.setenv("AGENT_API_TOKEN", TOKEN)
    server = StorageManager.get_files_server()
    assert server == f"{files_server.url}/api/v1/files"
    monkeypatch.setenv("AGENT_FILES_URL", f"{files_server.url}/api/v1/files/")
    assert StorageManager.get_files_server() == server

    for base in (local, server):
        url = StorageManager.upload_file(src, f"{base}/examples/adult.data")
        assert url == f"{base}/examples/adult.data"
        assert Path(StorageManager.get_local_copy(url)).read_text() == "39, State-gov\n"


def test_files_server_keeps_a_configured_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_FILES_URL", "s3://bucket/prefix/")
    assert StorageManager.get_files_server() == "s3://bucket/prefix"
