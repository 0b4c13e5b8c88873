"""Fixtures of the CLI tests: an embedded SQLite store in a temp AGENT_HOME, a runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.cli.main import cli
from agent.core.models import Task
from agent.store.base import Backend
from agent.store.factory import get_backend, reset_backends

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def agent_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """AGENT_HOME in a temp dir, no server, wide tables, fresh backends."""
    home = tmp_path / "home"
    monkeypatch.setenv("AGENT_HOME", str(home))
    for name in ("AGENT_API_URL", "AGENT_API_TOKEN", "AGENT_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    reset_backends()
    yield home
    reset_backends()


@pytest.fixture
def backend(agent_home: Path) -> Backend:
    """The backend the CLI will use (SqlBackend on SQLite in ``agent_home``)."""
    return get_backend()


def _runner() -> CliRunner:
    try:  # click < 8.2 mixes stderr into stdout unless told not to
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


@pytest.fixture
def invoke(agent_home: Path):
    """Run ``agent ARGS...`` in process; returns click's Result (stdout, stderr, exit_code)."""

    def run(*args: str) -> Result:
        return _runner().invoke(cli, list(args), prog_name="agent", catch_exceptions=False)

    return run


@pytest.fixture
def run_agent(agent_home: Path):
    """Run ``python -m agent.cli.main ARGS...`` as a real subprocess."""

    def run(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "agent.cli.main", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            env={**os.environ, **env},
        )

    return run


@pytest.fixture
def make_task(backend: Backend):
    """Create a task with sensible defaults: ``make_task(name=..., hyperparams=...)``."""

    def make(**fields) -> Task:
        fields.setdefault("name", "train")
        fields.setdefault("project", "demo")
        fields.setdefault("type", "training")
        return backend.create_task(Task(**fields))

    return make


@pytest.fixture
def running_task(backend: Backend, make_task):
    """Create a task and have worker ``w1`` claim it from ``default`` (in_progress)."""

    def make(queue: str = "default", worker: str = "w1", **fields) -> Task:
        task = make_task(**fields)
        backend.enqueue(task.id, queue)
        claimed = backend.claim([queue], worker)
        assert claimed is not None and claimed.id == task.id
        return claimed

    return make
