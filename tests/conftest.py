"""The whole suite runs with its own HOME and AGENT_HOME: nothing reads or writes the real
``~/.agent`` (or any other dotfile of the user who runs the tests).

Set at import, before any test module (or the agent package) reads the environment. The
package managers' caches stay where they were (``UV_CACHE_DIR``, ``PIP_CACHE_DIR``), so
environment builds are as warm as the user's own; git gets an identity of its own for the
commits that tests make.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_REAL_HOME = Path(os.path.expanduser("~"))
_SUITE_HOME = Path(tempfile.mkdtemp(prefix="agent-suite-home-"))


def _isolate() -> None:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or _REAL_HOME / ".cache")
    os.environ.setdefault("UV_CACHE_DIR", str(cache / "uv"))
    os.environ.setdefault("PIP_CACHE_DIR", str(cache / "pip"))
    os.environ["HOME"] = str(_SUITE_HOME)
    os.environ["AGENT_HOME"] = str(_SUITE_HOME / ".agent")
    for name in ("AGENT_API_URL", "AGENT_API_TOKEN", "AGENT_FILES_URL", "AGENT_TASK_ID"):
        os.environ.pop(name, None)
    os.environ.pop("XDG_CONFIG_HOME", None)
    os.environ.pop("XDG_DATA_HOME", None)
    identity = {
        "GIT_AUTHOR_NAME": "agent tests",
        "GIT_AUTHOR_EMAIL": "tests@example.invalid",
        "GIT_COMMITTER_NAME": "agent tests",
        "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    }
    for name, value in identity.items():
        os.environ.setdefault(name, value)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_ino


_REAL_AGENT_HOME = _REAL_HOME / ".agent"
_REAL_AGENT_HOME_BEFORE = _stamp(_REAL_AGENT_HOME)
_isolate()


def pytest_report_header() -> list[str]:
    return [f"HOME and AGENT_HOME of the suite: {_SUITE_HOME} (the real ~/.agent is untouched)"]


def pytest_sessionfinish(session, exitstatus) -> None:
    """A run that created or changed the real ``~/.agent`` fails, whatever its tests said."""
    if _stamp(_REAL_AGENT_HOME) != _REAL_AGENT_HOME_BEFORE:
        print(f"\nERROR: the test run wrote to the real {_REAL_AGENT_HOME}")
        session.exitstatus = 1


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this module (fails under CI=true when missing)."""
    from tests.services import pg_database_while

    with pg_database_while() as url:
        yield url
