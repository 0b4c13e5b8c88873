"""Access to the real services the tests run against: PostgreSQL, Docker, free ports.

`.ci/services.sh` starts them (PostgreSQL 15 on 127.0.0.1:5432, a Docker engine with the local
image ``pipeline-agent-base:latest``). Tests ask here whether a service is reachable and call
`require()`: under ``CI=true`` a missing service fails the test, so CI can never go green by
skipping; on a laptop it skips.

Usage::

    from tests.services import fresh_pg_database, drop_pg_database, postgres_url, require

    @pytest.fixture
    def pg_url():
        base = postgres_url()
        require("PostgreSQL", base is not None)
        url = fresh_pg_database(base)
        yield url
        drop_pg_database(url)
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL, make_url

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_URL_FILE = REPO_ROOT / ".ci" / "pg_url"
DEFAULT_PG_URL = "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/postgres"
BASE_IMAGE = "pipeline-agent-base:latest"
TEST_DB_PREFIX = "agent_test_"


def in_ci() -> bool:
    """True under CI (``CI=true``), where every service must be there."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(service_name: str, available: bool) -> None:
    """Fail (under CI) or skip (elsewhere) the calling test when a service is missing.

    Args:
        service_name: what is missing, for the message, e.g. ``"PostgreSQL"``.
        available: whether the service was found.
    """
    if available:
        return
    message = f"{service_name} is not available (start it with `bash .ci/services.sh`)"
    if in_ci():
        pytest.fail(f"{message}; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- PostgreSQL


def _libpq_dsn(url: URL) -> str:
    """The SQLAlchemy URL as a libpq connection string that psycopg accepts."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _connect(url: URL, **kwargs):
    import psycopg

    return psycopg.connect(_libpq_dsn(url), connect_timeout=3, **kwargs)


def _connects(url: str) -> bool:
    try:
        with _connect(make_url(url)) as conn:
            conn.execute("select 1")
    except Exception:  # any failure means "not usable here"; callers skip or fail on it
        return False
    return True


@functools.cache
def postgres_url() -> str | None:
    """URL (SQLAlchemy form) of a PostgreSQL server the tests may use, or None.

    Taken from ``$AGENT_TEST_PG_URL`` when set (and then only from there), else from
    ``.ci/pg_url`` (written by `.ci/services.sh`), else the default
    ``postgres:postgres@127.0.0.1:5432``; a URL counts only when psycopg can connect to it.
    """
    explicit = os.environ.get("AGENT_TEST_PG_URL", "").strip()
    if explicit:
        # Whoever set it meant that server and no other.
        return explicit if _connects(explicit) else None
    candidates = [DEFAULT_PG_URL]
    if PG_URL_FILE.is_file():
        candidates.insert(0, PG_URL_FILE.read_text().strip())
    for candidate in dict.fromkeys(candidates):
        if candidate and _connects(candidate):
            return candidate
    return None


def fresh_pg_database(base_url: str) -> str:
    """Create an empty, uniquely named database next to ``base_url``'s and return its URL.

    Drop it with `drop_pg_database` when done.
    """
    base = make_url(base_url)
    name = f"{TEST_DB_PREFIX}{uuid.uuid4().hex[:16]}"
    with _connect(base, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return base.set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def pg_database_while() -> Iterator[str]:
    """A fresh database (failing under CI=true where PostgreSQL is missing), dropped after."""
    base = postgres_url()
    require("PostgreSQL", base is not None)
    url = fresh_pg_database(base)
    try:
        yield url
    finally:
        drop_pg_database(url)


def drop_pg_database(url: str) -> None:
    """Drop a database made by `fresh_pg_database`, closing any connection still open to it."""
    target = make_url(url)
    name = target.database or ""
    if not name.startswith(TEST_DB_PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not made by fresh_pg_database()")
    with _connect(target.set(database="postgres"), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


# -------------------------------------------------------------------- Docker


@functools.cache
def docker_available() -> bool:
    """True when a Docker engine answers ``docker info`` here."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def docker_image_present(image: str = BASE_IMAGE) -> bool:
    """True when ``image`` is in the local Docker engine (nothing is pulled: CI has no registry)."""
    if not docker_available():
        return False
    result = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, timeout=30, check=False
    )
    return result.returncode == 0


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def agent_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment of an agent subprocess: this checkout importable, ``home`` as
    AGENT_HOME, no server settings inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    env["AGENT_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


# --------------------------------------------------------------------- Slurm


def slurm_available() -> bool:
    """True when slurmctld answers and its node is up (``.ci/services.sh start_slurm``)."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return False
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
        nodes = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    up = {"idle", "mixed", "allocated"}
    return "UP" in ping.stdout and any(s.strip() in up for s in nodes.stdout.splitlines())


def start_slurm() -> bool:
    """Start the single-node cluster with ``.ci/services.sh start_slurm`` where Slurm is
    installed and we are root (or under CI, which installs it); True when it is up."""
    if slurm_available():
        return True
    installed = shutil.which("slurmctld") is not None or in_ci()
    if os.geteuid() == 0 and installed:
        subprocess.run(
            ["bash", str(REPO_ROOT / ".ci" / "services.sh"), "start_slurm"],
            capture_output=True,
            timeout=300,
            check=False,
        )
    return slurm_available()
