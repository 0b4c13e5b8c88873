"""``agent server`` as a process: auth, bind safety, crash durability, reaper, config."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from agent.core.errors import AgentError, NotFound
from agent.core.models import Task
from agent.server.main import bind_problem, is_loopback
from agent.store.http import HttpBackend, ServerUnavailable
from agent.store.sql import SqlBackend
from tests.server.live_server import LiveServer
from tests.services import REPO_ROOT, free_port

TOKEN = "s3cret-token"


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'agent.db'}"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("token-server")
    with LiveServer(sqlite_url(workdir), workdir, token=TOKEN) as server:
        yield server


# -- auth -----------------------------------------------------------------------------
def test_health_needs_no_token(token_server: LiveServer) -> None:
    response = requests.get(f"{token_server.url}/api/v1/health", timeout=5)
    assert response.status_code == 200 and response.json()["status"] == "ok"


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/v1/queues"),
        ("POST", "/api/v1/queues/claim"),
        ("GET", "/api/v1/config"),
        ("PUT", "/api/v1/files/a/b.bin"),
        ("GET", "/openapi.json"),
        ("GET", "/api/v1/no-such-endpoint"),
    ],
)
@pytest.mark.parametrize("auth", [None, "Bearer wrong", TOKEN, f"Basic {TOKEN}"])
def test_requests_without_the_token_get_401_json(
    token_server: LiveServer, method: str, path: str, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = requests.request(
        method, token_server.url + path, headers=headers, data=b"x", timeout=5
    )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "Unauthorized"


def test_the_token_opens_the_api_and_the_files(token_server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{token_server.url}/api/v1/files/dir/blob.bin"
    assert requests.put(url, data=b"payload", headers=headers, timeout=5).status_code == 200
    assert requests.get(url, headers=headers, timeout=5).content == b"payload"
    client = HttpBackend(token_server.url, token=TOKEN)
    task = client.create_task(Task(name="authorized"))
    assert client.get_task(task.id).name == "authorized"


def test_a_client_without_the_token_gets_a_clear_error(token_server: LiveServer) -> None:
    with pytest.raises(AgentError, match="401"):
        HttpBackend(token_server.url).list_queues()


# -- binding ----------------------------------------------------------------------------
def _server_cmd(tmp_path: Path, host: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "agent.server", "--host", host, "--port", str(port),
        "--db", sqlite_url(tmp_path), "--files", str(tmp_path / "files"), *extra,
    ]  # fmt: skip


def test_non_loopback_bind_without_token_refuses_to_start(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "AGENT_HOME": str(tmp_path)}
    result = subprocess.run(
        _server_cmd(tmp_path, "0.0.0.0", free_port()),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "0.0.0.0" in message and "--token" in message and "--insecure" in message


def test_insecure_allows_a_non_loopback_bind(tmp_path: Path) -> None:
    with LiveServer(sqlite_url(tmp_path), tmp_path, host="0.0.0.0", extra_args=("--insecure",)):
        pass  # start() waited for the health check on 127.0.0.1


@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("::1", True),
     ("[::1]", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False),
     ("myhost.example", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert (bind_problem(host, None, False) is None) is loopback
    assert bind_problem(host, "token", False) is None
    assert bind_problem(host, None, True) is None


# -- durability --------------------------------------------------------------------------
@pytest.mark.slow
def test_acknowledged_enqueues_survive_kill_9(tmp_path: Path) -> None:
    db_url = sqlite_url(tmp_path)
    server = LiveServer(db_url, tmp_path).start()
    client = HttpBackend(server.url, retries=12, max_backoff=1.0)
    ids = [client.create_task(Task(name=f"t{i}", project="durable")).id for i in range(400)]
    acked: list[str] = []
    failures: list[Exception] = []
    stop = threading.Event()

    def enqueue_loop() -> None:
        for task_id in ids:
            if stop.is_set():
                return
            try:
                client.enqueue(task_id, "durable")
            except AgentError as exc:  # the one in flight when the server died
                failures.append(exc)
                continue
            acked.append(task_id)

    producer = threading.Thread(target=enqueue_loop)
    producer.start()
    try:
        _wait_until(lambda: len(acked) >= 50, timeout=60)
        server.kill()
        at_kill = len(acked)
        server = LiveServer(db_url, tmp_path, port=server.port).start()
        _wait_until(lambda: len(acked) >= at_kill + 50 or not producer.is_alive(), timeout=60)
    finally:
        stop.set()
        producer.join(timeout=60)
        server.stop()
    assert len(acked) > at_kill  # the client went on against the restarted server
    assert all(isinstance(exc, ServerUnavailable) for exc in failures), failures
    store = SqlBackend(db_url)
    try:
        entries = set(store.queue_entries("durable"))
        missing = [task_id for task_id in acked if task_id not in entries]
        assert missing == []
        queued = {task.id for task in store.query_tasks(project="durable", status="queued")}
        assert set(acked) <= queued
    finally:
        store.close()


def _wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- the server's own work ---------------------------------------------------------------
@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("open-server")
    with LiveServer(sqlite_url(workdir), workdir) as server:
        yield server


def test_the_reaper_fails_tasks_of_lost_workers_on_its_own(open_server: LiveServer) -> None:
    client = HttpBackend(open_server.url)
    task = client.create_task(Task(name="orphan"))
    client.enqueue(task.id, "reaper")
    client.claim(["reaper"], "vanishing-worker", lease_s=0.1)
    _wait_until(lambda: client.get_task(task.id).status == "failed", timeout=15)
    assert client.get_task(task.id).status_message == "worker lost"


def test_config_advertises_the_hosted_files(open_server: LiveServer) -> None:
    config = HttpBackend(open_server.url).server_config()
    assert config["files_url"] == f"{open_server.url}/api/v1/files"
    assert config["files_hosted"] is True


def test_config_advertises_an_s3_destination_as_is(tmp_path: Path) -> None:
    with LiveServer(sqlite_url(tmp_path), tmp_path, files="s3://bucket/prefix") as server:
        config = HttpBackend(server.url).server_config()
        assert config["files_url"] == "s3://bucket/prefix" and config["files_hosted"] is False
        response = requests.put(f"{server.url}/api/v1/files/x", data=b"x", timeout=5)
        assert response.status_code in (404, 405)  # not hosting any files


@pytest.mark.slow
def test_many_waiting_claims_do_not_starve_other_requests(open_server: LiveServer) -> None:
    # More long-polls than anyio's default 40 worker threads.
    claimers = [HttpBackend(open_server.url) for _ in range(48)]
    threads = [
        threading.Thread(target=c.claim, args=(["starve-empty"], f"w{i}"), kwargs={"timeout": 6})
        for i, c in enumerate(claimers)
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    quick = HttpBackend(open_server.url, timeout=4, retries=1)
    assert "starve-empty" not in [q.name for q in quick.list_queues()]
    for thread in threads:
        thread.join(timeout=30)


def test_errors_are_json_with_the_error_type(open_server: LiveServer) -> None:
    url = open_server.url
    response = requests.get(f"{url}/api/v1/tasks/{'0' * 32}", timeout=5)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "NotFound"
    response = requests.post(f"{url}/api/v1/queues/claim", json={"queues": []}, timeout=5)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "InvalidInput"
    response = requests.post(f"{url}/api/v1/tasks", data=b"{not json", timeout=5)
    assert response.status_code == 422
    response = requests.delete(f"{url}/api/v1/queues", timeout=5)
    assert response.status_code == 405
    with pytest.raises(NotFound):
        HttpBackend(url).get_queue("never-made")


def test_the_busiest_endpoints_answer_like_every_other(open_server: LiveServer) -> None:
    # Valid requests to these take the server's fast path; others go through FastAPI.
    api = f"{open_server.url}/api/v1"

    def post(path: str, body: object, **params: str) -> requests.Response:
        return requests.post(f"{api}{path}", json=body, params=params, timeout=10)

    def invalid(response: requests.Response) -> list[str]:
        assert response.status_code == 422, response.text
        assert response.json()["error"]["type"] == "InvalidInput"
        return [d["loc"] for d in response.json()["error"]["details"]]

    created = post("/tasks", {"name": "hot", "project": "hot"}, queue="hot-q", priority="3")
    assert created.status_code == 200 and created.headers["content-type"] == "application/json"
    task = created.json()
    assert task["status"] == "queued" and task["queue"] == "hot-q"
    assert requests.get(f"{api}/tasks/{task['id']}", timeout=10).json() == task
    assert invalid(post("/tasks", {}, queue="")) == ["query.queue"]
    assert invalid(post("/tasks", {}, priority="high")) == ["query.priority"]
    assert invalid(post("/tasks", {}, priority=str(2**31))) == ["query.priority"]
    assert invalid(post("/tasks", {"type": "nope"})) == ["body.type"]
    assert invalid(post(f"/tasks/{task['id']}/status", {})) == ["body.status"]
    assert invalid(post(f"/tasks/{task['id']}/enqueue", {"queue": ""})) == ["body.queue"]
    assert invalid(post(f"/tasks/{task['id']}/logs", {"lines": [1]}))
    assert invalid(post("/queues/claim", {"queues": ["hot-q"]})) == ["body.worker_id"]

    refused = post(f"/tasks/{task['id']}/status", {"status": "completed"})
    assert refused.status_code == 409
    assert refused.json()["error"] | {"message": ""} == {
        "type": "IllegalTransition", "message": "", "current": "queued", "new": "completed",
    }  # fmt: skip
    missing = post(f"/tasks/{'0' * 32}/enqueue", {"queue": "hot-q"})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFound"

    claimed = post("/queues/claim", {"queues": ["hot-q"], "worker_id": "w", "timeout": 5})
    assert claimed.json()["task"]["id"] == task["id"]
    assert claimed.json()["task"] == requests.get(f"{api}/tasks/{task['id']}", timeout=10).json()
    assert post(f"/tasks/{task['id']}/logs", {"lines": ["a", {"text": "b"}]}).json() == {
        "last_seq": 2
    }
    done = post(f"/tasks/{task['id']}/status", {"status": "completed", "message": "ok"})
    assert done.json()["status"] == "completed" and done.json()["status_message"] == "ok"
    empty = post("/queues/claim", {"queues": ["hot-q"], "worker_id": "w"})
    assert empty.json() == {"task": None}


def test_a_stopped_server_is_a_clear_error() -> None:
    client = HttpBackend(f"http://127.0.0.1:{free_port()}", retries=2, max_backoff=0.1)
    with pytest.raises(ServerUnavailable, match="cannot reach the agent server"):
        client.list_queues()


def test_the_server_takes_its_token_from_agent_toml(tmp_path: Path) -> None:
    home = tmp_path / "home"  # LiveServer's AGENT_HOME
    home.mkdir()
    (home / "agent.toml").write_text(f'api_token = "{TOKEN}"\n', encoding="utf-8")
    with LiveServer(sqlite_url(tmp_path), tmp_path) as server:
        assert requests.get(f"{server.url}/api/v1/queues", timeout=5).status_code == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        answer = requests.get(f"{server.url}/api/v1/queues", headers=headers, timeout=5)
        assert answer.status_code == 200
        assert "auth token" in server.log_path.read_text()
