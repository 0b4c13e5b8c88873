"""One contract suite over every execution backend (process, venv; docker adds itself)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from exec_support import REPO_ROOT, wait_for_file, wait_gone

from agent.core.models import Script, Task
from agent.execution.backends import (
    ExecutionBackend,
    ProcessBackend,
    TaskHandle,
    VenvBackend,
    backend_from_settings,
)
from agent.execution.env import EnvCache
from agent.execution.warm import WarmBackend


@pytest.fixture(
    params=[
        "process",
        "process-warm",
        pytest.param("venv", marks=pytest.mark.slow),
        pytest.param("venv-warm", marks=pytest.mark.slow),
    ],
)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExecutionBackend]:
    """Each backend, and each behind warm starts (a task forked from a zygote of its
    environment, the venv built beforehand so that it is warm)."""
    kind, _, warm = request.param.partition("-")
    inner: ExecutionBackend = (
        ProcessBackend()
        if kind == "process"
        else VenvBackend(EnvCache(tmp_path_factory.mktemp("venvs")), no_index=True)
    )
    if not warm:
        yield inner
        return
    if kind == "venv":
        empty = tmp_path_factory.mktemp("warm-up")
        inner.prepare(Task(script=Script(entry_point="x.py")), empty, log=print).release()
    backend = WarmBackend(inner, ready_timeout=60)
    yield backend
    backend.close()


class Output:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, lines: list[str]) -> None:
        with self.lock:
            self.lines += lines


def script_task(workdir: Path, code: str, requirements: list[str] | None = None) -> Task:
    (workdir / "main.py").write_text(code)
    return Task(script=Script(entry_point="main.py", requirements=requirements or []))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def run(backend: ExecutionBackend, workdir: Path) -> Iterator:
    prepared_list = []

    def _run(task: Task, env_vars: dict[str, str] | None = None) -> tuple[TaskHandle, Output]:
        prepared = backend.prepare(task, workdir, log=lambda _: None)
        prepared_list.append(prepared)
        out = Output()
        return backend.start(prepared, env_vars or {}, out), out

    yield _run
    for prepared in prepared_list:
        prepared.release()


def test_is_an_execution_backend(backend: ExecutionBackend) -> None:
    assert isinstance(backend, ExecutionBackend)
    assert backend.name


def test_warm_backends_fork_their_tasks(backend: ExecutionBackend, run, workdir: Path) -> None:
    handle, out = run(script_task(workdir, "print('hi')"))
    assert handle.wait(timeout=30) == 0
    handle.kill_tree(grace=1)
    assert out.lines == ["hi"]
    forked = type(getattr(handle, "_popen", None)).__name__ == "ForkedChild"
    assert forked == isinstance(backend, WarmBackend)


def test_sys_argv_and_main(run, workdir: Path) -> None:
    (workdir / "main.py").write_text(
        "import sys\n"
        "class Thing: pass\n"
        "print(sys.argv)\n"
        "print(__name__, __file__, Thing.__module__)\n"
        "print(sys.path[0])\n"
    )
    task = Task(script=Script(entry_point="main.py"), runtime={"argv": ["--n", "3"]})
    handle, out = run(task)
    assert handle.wait(timeout=30) == 0
    handle.kill_tree(grace=1)
    argv, main, path0 = out.lines
    assert argv == "['main.py', '--n', '3']"
    assert main == f"__main__ {workdir / 'main.py'} __main__"
    assert Path(path0) == workdir


def test_an_exception_is_exit_code_1_with_its_traceback(run, workdir: Path) -> None:
    handle, out = run(
        script_task(
            workdir,
            "import threading, time\n"
            "threading.Thread(target=lambda: (time.sleep(0.2), print('thread done'))).start()\n"
            "raise ValueError('boom')\n",
        )
    )
    assert handle.wait(timeout=30) == 1
    handle.kill_tree(grace=1)
    assert out.lines[0] == "Traceback (most recent call last):"
    assert "ValueError: boom" in out.lines
    assert "thread done" in out.lines  # non-daemon threads finish before the exit


def test_killed_by_a_signal(run, workdir: Path) -> None:
    handle, _ = run(script_task(workdir, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert handle.wait(timeout=30) == -signal.SIGKILL


def test_runs_the_entry_point_in_the_workdir(run, workdir: Path) -> None:
    code = (
        "import os, sys, agent\n"
        "print(os.getcwd())\n"
        "print(os.environ['AGENT_TASK_ID'])\n"
        "print(agent.__file__)\n"
        "print('to stderr', file=sys.stderr)\n"
    )
    handle, out = run(script_task(workdir, code), {"AGENT_TASK_ID": "t-1"})
    assert isinstance(handle, TaskHandle)
    assert handle.wait(timeout=30) == 0
    handle.kill_tree(grace=1)  # after the exit: returns at once, all output delivered
    cwd, task_id, agent_file, stderr = out.lines
    assert Path(cwd) == workdir
    assert task_id == "t-1"
    assert Path(agent_file).resolve().is_relative_to(REPO_ROOT)
    assert stderr == "to stderr"


def test_exit_code(run, workdir: Path) -> None:
    handle, _ = run(script_task(workdir, "raise SystemExit(7)"))
    assert handle.wait(timeout=30) == 7


def test_git_credentials_stay_with_the_agent(
    run, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_GIT_PASS", "pw-from-daemon")
    handle, out = run(script_task(workdir, "import os; print(os.environ.get('AGENT_GIT_PASS'))"))
    assert handle.wait(timeout=30) == 0
    handle.kill_tree(grace=1)
    assert out.lines == ["None"]


def test_kill_tree(run, workdir: Path) -> None:
    pid_file = workdir / "pid"
    code = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{child.pid}}\\n')\n"
        "time.sleep(120)\n"
    )
    handle, _ = run(script_task(workdir, code))
    child = int(wait_for_file(pid_file))
    assert handle.poll() is None
    assert handle.kill_tree(grace=5) == -signal.SIGTERM
    assert wait_gone([child], timeout=5) == []


def test_process_backend_uses_this_interpreter(workdir: Path) -> None:
    backend = ProcessBackend()
    prepared = backend.prepare(script_task(workdir, ""), workdir, log=print)
    assert prepared.argv == [sys.executable, "main.py"]


@pytest.mark.slow
def test_venv_backend_installs_requirements(
    tmp_path: Path, workdir: Path, wheelhouse: Path
) -> None:
    backend = VenvBackend(EnvCache(tmp_path / "venvs"), find_links=str(wheelhouse), no_index=True)
    task = script_task(
        workdir, "import sys, tinypkg; print(tinypkg.VERSION); print(sys.prefix)", ["tinypkg==2.0"]
    )
    prepared = backend.prepare(task, workdir, log=lambda _: None)
    try:
        out = Output()
        handle = backend.start(prepared, {}, out)
        assert handle.wait(timeout=30) == 0
        handle.kill_tree(grace=1)
    finally:
        prepared.release()
    version, prefix = out.lines
    assert version == "2.0"
    assert Path(prefix).parent == tmp_path / "venvs"


def test_backend_from_settings(tmp_path: Path) -> None:
    class Settings:
        home = tmp_path
        agent = {"venv_cache_size": 3, "package_manager": "pip", "no_index": True}

    assert isinstance(backend_from_settings(Settings(), no_env=True), ProcessBackend)
    venv = backend_from_settings(Settings())
    assert isinstance(venv, VenvBackend)
    assert venv.env_cache.max_envs == 3
    assert venv.env_cache.package_manager == "pip"
    assert venv.env_cache.root == tmp_path / "venvs"
