"""EnvCache: real venvs built with uv (and pip) from a local wheelhouse."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from exec_support import REPO_ROOT

from agent.execution import env as env_module
from agent.execution.env import (
    MARKER,
    EnvCache,
    EnvError,
    build_env,
    normalize_requirement,
    write_agent_pth,
)


def run_in(python: Path, code: str) -> str:
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


@pytest.fixture
def cache(tmp_path: Path) -> EnvCache:
    return EnvCache(tmp_path / "venvs", max_envs=20)


@pytest.fixture
def offline(wheelhouse: Path) -> dict[str, object]:
    return {"find_links": str(wheelhouse), "no_index": True}


def test_normalize_requirement() -> None:
    assert normalize_requirement(" Scikit_Learn >= 1.3 ") == "scikit-learn>=1.3"
    assert normalize_requirement("zope.interface==6") == "zope-interface==6"
    assert normalize_requirement('tomli ; python_version < "3.11"') == (
        'tomli; python_version < "3.11"'
    )


def test_key_ignores_order_and_spelling(tmp_path: Path) -> None:
    uv = EnvCache(tmp_path, package_manager="uv")
    pip = EnvCache(tmp_path, package_manager="pip")
    assert uv.key(["b==1", "A_x>=2"]) == uv.key(["a-x >= 2", "b==1", "b==1"])
    assert uv.key(["b==1"]) != uv.key(["b==2"])
    assert uv.key([]) != pip.key([])


@pytest.mark.slow
def test_build_then_warm_reuse(
    cache: EnvCache, offline: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    with cache.get(["tinypkg==1.0"], log=lines.append, **offline) as env:
        assert env.reused is False
        assert run_in(env.python, "import tinypkg; print(tinypkg.VERSION)") == "1.0"
    assert any("tinypkg" in line for line in lines)  # the build's output reached the log
    marker = json.loads((env.path / MARKER).read_text())
    assert marker["requirements"] == ["tinypkg==1.0"]

    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError("the warm path started a subprocess")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    monkeypatch.setattr(subprocess, "run", no_subprocess)
    with cache.get(["TinyPkg == 1.0"], log=lines.append, **offline) as again:
        assert again.reused is True
        assert again.path == env.path


@pytest.mark.slow
def test_agent_is_importable_and_task_requirements_win(
    cache: EnvCache, offline: dict[str, object]
) -> None:
    with cache.get(["psutil==0.0.1"], **offline) as env:
        code = (
            "import agent, psutil, sqlalchemy, sys; "
            "print(agent.__file__); print(psutil.__version__); print(sys.prefix)"
        )
        agent_file, psutil_version, prefix = run_in(env.python, code).splitlines()
    assert Path(agent_file).resolve().is_relative_to(REPO_ROOT)
    assert psutil_version == "0.0.1"  # the env's own, not the daemon's
    assert Path(prefix) == env.path


@pytest.mark.slow
def test_env_sees_its_requirements_and_the_sdk_and_nothing_else_of_the_daemon(
    cache: EnvCache, offline: dict[str, object]
) -> None:
    import sklearn  # noqa: F401 - the daemon (this interpreter) has it ...

    with cache.get(["tinypkg==1.0"], **offline) as env:
        code = (
            "import importlib, importlib.metadata as md\n"
            "for name in ('sklearn', 'pandas', 'numpy', 'pytest', 'fastapi', 'click', 'uv'):\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "        print('visible', name)\n"
            "    except ModuleNotFoundError as exc:\n"
            "        print('missing', exc.name)\n"
            "import agent, tinypkg, requests, boto3, sqlalchemy, psycopg, tenacity, psutil\n"
            "print('agent', agent.__version__, md.version('pipeline-agent'))\n"
            "print('requests', md.version('requests'))\n"
        )
        lines = run_in(env.python, code).splitlines()
    import requests

    import agent

    # ... but a task sees only what it declared, plus the agent SDK and its libraries
    assert [line for line in lines if line.startswith("visible")] == []
    assert f"agent {agent.__version__} {agent.__version__}" in lines
    assert f"requests {requests.__version__}" in lines


def test_sdk_view_lists_every_runtime_dependency_as_sdk_or_daemon_only() -> None:
    import tomllib

    from agent.execution.sdk_view import (
        DAEMON_ONLY_REQUIREMENTS,
        SDK_REQUIREMENTS,
        canonical,
        parse_requirement,
    )

    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = {parse_requirement(line)[0].name for line in declared["dependencies"]}
    sdk = {parse_requirement(line)[0].name for line in SDK_REQUIREMENTS}
    assert names == sdk | {canonical(n) for n in DAEMON_ONLY_REQUIREMENTS}
    assert not sdk & DAEMON_ONLY_REQUIREMENTS


def test_sdk_view_is_built_once_and_shared(tmp_path: Path) -> None:
    from agent.execution.sdk_view import build_view, view_entries

    entries = view_entries()
    first = build_view(tmp_path, entries)
    assert build_view(tmp_path, entries) == first
    assert {p.name for p in tmp_path.iterdir()} == {first.name}  # no staging dirs left
    assert (first / "agent").resolve() == (REPO_ROOT / "agent").resolve()
    assert (first / "requests").is_dir()
    assert not (first / "fastapi").exists()


@pytest.mark.slow
def test_pth_follows_the_daemon(cache: EnvCache) -> None:
    with cache.get([]) as env:
        write_agent_pth(env.path, ["/somewhere/else"])
    with cache.get([]) as env:  # reuse rewrites a stale .pth
        assert run_in(env.python, "import agent; print(agent.__name__)") == "agent"


@pytest.mark.slow
def test_least_recently_used_is_evicted(tmp_path: Path, offline: dict[str, object]) -> None:
    cache = EnvCache(tmp_path / "venvs", max_envs=2)
    first = cache.get([], **offline)
    second = cache.get(["tinypkg==1.0"], **offline)
    first.release()
    second.release()
    cache.get([], **offline).release()  # first is now the most recently used

    third = cache.get(["tinypkg==2.0"], **offline)
    third.release()

    assert {p.name for p in cache.entries()} == {first.key, third.key}
    assert not second.path.exists()


@pytest.mark.slow
def test_an_environment_in_use_is_not_evicted(tmp_path: Path, offline: dict[str, object]) -> None:
    cache = EnvCache(tmp_path / "venvs", max_envs=1)
    busy = cache.get(["tinypkg==1.0"], **offline)
    other = cache.get(["tinypkg==2.0"], **offline)
    other.release()
    assert busy.path.exists()  # held: survives although it is over the limit

    busy.release()
    cache.get([], **offline).release()
    assert [p.name for p in cache.entries()] == [cache.key([])]


@pytest.mark.slow
def test_unsatisfiable_requirement(cache: EnvCache, offline: dict[str, object]) -> None:
    lines: list[str] = []
    with pytest.raises(EnvError) as err:
        cache.get(["nonexistent-pkg-xyz==1.0"], log=lines.append, **offline)
    assert "nonexistent-pkg-xyz" in err.value.reason
    assert str(err.value).startswith("environment build failed: cannot install requirements")
    assert cache.entries() == []
    assert not (cache.root / cache.key(["nonexistent-pkg-xyz==1.0"])).exists()


@pytest.mark.slow
def test_concurrent_gets_build_once(cache: EnvCache, offline: dict[str, object]) -> None:
    results: list[bool] = []

    def one() -> None:
        with cache.get(["tinypkg==1.0"], log=lambda _: None, **offline) as env:
            results.append(env.reused)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True, True]


@pytest.mark.slow
def test_pip_without_uv(tmp_path: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env_module, "find_uv", lambda: None)
    cache = EnvCache(tmp_path / "venvs", package_manager="uv")
    lines: list[str] = []
    with cache.get(
        ["tinypkg==2.0"], log=lines.append, find_links=str(wheelhouse), no_index=True
    ) as env:
        assert cache.effective_package_manager == "pip"
        assert run_in(env.python, "import tinypkg, agent; print(tinypkg.VERSION)") == "2.0"
    assert any("venv + pip" in line for line in lines)


@pytest.mark.slow
def test_build_env_into_a_target_dir(tmp_path: Path, wheelhouse: Path) -> None:
    python = build_env(
        tmp_path / "target",
        ["tinypkg==1.0"],
        python=sys.executable,
        log=lambda _: None,
        find_links=str(wheelhouse),
        no_index=True,
    )
    assert python == tmp_path / "target" / "bin" / "python"
    assert run_in(python, "import tinypkg; print(tinypkg.VERSION)") == "1.0"
