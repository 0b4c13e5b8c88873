"""Fixtures of the UI tests: a real ``agent ui`` (the CLI, in a subprocess) over an
embedded store that the tests fill through the Backend API, and a browser-like session."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from agent.core.models import Task
from agent.store.sql import SqlBackend
from tests.services import REPO_ROOT, free_port


class LiveUI:
    """``agent ui --port P`` with ``AGENT_HOME=home``, and a store on the same SQLite file."""

    def __init__(self, home: Path):
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "ui.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.backend = SqlBackend(f"sqlite:///{home / 'agent.db'}")

    def start(self, timeout: float = 30.0) -> LiveUI:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
        env["AGENT_HOME"] = str(self.home)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "agent.cli.main", "ui", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT
            )
        wait_until_up(self.url + "/ui/static/ui.css", self.proc, timeout, self.log)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.backend.close()


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float, log) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the UI exited with {proc.returncode}:\n{log()}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the UI did not answer within {timeout}s:\n{log()}")


@pytest.fixture(scope="module")
def live_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveUI]:
    ui = LiveUI(tmp_path_factory.mktemp("ui-home")).start()
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
