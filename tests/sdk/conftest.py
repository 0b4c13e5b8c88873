"""Fixtures of the SDK tests: an isolated ``AGENT_HOME`` and real subprocess scripts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sdk import logger as sdk_logger
from agent.sdk import session
from agent.store.base import Backend
from agent.store.factory import get_backend, reset_backends
from tests.services import REPO_ROOT

_AGENT_VARS = (
    "AGENT_API_URL",
    "AGENT_API_TOKEN",
    "AGENT_FILES_URL",
    "AGENT_TASK_ID",
    "AGENT_WORKER_ID",
)


@pytest.fixture
def agent_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh ``AGENT_HOME`` (embedded SQLite store, local files) for one test.

    The process-wide SDK state is put back afterwards: cached backends, the current
    task, and the exit hooks ``Task.init`` installs.
    """
    home = tmp_path / "agent-home"
    monkeypatch.setenv("AGENT_HOME", str(home))
    for name in _AGENT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(sys, "exit", sys.exit)
    monkeypatch.setattr(session, "_installed", False)
    reset_backends()
    try:
        yield home
    finally:
        _drop_current_task()
        sdk_logger.flush_all()
        reset_backends()


def _drop_current_task() -> None:
    task = session.current()
    if task is None:
        return
    task._closed = True
    if task._capture is not None:
        task._capture.stop()
    session.clear_current(task)


@pytest.fixture
def backend(agent_home: Path) -> Backend:
    """The embedded store of ``agent_home``."""
    return get_backend()


def script_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment of a script run by a test: this repo importable, its own AGENT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    env["AGENT_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@pytest.fixture
def run_script(agent_home: Path, tmp_path: Path):
    """Run Python source as a real script (``python script.py``) against ``agent_home``."""

    def run(
        source: str, name: str = "script.py", timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return subprocess.run(
            [sys.executable, str(path)],
            cwd=tmp_path,
            env=script_env(agent_home, **env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
