"""Fixtures of the daemon tests: a temp AGENT_HOME with its SQLite store, daemon starters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.store.sql import SqlBackend
from tests.daemon.daemon_support import DaemonProcess


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("AGENT_HOME", str(home))
    for name in ("AGENT_API_URL", "AGENT_API_TOKEN", "AGENT_WORKER_ID", "AGENT_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def store(home: Path) -> Iterator[SqlBackend]:
    backend = SqlBackend(f"sqlite:///{home / 'agent.db'}")
    yield backend
    backend.close()


@pytest.fixture
def start_daemon(home: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """``start_daemon("--queue", "q", ...)``: a running daemon (``--no-env`` added)."""
    daemons: list[DaemonProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> DaemonProcess:
        daemon = DaemonProcess(home, ["--no-env", *args], env=env).start()
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.stop()
