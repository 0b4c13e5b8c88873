"""Fixtures of the UI tests: a real ``agent ui`` (the CLI, in a subprocess) over an
embedded store that the tests fill through the Backend API, and a browser-like session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from agent.core.models import Task
from agent.store.sql import SqlBackend
from tests.server.live_server import LiveServer


class LiveUI(LiveServer):
    """``agent ui --port P`` (the CLI) with ``AGENT_HOME`` in ``workdir``, and a store on
    the same SQLite file for the tests to fill; with ``api_url``, over that server."""

    ready_path = "/ui/static/ui.css"

    def __init__(self, workdir: Path, api_url: str | None = None):
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        super().__init__(f"sqlite:///{home / 'agent.db'}", workdir)
        self.api_url = api_url
        self.backend = SqlBackend(self.db_url)

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.api_url:
            env["AGENT_API_URL"] = self.api_url
        return env

    def command(self) -> list[str]:
        return [sys.executable, "-m", "agent.cli.main", "ui", "--port", str(self.port)]

    def stop(self) -> None:
        super().stop()
        self.backend.close()


@pytest.fixture(scope="module")
def live_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveUI]:
    ui = LiveUI(tmp_path_factory.mktemp("ui")).start()
    yield ui
    ui.stop()


@pytest.fixture
def store(live_ui: LiveUI) -> SqlBackend:
    """The store ``agent ui`` serves (each test makes its own tasks, in its own project)."""
    return live_ui.backend


@pytest.fixture
def browser_session(live_ui: LiveUI) -> requests.Session:
    """A session that has loaded a page, so it holds the CSRF cookie."""
    session = requests.Session()
    session.get(live_ui.url + "/pipelines").raise_for_status()
    return session


def csrf_of(session: requests.Session) -> str:
    return session.cookies["agent_csrf"]


def make_pipeline_run(
    store: SqlBackend, project: str, name: str = "pipeline", args: dict | None = None, **dag
) -> Task:
    """A controller task with Args and a reported DAG (``nodes``/``edges`` in ``dag``)."""
    runtime = {"version": "1.0"}
    if dag:
        runtime["pipeline"] = {"nodes": dag.get("nodes", []), "edges": dag.get("edges", [])}
    hyperparams = {"Args": dict(args if args is not None else {"lr": 0.1, "_internal": "x"})}
    return store.create_task(
        Task(
            name=name, project=project, type="controller", hyperparams=hyperparams, runtime=runtime
        )
    )


def step(name: str, status: str = "pending", parents=(), task_id=None, **extra) -> dict:
    return {"name": name, "status": status, "parents": list(parents), "task_id": task_id, **extra}


@pytest.fixture
def agent_home_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """AGENT_HOME in a temp dir and no server, for commands run in process."""
    monkeypatch.setenv("AGENT_HOME", str(tmp_path / "home"))
    for name in ("AGENT_API_URL", "AGENT_API_TOKEN", "AGENT_UI_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"
