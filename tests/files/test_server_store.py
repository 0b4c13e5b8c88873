"""ServerFileStore and the files router, over a real uvicorn on loopback."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests

from agent.core.errors import Conflict, NotFound
from agent.files.base import StorageError
from agent.files.server import ServerFileStore

from .conftest import TOKEN, FilesServer, free_port

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _url(server: FilesServer, raw_key: str) -> str:
    return f"{server.url}/api/v1/files/{raw_key}"


@pytest.mark.parametrize(
    "raw_key", ["%2e%2e/x", "a/%2e%2e/%2e%2e/x", "a%5Cb", "/etc/passwd", "a//b", ""]
)
def test_router_refuses_unsafe_keys_with_json(files_server: FilesServer, raw_key: str) -> None:
    for method in ("PUT", "GET", "HEAD", "DELETE"):
        response = requests.request(method, _url(files_server, raw_key), data=b"x", headers=AUTH)
        assert response.status_code == 422, (method, raw_key, response.text)
        if method != "HEAD":
            assert "storage key" in response.json()["detail"]
    assert not (files_server.root.parent / "x").exists()


def test_router_answers_404_for_missing_files(files_server: FilesServer, ns: str) -> None:
    for method in ("GET", "HEAD", "DELETE"):
        response = requests.request(method, _url(files_server, f"{ns}/missing"), headers=AUTH)
        assert response.status_code == 404
        if method != "HEAD":
            detail = response.json()["detail"]
            assert "no file stored" in detail
            assert str(files_server.root) not in detail


def test_router_put_reports_size_and_sha256(files_server: FilesServer, ns: str) -> None:
    response = requests.put(_url(files_server, f"{ns}/f.bin"), data=b"payload", headers=AUTH)

    assert response.status_code == 200
    assert response.json() == {
        "key": f"{ns}/f.bin",
        "size": 7,
        "sha256": hashlib.sha256(b"payload").hexdigest(),
    }
    assert (files_server.root / ns / "f.bin").read_bytes() == b"payload"


def test_router_head_and_delete(files_server: FilesServer, ns: str) -> None:
    url = _url(files_server, f"{ns}/h.bin")
    requests.put(url, data=b"12345", headers=AUTH)

    head = requests.head(url, headers=AUTH)
    assert head.status_code == 200
    assert head.headers["content-length"] == "5"

    assert requests.delete(url, headers=AUTH).status_code == 204
    assert requests.head(url, headers=AUTH).status_code == 404


def test_router_runs_the_apps_auth_dependency(files_server: FilesServer, ns: str) -> None:
    assert requests.put(_url(files_server, f"{ns}/x"), data=b"x").status_code == 401
    listing = f"{files_server.url}/api/v1/files"
    assert requests.get(listing, params={"prefix": ns}).status_code == 401


def test_router_lists_keys_and_sizes_under_a_prefix(files_server: FilesServer, ns: str) -> None:
    requests.put(_url(files_server, f"{ns}/d/a.bin"), data=b"123", headers=AUTH)
    requests.put(_url(files_server, f"{ns}/d/s/b.bin"), data=b"", headers=AUTH)
    requests.put(_url(files_server, f"{ns}/e.bin"), data=b"1", headers=AUTH)
    listing = f"{files_server.url}/api/v1/files"

    answer = requests.get(listing, params={"prefix": f"{ns}/d/"}, headers=AUTH)
    unsafe = requests.get(listing, params={"prefix": "../"}, headers=AUTH)

    assert answer.status_code == 200
    assert answer.json() == {
        "files": [{"key": f"{ns}/d/a.bin", "size": 3}, {"key": f"{ns}/d/s/b.bin", "size": 0}]
    }
    assert unsafe.status_code == 422
    assert "storage key" in unsafe.json()["detail"]


def test_wrong_token_says_to_check_it(files_server: FilesServer, ns: str) -> None:
    store = ServerFileStore(files_server.url, token="wrong")

    with pytest.raises(StorageError, match="refused access.*AGENT_API_TOKEN"):
        store.put_bytes(b"x", f"{ns}/x")


def test_token_defaults_to_agent_api_token(
    files_server: FilesServer, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_API_TOKEN", TOKEN)
    store = ServerFileStore(files_server.url)

    assert store.exists(store.put_bytes(b"x", f"{ns}/x"))


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    store = ServerFileStore(f"http://127.0.0.1:{free_port()}", token=TOKEN)

    with pytest.raises(StorageError, match="unreachable.*agent server"):
        store.put_bytes(b"x", "k")


def test_clash_on_the_server_is_a_conflict(server_store: ServerFileStore, ns: str) -> None:
    server_store.put_bytes(b"file", f"{ns}/a")

    with pytest.raises(Conflict):
        server_store.put_bytes(b"x", f"{ns}/a/b")


def test_a_directory_key_is_not_a_file(
    server_store: ServerFileStore, ns: str, tmp_path: Path
) -> None:
    server_store.put_bytes(b"x", f"{ns}/d/f")

    assert not server_store.exists(f"{ns}/d")
    with pytest.raises(NotFound):
        server_store.get_file(f"{ns}/d", tmp_path / "d")


def test_upload_streams_from_the_file(
    server_store: ServerFileStore, ns: str, tmp_path: Path
) -> None:
    src = tmp_path / "big.bin"
    with src.open("wb") as fh:
        fh.truncate(5 * 1024 * 1024)

    uri = server_store.put_file(src, f"{ns}/big.bin")
    dest = server_store.get_file(uri, tmp_path / "back.bin")

    assert dest.stat().st_size == 5 * 1024 * 1024
