"""Fixtures of the pipeline tests: a real SQLite store in a temp AGENT_HOME, daemons."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.store.base import Backend
from tests.pipeline.support import Daemon, wait_for


def _reset_pipeline_state() -> None:
    from agent.pipeline import PipelineController, PipelineDecorator, reporting
    from agent.pipeline.values import _file_store
    from agent.store.factory import reset_backends

    reset_backends()
    _file_store.cache_clear()
    PipelineDecorator._mode = "remote"
    PipelineDecorator._default_execution_queue = None
    PipelineDecorator._active = None
    PipelineController._running = None
    reporting.forget()


def _use_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("AGENT_HOME", str(home))
    for name in ("AGENT_API_URL", "AGENT_API_TOKEN", "AGENT_FILES_URL", "AGENT_TASK_ID",
                 "AGENT_WORKER_ID", "AGENT_PIPELINE_FORCE_RERUN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    _reset_pipeline_state()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    _use_home(monkeypatch, home)
    yield home
    _reset_pipeline_state()


@pytest.fixture
def store(home: Path) -> Backend:
    from agent.store.factory import get_backend

    return get_backend()


@dataclass
class Remote:
    """A store with a services-mode daemon and a default-queue daemon serving it."""

    home: Path
    store: Backend
    daemons: list[Daemon]

    def logs(self) -> str:
        return "\n".join(d.log()[-3000:] for d in self.daemons)


@pytest.fixture(scope="module")
def remote_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Daemon]]]:
    home = tmp_path_factory.mktemp("remote") / "home"
    home.mkdir()
    daemons = [
        Daemon(home, "--queue", "services", "--services-mode", "6").start(),
        Daemon(home, "--queue", "default").start(),
        Daemon(home, "--queue", "default").start(),
    ]
    wait_for(lambda: all("serving" in d.log() for d in daemons), 60, "daemons to start")
    yield home, daemons
    for daemon in daemons:
        daemon.stop()


@pytest.fixture
def remote(
    remote_home: tuple[Path, list[Daemon]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Remote]:
    home, daemons = remote_home
    _use_home(monkeypatch, home)
    from agent.store.factory import get_backend

    yield Remote(home, get_backend(), daemons)
    _reset_pipeline_state()
