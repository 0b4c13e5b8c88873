"""Fixtures: the three stores on real services (moto's S3 server, uvicorn) on loopback."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
import requests
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException

from agent.files.base import FileStore
from agent.files.local import LocalFileStore
from agent.files.server import ServerFileStore
from agent.files.server_routes import make_files_router

TOKEN = "test-token"
BUCKET = "agent-test-bucket"
AWS_REGION = "us-east-1"


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _require_moto() -> None:
    """Skip without moto[server], except in CI where the S3 tests must run."""
    if importlib.util.find_spec("moto") is not None and importlib.util.find_spec("flask"):
        return
    message = "moto[server] is not installed: pip install 'moto[server]' to run the S3 tests"
    if _in_ci():
        pytest.fail(f"{message} (CI=true: S3 tests may not be skipped)")
    pytest.skip(message)


def _wait_for_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"moto server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(requests.ConnectionError):
            requests.get(url, timeout=1)
            return
        time.sleep(0.05)
    pytest.fail(
        f"moto server did not answer at {url} within {timeout}s:\n{log.read_text()[-2000:]}"
    )


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a moto S3 server running as a subprocess on a free loopback port."""
    _require_moto()
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_http(f"{url}/moto-api/", proc, log, timeout=30)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def s3_bucket(moto_endpoint: str) -> str:
    """A bucket created in the moto server."""
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name=AWS_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture(autouse=True)
def agent_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``AGENT_HOME`` per test, and no server settings leaking in."""
    home = tmp_path / "agent-home"
    monkeypatch.setenv("AGENT_HOME", str(home))
    for name in ("AGENT_API_URL", "AGENT_API_TOKEN", "AGENT_FILES_URL"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    """Dummy AWS credentials and ``AGENT_S3_ENDPOINT_URL`` pointing at moto."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AGENT_S3_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


def _require_token(authorization: str | None = Header(default=None)) -> None:
    if authorization != f"Bearer {TOKEN}":
        raise HTTPException(401, detail="missing or wrong bearer token")


@dataclass
class FilesServer:
    """A uvicorn server running an app with the files router."""

    url: str
    root: Path


@pytest.fixture(scope="session")
def files_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilesServer]:
    """uvicorn in a thread on a free loopback port, serving ``make_files_router``."""
    root = tmp_path_factory.mktemp("server-files")
    app = FastAPI()
    app.include_router(make_files_router(root, dependencies=[Depends(_require_token)]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield FilesServer(url=f"http://127.0.0.1:{port}", root=root)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


class _QuietHandler(SimpleHTTPRequestHandler):
    requests_seen: list[str]

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        self.requests_seen.append(self.path)
        super().do_GET()


@dataclass
class HttpSite:
    """A plain web server (http.server) serving ``root``; ``hits`` lists the GET paths."""

    url: str
    root: Path
    hits: list[str]


@pytest.fixture
def http_site(tmp_path: Path) -> Iterator[HttpSite]:
    """http.server in a thread, serving a temp dir on a free loopback port."""
    root = tmp_path / "site"
    root.mkdir()
    hits: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"requests_seen": hits})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield HttpSite(url=f"http://127.0.0.1:{httpd.server_address[1]}", root=root, hits=hits)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def ns() -> str:
    """A fresh key prefix, so that tests on shared servers never see each other's blobs."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def local_store(tmp_path: Path) -> LocalFileStore:
    return LocalFileStore(tmp_path / "files")


@pytest.fixture
def s3_store(s3_env: str, s3_bucket: str):  # -> S3FileStore
    from agent.files.s3 import S3FileStore

    return S3FileStore(f"s3://{s3_bucket}/{uuid.uuid4().hex[:8]}/prefix")


@pytest.fixture
def server_store(files_server: FilesServer) -> Iterator[ServerFileStore]:
    store = ServerFileStore(files_server.url, token=TOKEN)
    yield store
    store.close()


@pytest.fixture(params=["local", "s3", "server"])
def store(request: pytest.FixtureRequest) -> FileStore:
    """Each FileStore implementation in turn, on a real backend."""
    return request.getfixturevalue(f"{request.param}_store")
