"""TaskRunner end to end over a real SQLite store, real repos and processes."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exec_support import TOKEN, HttpGitServer, SourceRepo, git, wait_for_file, wait_gone

from agent.config import Settings
from agent.core.models import Script, Task, TaskStatus
from agent.execution.backends import Prepared, ProcessBackend, VenvBackend
from agent.execution.env import EnvCache
from agent.execution.repo import RepoCache, describe_repo
from agent.execution.runner import (
    TaskRunner,
    build_env_only,
    execute_task,
    repo_cache_from_settings,
)
from agent.store.sql import SqlBackend


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlBackend]:
    backend = SqlBackend(f"sqlite:///{tmp_path}/a.db")
    yield backend
    backend.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", agent={"kill_grace": 1.0})


def make_runner(
    store: SqlBackend, settings: Settings, backend: Any = None, **kw: Any
) -> TaskRunner:
    return TaskRunner(
        store,
        settings,
        backend or ProcessBackend(),
        RepoCache(settings.home / "vcs-cache"),
        worker_id="worker-1",
        **kw,
    )


def new_task(
    store: SqlBackend, status: str = "in_progress", runtime: dict | None = None, **script: Any
) -> Task:
    task = store.create_task(
        Task(name="t", project="p", script=Script(**script), runtime=runtime or {})
    )
    if status == "in_progress":
        store.set_status(task.id, "in_progress")
    return store.get_task(task.id)


def log_text(store: SqlBackend, task_id: str) -> str:
    return "\n".join(line.text for line in store.get_logs(task_id))


def repo_script(repo: SourceRepo, **overrides: Any) -> dict[str, Any]:
    info = describe_repo(repo.path)
    script = {k: info[k] for k in ("repository", "branch", "commit", "diff", "working_dir")}
    script["entry_point"] = "train.py"
    return {**script, **overrides}


def test_repo_task_with_diff_completes(
    store: SqlBackend, settings: Settings, source_repo: SourceRepo
) -> None:
    (source_repo.path / "lib" / "helper.py").write_text(
        "def greeting():\n    return 'hello, dirty'\n"
    )
    task = new_task(store, **repo_script(source_repo))

    status = make_runner(store, settings).run(task.id)

    assert status is TaskStatus.completed
    done = store.get_task(task.id)
    assert done.status == "completed"
    assert "hello, dirty" in log_text(store, task.id)
    assert not (settings.home / "work" / task.id).exists()


def test_working_dir(store: SqlBackend, settings: Settings, source_repo: SourceRepo) -> None:
    task = new_task(store, **repo_script(source_repo, working_dir="sub", entry_point="job.py"))
    assert make_runner(store, settings).run(task.id) is TaskStatus.completed
    assert f"cwd {settings.home / 'work' / task.id / 'sub'}" in log_text(store, task.id)


def test_inline_code_gets_the_agent_environment(store: SqlBackend, settings: Settings) -> None:
    settings.files_url = "/tmp/files-x"
    code = (
        "import os\n"
        "for name in ('AGENT_TASK_ID', 'AGENT_WORKER_ID', 'AGENT_HOME', 'AGENT_FILES_URL',"
        " 'CUDA_VISIBLE_DEVICES'):\n"
        "    print(name, os.environ.get(name))\n"
    )
    task = new_task(store, code=code)
    runner = make_runner(store, settings, extra_env={"CUDA_VISIBLE_DEVICES": "1"})

    assert runner.run(task.id) is TaskStatus.completed

    text = log_text(store, task.id)
    for expected in (
        f"AGENT_TASK_ID {task.id}",
        "AGENT_WORKER_ID worker-1",
        f"AGENT_HOME {settings.home}",
        "AGENT_FILES_URL /tmp/files-x",
        "CUDA_VISIBLE_DEVICES 1",
    ):
        assert expected in text


def test_exit_code_fails_the_task(store: SqlBackend, settings: Settings) -> None:
    task = new_task(store, code="import sys\nprint('about to fail')\nsys.exit(3)\n")
    assert make_runner(store, settings).run(task.id) is TaskStatus.failed
    done = store.get_task(task.id)
    assert done.status_message == f"exit code 3 (see `agent logs {task.id}`)"
    assert "about to fail" in log_text(store, task.id)


def _unreachable(repo: SourceRepo, tmp: Path) -> dict[str, Any]:
    return repo_script(repo, repository=str(tmp / "gone.git"))


def _missing_commit(repo: SourceRepo, tmp: Path) -> dict[str, Any]:
    return repo_script(repo, commit="0123abcd" * 5)


def _bad_diff(repo: SourceRepo, tmp: Path) -> dict[str, Any]:
    diff = "--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-no such line\n+x\n"
    return repo_script(repo, diff=diff)


def _missing_entry(repo: SourceRepo, tmp: Path) -> dict[str, Any]:
    return repo_script(repo, entry_point="nope.py")


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (_unreachable, "repository unreachable: cannot clone"),
        (_missing_commit, "commit not found: 0123abcd"),
        (_bad_diff, "diff does not apply: "),
        (_missing_entry, "entry point 'nope.py' not found in working dir '.' of "),
        (lambda repo, tmp: {"entry_point": "x.py"}, "task has no code"),
    ],
    ids=["unreachable", "missing-commit", "bad-diff", "missing-entry-point", "no-code"],
)
def test_failures_before_launch(
    store: SqlBackend,
    settings: Settings,
    source_repo: SourceRepo,
    tmp_path: Path,
    script: Any,
    message: str,
) -> None:
    task = new_task(store, **script(source_repo, tmp_path))
    assert make_runner(store, settings).run(task.id) is TaskStatus.failed
    done = store.get_task(task.id)
    assert done.status_message.startswith(message), done.status_message
    assert f"error: {done.status_message}" in log_text(store, task.id)


PRINT_ENV_AND_URL = (
    "import os\n"
    "for key, value in sorted(os.environ.items()):\n"
    "    print(key, value)\n"
    # the token is spelled backwards so that the task's own code does not hold it
    f"print('remote is https://bob:' + {TOKEN[::-1]!r}[::-1] + '@git.example.com/r.git')\n"
)


def test_credentials_are_never_stored(
    store: SqlBackend,
    settings: Settings,
    http_git_server: HttpGitServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_GIT_USER", "bob")
    monkeypatch.setenv("AGENT_GIT_PASS", TOKEN)
    runner = TaskRunner(store, settings, ProcessBackend(), repo_cache_from_settings(settings))
    ok = new_task(
        store,
        repository=http_git_server.url,
        commit=http_git_server.commit,
        entry_point="train.py",
        code=PRINT_ENV_AND_URL,
    )
    missing = new_task(
        store, repository=http_git_server.url, commit="ab" * 20, entry_point="train.py"
    )

    assert runner.run(ok.id) is TaskStatus.completed
    assert runner.run(missing.id) is TaskStatus.failed

    assert "remote is https://***@git.example.com/r.git" in log_text(store, ok.id)
    store.close()
    everything = [p for p in tmp_path.rglob("*") if p.is_file() and "served" not in p.parts]
    leaks = [p for p in everything if TOKEN.encode() in p.read_bytes()]
    assert leaks == []


def test_credentials_in_the_task_url_stay_out_of_the_record_and_logs(
    store: SqlBackend, settings: Settings, http_git_server: HttpGitServer
) -> None:
    url = http_git_server.url_with("bob", TOKEN)
    good = new_task(store, repository=url, commit=http_git_server.commit, entry_point="train.py")
    bad = new_task(store, repository=url, commit="cd" * 20, entry_point="train.py")
    # The record keeps the url without them: the agent brings its own ([agent.git]).
    assert store.get_task(good.id).script.repository == http_git_server.url
    unconfigured = new_task(
        store, repository=url, commit=http_git_server.commit, entry_point="train.py"
    )
    assert make_runner(store, settings).run(unconfigured.id) is TaskStatus.failed

    settings.agent["git"] = {"user": "bob", "password": TOKEN}
    runner = TaskRunner(store, settings, ProcessBackend(), repo_cache_from_settings(settings))
    assert runner.run(good.id) is TaskStatus.completed
    assert runner.run(bad.id) is TaskStatus.failed

    for task_id in (good.id, bad.id, unconfigured.id):
        assert TOKEN not in log_text(store, task_id)
        assert TOKEN not in store.get_task(task_id).status_message
    assert "hello from v1" in log_text(store, good.id)
    assert store.get_task(bad.id).status_message.startswith("commit not found")
    assert store.get_task(unconfigured.id).status_message.startswith("repository unreachable")


SLEEPER = (
    "import os, signal, time\n"
    "{ignore}"
    "open({pid_file!r}, 'w').write(f'{{os.getpid()}}\\n')\n"
    "print('started', flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.mark.parametrize("ignore_sigterm", [False, True], ids=["sigterm", "sigkill"])
def test_abort_kills_the_task(
    store: SqlBackend, settings: Settings, tmp_path: Path, ignore_sigterm: bool
) -> None:
    settings.agent["kill_grace"] = 0.5
    pid_file = tmp_path / "task.pid"
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_sigterm else ""
    task = new_task(store, code=SLEEPER.format(ignore=ignore, pid_file=str(pid_file)))

    def abort() -> None:
        wait_for_file(pid_file)
        store.set_status(task.id, "stopped", message="aborted by user")

    aborter = threading.Thread(target=abort)
    aborter.start()
    status = make_runner(store, settings).run(task.id)
    aborter.join()

    assert status is TaskStatus.stopped
    done = store.get_task(task.id)
    assert (done.status, done.status_message) == ("stopped", "aborted by user")
    assert wait_gone([int(pid_file.read_text())], timeout=5) == []
    assert "task is now stopped: killing it" in log_text(store, task.id)


def test_time_limit(store: SqlBackend, settings: Settings, tmp_path: Path) -> None:
    pid_file = tmp_path / "task.pid"
    task = new_task(
        store, runtime={"time_limit": 0.5}, code=SLEEPER.format(ignore="", pid_file=str(pid_file))
    )
    assert make_runner(store, settings).run(task.id) is TaskStatus.failed
    assert store.get_task(task.id).status_message.startswith("time limit of 0.5 s exceeded")
    assert wait_gone([int(pid_file.read_text())], timeout=5) == []


def test_requirements_txt_of_the_repo_when_the_task_lists_none(
    store: SqlBackend, settings: Settings, source_repo: SourceRepo
) -> None:
    source_repo.commit({"requirements.txt": "tinypkg==1.0\n"})
    seen: list[Task] = []

    class Recording(ProcessBackend):
        def prepare(self, task: Task, workdir: Path, log: Any) -> Prepared:
            seen.append(task)
            return super().prepare(task, workdir, log)

    task = new_task(store, **repo_script(source_repo))
    assert make_runner(store, settings, Recording()).run(task.id) is TaskStatus.completed
    assert seen[0].script.requirements == ["tinypkg==1.0"]


def test_an_internal_error_fails_the_task(store: SqlBackend, settings: Settings) -> None:
    class Broken(ProcessBackend):
        def prepare(self, task: Task, workdir: Path, log: Any) -> Prepared:
            raise RuntimeError("boom")

    task = new_task(store, code="print('never')\n")
    assert make_runner(store, settings, Broken()).run(task.id) is TaskStatus.failed
    assert store.get_task(task.id).status_message == "agent internal error: boom"
    assert "Traceback" in log_text(store, task.id)


def test_unknown_task_does_not_raise(store: SqlBackend, settings: Settings) -> None:
    assert make_runner(store, settings).run("f" * 32) is TaskStatus.failed


def test_execute_task_claims_a_queued_task(store: SqlBackend, settings: Settings) -> None:
    task = new_task(store, status="created", code="print('executed')\n")
    store.enqueue(task.id, "default")

    assert execute_task(store, task.id, no_env=True, settings=settings) is TaskStatus.completed
    assert "executed" in log_text(store, task.id)


def test_execute_task_takes_the_task_off_its_queue(store: SqlBackend, settings: Settings) -> None:
    task = new_task(store, status="created", code="print('executed')\n")
    store.enqueue(task.id, "default")
    execute_task(store, task.id, no_env=True, settings=settings)
    assert store.queue_entries("default") == []


def test_execute_task_leaves_a_finished_task_alone(store: SqlBackend, settings: Settings) -> None:
    task = new_task(store, code="print('again')\n")
    store.set_status(task.id, "completed")
    assert execute_task(store, task.id, no_env=True, settings=settings) is TaskStatus.completed
    assert "again" not in log_text(store, task.id)


def test_execute_task_adopts_a_running_task_only_when_asked(
    store: SqlBackend, settings: Settings
) -> None:
    task = new_task(store, code="print('adopted')\n")  # in progress: a daemon claimed it

    assert execute_task(store, task.id, no_env=True, settings=settings) is TaskStatus.in_progress
    assert "adopted" not in log_text(store, task.id)

    assert execute_task(store, task.id, no_env=True, settings=settings, adopt=True) is (
        TaskStatus.completed
    )
    assert "adopted" in log_text(store, task.id)


@pytest.mark.slow
def test_venv_task_end_to_end(store: SqlBackend, settings: Settings, wheelhouse: Path) -> None:
    code = (
        "import tinypkg\n"
        "from agent.core.models import TaskStatus\n"
        "print('tinypkg', tinypkg.VERSION, TaskStatus.completed)\n"
    )
    backend = VenvBackend(
        EnvCache(settings.home / "venvs"), find_links=str(wheelhouse), no_index=True
    )
    first = new_task(store, code=code, requirements=["tinypkg==1.0"])
    second = new_task(store, code=code, requirements=["tinypkg==1.0"])
    runner = make_runner(store, settings, backend)

    assert runner.run(first.id) is TaskStatus.completed
    assert runner.run(second.id) is TaskStatus.completed

    assert "tinypkg 1.0 completed" in log_text(store, first.id)
    assert "built environment" in log_text(store, first.id)
    assert "reusing environment" in log_text(store, second.id)


@pytest.mark.slow
def test_unsatisfiable_requirements_fail_the_task(
    store: SqlBackend, settings: Settings, wheelhouse: Path
) -> None:
    backend = VenvBackend(
        EnvCache(settings.home / "venvs"), find_links=str(wheelhouse), no_index=True
    )
    task = new_task(store, code="print('x')\n", requirements=["nonexistent-pkg-xyz==1.0"])
    assert make_runner(store, settings, backend).run(task.id) is TaskStatus.failed
    message = store.get_task(task.id).status_message
    assert message.startswith("environment build failed: cannot install requirements")
    assert "nonexistent-pkg-xyz" in message


@pytest.mark.slow
def test_build_env_only(
    store: SqlBackend, settings: Settings, wheelhouse: Path, tmp_path: Path
) -> None:
    settings.agent.update(find_links=str(wheelhouse), no_index=True)
    task = new_task(store, status="created", code="", requirements=["tinypkg==2.0"])

    python = build_env_only(
        store, task.id, tmp_path / "built", settings=settings, log=lambda _: None
    )

    out = subprocess.run(
        [str(python), "-c", "import tinypkg; print(tinypkg.VERSION)"],
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "2.0"


def test_git_helper_sanity(source_repo: SourceRepo) -> None:
    assert git(source_repo.path, "rev-parse", "HEAD") == source_repo.commits[-1]


def test_a_task_that_finishes_itself_is_let_exit(store: SqlBackend, settings: Settings) -> None:
    # Task.close() marks the task completed a moment before the process exits: the
    # runner must let it finish its shutdown rather than kill it.
    code = (
        "import os, time\n"
        "from agent.store.sql import SqlBackend\n"
        f"SqlBackend({store.url!r}).set_status(os.environ['AGENT_TASK_ID'], 'completed')\n"
        "time.sleep(1.0)\n"
        "print('shut down cleanly', flush=True)\n"
    )
    task = new_task(store, status="created", code=code)
    status = execute_task(store, task.id, no_env=True, settings=settings)
    text = log_text(store, task.id)
    assert status is TaskStatus.completed, text
    assert "shut down cleanly" in text
    assert "killing it" not in text
