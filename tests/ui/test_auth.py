"""The UI inside a real ``agent server``: at ``/`` next to the API, and behind its token
(login form, HttpOnly SameSite=Strict cookie, CSRF) when it has one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from agent.core.models import Task
from agent.store.http import HttpBackend
from tests.server.live_server import LiveServer
from tests.ui.conftest import LiveUI

TOKEN = "ui-test-token"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    work = tmp_path_factory.mktemp("ui-token-server")
    with LiveServer(f"sqlite:///{work / 'agent.db'}", work, token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    work = tmp_path_factory.mktemp("ui-open-server")
    with LiveServer(f"sqlite:///{work / 'agent.db'}", work) as server:
        yield server


def log_in(server: LiveServer) -> requests.Session:
    session = requests.Session()
    login = session.get(f"{server.url}/login")
    assert login.ok and 'name="token"' in login.text
    answer = session.post(
        f"{server.url}/login",
        data={"csrf": session.cookies["agent_csrf"], "token": TOKEN, "next": "/tasks"},
        allow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/tasks"
    return session


def test_server_serves_the_ui_at_root_next_to_its_api(open_server):
    page = requests.get(f"{open_server.url}/")
    assert page.ok and "<h1>Pipelines</h1>" in page.text
    assert requests.get(f"{open_server.url}/api/v1/health").json()["status"] == "ok"
    assert "/api/v1/tasks" in requests.get(f"{open_server.url}/openapi.json").json()["paths"]
    missing = requests.get(f"{open_server.url}/api/v1/no-such-endpoint")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFound"
    assert not any(p.startswith("/pipelines") for p in requests.get(
        f"{open_server.url}/openapi.json").json()["paths"])  # fmt: skip


def test_without_the_token_only_the_login_page_is_served(token_server):
    page = requests.get(
        f"{token_server.url}/pipelines", headers={"Accept": "text/html"}, allow_redirects=False
    )
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/pipelines"
    for path in ("/tasks/anything/dag.json", "/queues", "/"):
        assert requests.get(f"{token_server.url}{path}").status_code == 401, path
    assert requests.get(f"{token_server.url}/login").ok
    assert requests.get(f"{token_server.url}/ui/static/ui.css").ok
    forged = requests.Session()
    forged.cookies.set("agent_session", TOKEN)  # the token itself is not the session
    assert forged.get(f"{token_server.url}/tasks").status_code == 401


def test_login_sets_an_httponly_strict_cookie_that_opens_the_pages(token_server):
    session = requests.Session()
    session.get(f"{token_server.url}/login")
    wrong = session.post(
        f"{token_server.url}/login",
        data={"csrf": session.cookies["agent_csrf"], "token": "nope"},
        allow_redirects=False,
    )
    assert wrong.status_code == 401 and "wrong token" in wrong.text
    answer = session.post(
        f"{token_server.url}/login",
        data={"csrf": session.cookies["agent_csrf"], "token": TOKEN},
        allow_redirects=False,
    )
    cookie = answer.headers["set-cookie"]
    assert "agent_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert TOKEN not in cookie
    assert session.get(f"{token_server.url}/pipelines").ok
    assert session.get(f"{token_server.url}/tasks").ok
    # The API still wants its bearer token: the UI's cookie is no key to it.
    assert session.get(f"{token_server.url}/api/v1/tasks").status_code == 401


def test_a_logged_in_post_without_csrf_is_refused(token_server):
    api = HttpBackend(token_server.url, token=TOKEN)
    task = api.create_task(Task(name="guarded", project="ui-auth"), queue="default")
    session = log_in(token_server)
    refused = session.post(f"{token_server.url}/tasks/{task.id}/abort")
    assert refused.status_code == 403
    assert api.get_task(task.id).status == "queued"
    done = session.post(
        f"{token_server.url}/tasks/{task.id}/abort", data={"csrf": session.cookies["agent_csrf"]}
    )
    assert done.ok and api.get_task(task.id).status == "stopped"
    logout = session.post(
        f"{token_server.url}/logout",
        data={"csrf": session.cookies["agent_csrf"]},
        allow_redirects=False,
    )
    assert logout.status_code == 303
    assert session.get(f"{token_server.url}/tasks").status_code == 401
    api.close()


def test_login_redirects_only_to_this_site(token_server):
    session = requests.Session()
    session.get(f"{token_server.url}/login")
    answer = session.post(
        f"{token_server.url}/login",
        data={"csrf": session.cookies["agent_csrf"], "token": TOKEN, "next": "//evil.example"},
        allow_redirects=False,
    )
    assert answer.headers["location"] == "/"


def test_agent_ui_serves_the_server_named_by_agent_api_url(open_server, tmp_path):
    api = HttpBackend(open_server.url)
    task = api.create_task(Task(name="remote-one", project="ui-remote"))
    api.append_logs(task.id, ["from the server's store"])
    ui = LiveUI(tmp_path, api_url=open_server.url).start()
    try:
        page = requests.get(f"{ui.url}/tasks/{task.id}", params={"tab": "console"})
        assert page.ok and "from the server&#39;s store" in page.text
        assert task.id in requests.get(f"{ui.url}/tasks", params={"project": "ui-remote"}).text
    finally:
        ui.stop()
        api.close()
