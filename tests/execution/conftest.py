"""Fixtures of the execution tests: real git repos, a local wheelhouse, an HTTP git server."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from exec_support import AuthHandler, HttpGitServer, SourceRepo, git, make_wheel

from agent.execution.cgroup import CGROUP_ENV, cgroup_unavailable_reason


@pytest.fixture(params=["cgroup", "subreaper"])
def tree_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How tasks started in this test hold their process tree: a cgroup each (skipped where
    cgroup v2 is not writable), or a supervisor that is their subreaper."""
    if request.param == "cgroup":
        reason = cgroup_unavailable_reason()
        if reason is not None:
            pytest.skip(f"no cgroup per task here: {reason}")
    else:
        monkeypatch.setenv(CGROUP_ENV, "0")
    return request.param


@pytest.fixture
def source_repo(tmp_path: Path) -> SourceRepo:
    """A repo with one commit: ``train.py`` (imports ``lib/helper.py``) at the root."""
    path = tmp_path / "source"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    repo = SourceRepo(path)
    repo.commit(
        {
            "train.py": "from lib.helper import greeting\nprint(greeting())\n",
            "lib/__init__.py": "",
            "lib/helper.py": "def greeting():\n    return 'hello from v1'\n",
            "sub/job.py": "import os\nprint('cwd', os.getcwd())\n",
        },
        "first",
    )
    return repo


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tinypkg`` 1.0 and 2.0, and a fake ``psutil`` 0.0.1 that shadows the daemon's."""
    house = tmp_path_factory.mktemp("wheelhouse")
    for version in ("1.0", "2.0"):
        make_wheel(house, "tinypkg", version, {"tinypkg": f"VERSION = {version!r}\n"})
    make_wheel(house, "psutil", "0.0.1", {"psutil": "__version__ = '0.0.1'\n"})
    return house


@pytest.fixture
def http_git_server(tmp_path: Path, source_repo: SourceRepo) -> Iterator[HttpGitServer]:
    """``source_repo`` served read-only over HTTP, user ``bob``, password :data:`TOKEN`."""
    served = tmp_path / "served"
    served.mkdir()
    git(tmp_path, "clone", "-q", "--bare", str(source_repo.path), str(served / "repo.git"))
    git(served / "repo.git", "update-server-info")
    handler = functools.partial(AuthHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield HttpGitServer(f"http://{host}:{port}/repo.git", source_repo.commits[-1])
    finally:
        server.shutdown()
        server.server_close()
