"""The four stores every contract test runs on.

- ``sqlite``: SqlBackend on a SQLite file;
- ``postgres``: SqlBackend on a fresh PostgreSQL database (one per test module);
- ``http-sqlite`` / ``http-postgres``: HttpBackend talking to a real ``agent server``
  subprocess on each of those.

Tests share one store per module and kind, so they name what they make uniquely
(the ``uid`` fixture) and never assume a list holds only their own records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from agent.store.base import Backend
from agent.store.factory import backend_for_url
from agent.store.sql import SqlBackend
from tests.server.live_server import LiveServer
from tests.services import drop_pg_database, fresh_pg_database, postgres_url, require

KINDS = ("sqlite", "postgres", "http-sqlite", "http-postgres")


@dataclass
class StoreTarget:
    """Where a backend of one kind lives: ``url`` to open it, ``sql_url`` underneath."""

    kind: str
    url: str
    sql_url: str
    token: str | None = None

    @property
    def is_http(self) -> bool:
        return self.kind.startswith("http")

    def open(self) -> Backend:
        return backend_for_url(self.url, token=self.token)


@pytest.fixture(scope="module", params=KINDS)
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One StoreTarget per kind, shared by the module's tests."""
    kind: str = request.param
    workdir = tmp_path_factory.mktemp(kind)
    if kind.endswith("postgres"):
        sql_url = request.getfixturevalue("pg_database")
    else:
        sql_url = f"sqlite:///{workdir / 'agent.db'}"
    if not kind.startswith("http"):
        yield StoreTarget(kind, sql_url, sql_url)
        return
    server = LiveServer(sql_url, workdir).start()
    try:
        yield StoreTarget(kind, server.url, sql_url)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def backend(target: StoreTarget) -> Iterator[Backend]:
    """The store under test."""
    store = target.open()
    yield store
    store.close()


@pytest.fixture
def uid() -> str:
    """A short unique suffix for names of projects, queues and workers."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def pg_store() -> Iterator[SqlBackend]:
    """SqlBackend on a fresh PostgreSQL database of its own (the test's alone)."""
    base = postgres_url()
    require("PostgreSQL", base is not None)
    url = fresh_pg_database(base)
    store = SqlBackend(url)
    yield store
    store.close()
    drop_pg_database(url)
