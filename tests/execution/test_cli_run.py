"""``agent run`` / ``agent execute`` / ``agent build`` over real git repos, stores and processes."""

from __future__ import annotations

import importlib.metadata
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from exec_support import REPO_ROOT, SourceRepo, git, wait_for_file, wait_gone

from agent.cli.main import cli
from agent.core.errors import InvalidInput
from agent.core.models import Script, Task
from agent.execution.backends import task_argv
from agent.execution.task_from_script import task_from_script
from agent.store.base import Backend
from agent.store.factory import get_backend, reset_backends

TRAIN = (
    "import os, sys\n"
    "from lib.helper import greeting\n"
    "print(greeting(), 'args', sys.argv[1:], 'cwd', os.getcwd())\n"
)


def start_execute(home: Path, task_id: str, *args: str) -> subprocess.Popen:
    """``agent execute --id TASK ARGS`` as a child process over ``home``, pipes open."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli.main", "execute", "--id", task_id, *args],
        env={**env, "AGENT_HOME": str(home)},
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """AGENT_HOME in a temp dir, no server, fresh backends."""
    path = tmp_path / "home"
    monkeypatch.setenv("AGENT_HOME", str(path))
    for name in ("AGENT_API_URL", "AGENT_API_TOKEN", "AGENT_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    reset_backends()
    yield path
    reset_backends()


@pytest.fixture
def store(home: Path) -> Backend:
    return get_backend()


@pytest.fixture
def repo(tmp_path: Path) -> SourceRepo:
    """A working copy without a remote: ``sub/train.py`` imports ``sub/lib/helper.py``."""
    path = tmp_path / "work"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    source = SourceRepo(path)
    source.commit(
        {
            "sub/train.py": TRAIN,
            "sub/lib/__init__.py": "",
            "sub/lib/helper.py": "def greeting():\n    return 'committed'\n",
            "README.md": "demo\n",
        },
        "first",
    )
    return source


@pytest.fixture
def pushed_repo(tmp_path: Path, repo: SourceRepo) -> Path:
    """``repo`` with a bare ``origin`` it is pushed to; returns the origin's path."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo.path, "remote", "add", "origin", str(origin))
    git(repo.path, "push", "-q", "-u", "origin", "main")
    return origin


def invoke(*args: str) -> Result:
    """``agent ARGS`` in this process (the current directory is the caller's)."""
    try:  # click < 8.2 mixes stderr into stdout unless told not to
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        runner = CliRunner()
    result = runner.invoke(cli, list(args), prog_name="agent", catch_exceptions=False)
    reset_backends()  # the next subprocess or call opens the store afresh
    return result


def run_agent(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m agent.cli.main ARGS`` as a real subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    env["AGENT_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "agent.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env=env,
    )


def run_script(*args: str) -> str:
    """``agent run ARGS --project p``; the new task's id (the only line on stdout)."""
    result = invoke("run", "--project", "p", *args)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and len(lines[0]) == 32, result.stdout
    return lines[0]


def dirty(repo: SourceRepo) -> None:
    (repo.path / "sub" / "lib" / "helper.py").write_text(
        "def greeting():\n    return 'uncommitted'\n"
    )


# -- agent run: what the task records -------------------------------------------


def test_run_with_origin_records_the_remote_and_queues_the_task(
    repo: SourceRepo,
    pushed_repo: Path,
    store: Backend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dirty(repo)
    monkeypatch.chdir(repo.path)

    result = invoke("run", "sub/train.py", "--project", "p", "--queue", "q1", "--priority", "3")

    assert result.exit_code == 0, result.stderr
    task_id = result.stdout.strip()
    assert f"task {task_id} queued on 'q1' (follow: agent logs {task_id} --follow)" in (
        result.stderr
    )
    task = store.get_task(task_id)
    assert (task.status, task.queue, task.project, task.name) == ("queued", "q1", "p", "train.py")
    assert task.type == "training"
    assert task.script.repository == str(pushed_repo)
    assert (task.script.branch, task.script.commit) == ("main", repo.commits[-1])
    assert (task.script.working_dir, task.script.entry_point) == (".", "sub/train.py")
    assert "+    return 'uncommitted'" in task.script.diff
    assert task.script.code == ""
    assert store.queue_entries("q1") == [task_id]
    assert "not pushed" not in result.stderr
    assert "warning: no agent serves queue 'q1' (start one: agent daemon --queue q1)" in (
        result.stderr
    )


def test_run_without_remote_records_the_local_path(
    repo: SourceRepo, store: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo.path)
    result = invoke("run", "sub/train.py", "--project", "p")

    assert result.exit_code == 0, result.stderr
    task = store.get_task(result.stdout.strip())
    assert task.script.repository == str(repo.path.resolve())
    assert task.status == "created" and task.queue in (None, "")
    assert (
        f"commit {task.script.commit[:12]} is not pushed (the repository has no remote): "
        f"agents that cannot reach {repo.path.resolve()} will fail"
    ) in " ".join(result.stderr.split())
    assert f"agent execute --id {task.id}" in result.stderr


def test_run_warns_about_an_unpushed_commit(
    repo: SourceRepo, pushed_repo: Path, store: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit({"README.md": "more\n"}, "local only")
    monkeypatch.chdir(repo.path)

    result = invoke("run", "sub/train.py", "--project", "p")

    assert (
        f"commit {repo.commits[-1][:12]} is not pushed: agents that cannot reach "
        f"{repo.path.resolve()} will fail (push it to {pushed_repo})"
    ) in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("cwd", "working_dir", "entry_point"),
    [
        (".", ".", "sub/train.py"),  # like `python sub/train.py` from the root
        ("sub", "sub", "train.py"),
        ("sub/lib", "sub", "train.py"),  # the script is not under the cwd: its own dir
        ("..", "sub", "train.py"),  # outside the repository: the script's dir
    ],
)
def test_working_dir_and_entry_point_are_relative_to_the_root(
    repo: SourceRepo, cwd: str, working_dir: str, entry_point: str
) -> None:
    task = task_from_script(repo.path / "sub" / "train.py", cwd=repo.path / cwd)
    assert (task.script.working_dir, task.script.entry_point) == (working_dir, entry_point)


def test_an_untracked_script_travels_in_the_diff(repo: SourceRepo) -> None:
    (repo.path / "sub" / "new.py").write_text("print('new')\n")
    notes: list[str] = []

    task = task_from_script(repo.path / "sub" / "new.py", cwd=repo.path, log=notes.append)

    assert "new file mode" in task.script.diff and "+print('new')" in task.script.diff
    assert any("sub/new.py is not committed" in note for note in notes)


def test_outside_git_the_script_travels_as_inline_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "job.py").write_text("print('loose')\n")
    notes: list[str] = []

    task = task_from_script(loose / "job.py", ["a", 1], project="p", log=notes.append)

    assert task.script.code == "print('loose')\n"
    assert (task.script.entry_point, task.script.working_dir) == ("job.py", ".")
    assert task.script.repository == "" and task.script.diff == ""
    assert task.runtime["argv"] == ["a", "1"]
    assert any("not in a git repository" in note for note in notes)


def test_requirements_packages_then_requirements_txt_then_imports(repo: SourceRepo) -> None:
    script = repo.path / "sub" / "uses_click.py"
    script.write_text("import click\nimport json\nimport lib.helper\n")
    (repo.path / "requirements.txt").write_text("# pinned\nnumpy>=1.0  # comment\n-r more.txt\n")
    (repo.path / "more.txt").write_text("pandas\n")

    given = task_from_script(script, packages=["torch>=2", " six "])
    from_file = task_from_script(script)
    (repo.path / "requirements.txt").unlink()
    from_imports = task_from_script(script)

    assert given.script.requirements == ["torch>=2", "six"]
    assert from_file.script.requirements == ["numpy>=1.0", "pandas"]
    assert from_imports.script.requirements == [f"click=={importlib.metadata.version('click')}"]


def test_run_records_packages_docker_type_and_args(
    repo: SourceRepo, store: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo.path / "sub")
    task_id = run_script(
        "train.py",
        "--lr",
        "0.1",
        "--packages",
        "tinypkg==2.0",
        "--packages",
        "six",
        "--docker",
        "python:3.11-slim",
        "--docker-args",
        "-e K=V",
        "--type",
        "testing",
        "--name",
        "baseline",
        "--",
        "--name",
        "inner",
    )

    task = store.get_task(task_id)
    assert task.script.requirements == ["tinypkg==2.0", "six"]
    assert task.container["image"] == "python:3.11-slim"
    assert task.container["arguments"] == "-e K=V"
    assert (task.type, task.name) == ("testing", "baseline")
    assert task.runtime["argv"] == ["--lr", "0.1", "--name", "inner"]


def test_run_refuses_a_missing_script(home: Path) -> None:
    result = invoke("run", "nope.py", "--project", "p")
    assert result.exit_code == 2
    assert "nope.py" in result.stderr


def test_task_from_script_refuses_an_unknown_type(repo: SourceRepo) -> None:
    with pytest.raises(InvalidInput, match="unknown task type 'nope'"):
        task_from_script(repo.path / "sub" / "train.py", task_type="nope")


# -- agent execute ----------------------------------------------------------------


def test_execute_applies_the_diff_and_passes_the_args(
    repo: SourceRepo, pushed_repo: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirty(repo)
    monkeypatch.chdir(repo.path / "sub")
    task_id = run_script("train.py", "--epochs", "3", "two words")

    proc = run_agent(home, "execute", "--id", task_id[:8], "--no-env")

    assert proc.returncode == 0, proc.stderr
    assert "uncommitted args ['--epochs', '3', 'two words'] cwd" in proc.stdout
    assert f"cwd {home / 'work' / task_id / 'sub'}\n" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == f"task {task_id} completed"
    assert get_backend().get_task(task_id).status == "completed"


def test_execute_a_repository_without_remote(
    repo: SourceRepo, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo.path)
    task_id = run_script("sub/train.py")

    proc = run_agent(home, "execute", "--id", task_id, "--no-env", "--quiet")

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert f"task {task_id} completed" in proc.stderr


def test_execute_an_untracked_script(
    repo: SourceRepo, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo.path / "sub" / "fresh.py").write_text("print('fresh file ran')\n")
    monkeypatch.chdir(repo.path)
    task_id = run_script("sub/fresh.py")

    proc = run_agent(home, "execute", "--id", task_id, "--no-env")

    assert proc.returncode == 0, proc.stderr
    assert "fresh file ran" in proc.stdout


def test_execute_inline_code_outside_git(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "job.py").write_text("import sys\nprint('inline', sys.argv[1:])\n")
    monkeypatch.chdir(loose)
    task_id = run_script("job.py", "x", "--flag")

    proc = run_agent(home, "execute", "--id", task_id, "--no-env")

    assert proc.returncode == 0, proc.stderr
    assert "inline ['x', '--flag']" in proc.stdout


def test_execute_a_failing_task_exits_1_with_the_reason(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "bad.py").write_text("raise SystemExit(3)\n")
    monkeypatch.chdir(tmp_path)
    task_id = run_script("bad.py")

    proc = run_agent(home, "execute", "--id", task_id, "--no-env")

    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"task {task_id} failed: exit code 3 (see `agent logs {task_id}`)"


def test_execute_refuses_unknown_and_finished_tasks(home: Path, store: Backend) -> None:
    proc = run_agent(home, "execute", "--id", "feedbeef", "--no-env")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: no task with id or id prefix 'feedbeef' (list them with `agent tasks`)"
    ]

    task = store.create_task(Task(name="t", project="p"))
    store.set_status(task.id, "in_progress")
    store.set_status(task.id, "completed")
    proc = run_agent(home, "execute", "--id", task.id)
    assert proc.returncode == 2
    assert "only created or queued tasks run" in proc.stderr


def test_execute_stops_the_task_on_sigint(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    pid_file = tmp_path / "pid"
    (tmp_path / "sleepy.py").write_text(
        "import os, time\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}}\\n')\n"
        "time.sleep(60)\n"
    )
    monkeypatch.chdir(tmp_path)
    task_id = run_script("sleepy.py")
    (home / "agent.toml").write_text("[agent]\nkill_grace = 2.0\n")
    proc = start_execute(home, task_id, "--no-env")
    try:
        task_pid = int(wait_for_file(pid_file, timeout=60))
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()

    assert proc.returncode == 130
    assert "interrupted: stopping the task" in stderr
    assert wait_gone([task_pid]) == []
    task = get_backend().get_task(task_id)
    assert (task.status, task.status_message) == ("stopped", "interrupted at `agent execute`")


def test_execute_keep_status_on_signal_leaves_the_status_to_the_sender(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under Slurm the signal reaches the task's processes too, and the glue reads why it
    came from Slurm: execute records nothing itself. Here only execute gets the signal, so
    the task runs on to its end."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    started = tmp_path / "started"
    (tmp_path / "brief.py").write_text(
        f"import time\nopen({str(started)!r}, 'w').write('1\\n')\ntime.sleep(2)\n"
    )
    monkeypatch.chdir(tmp_path)
    task_id = run_script("brief.py")
    proc = start_execute(home, task_id, "--no-env", "--keep-status-on-signal")
    try:
        wait_for_file(started, timeout=60)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()

    assert "the task's status is left to the signal's sender" in stderr
    assert get_backend().get_task(task_id).status == "completed"
    assert proc.returncode == 0


# -- agent build ------------------------------------------------------------------


def test_build_refuses_to_replace_a_directory_that_is_no_venv(
    tmp_path: Path, store: Backend
) -> None:
    task = store.create_task(Task(name="t", project="p"))
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "data.txt").write_text("keep me\n")

    result = invoke("build", "--id", task.id, "--target", str(keep))

    assert result.exit_code == 2
    assert "is not empty and not a virtualenv" in result.stderr
    assert (keep / "data.txt").read_text() == "keep me\n"


@pytest.mark.slow
def test_build_makes_the_tasks_env(
    repo: SourceRepo,
    home: Path,
    wheelhouse: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "agent.toml").write_text(
        f"[agent]\nfind_links = {str(wheelhouse)!r}\nno_index = true\n"
    )
    monkeypatch.chdir(repo.path)
    task_id = run_script("sub/train.py", "--packages", "tinypkg==2.0")
    target = tmp_path / "built-env"

    proc = run_agent(home, "build", "--id", task_id, "--target", str(target))
    assert proc.returncode == 0, proc.stderr

    python = proc.stdout.strip()
    assert python == str(target / "bin" / "python")
    out = subprocess.run(
        [python, "-c", "import tinypkg; print(tinypkg.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "2.0"
    assert "tinypkg" in proc.stderr  # the installer's output went to stderr

    again = run_agent(home, "build", "--id", task_id, "--target", str(target))
    assert again.returncode == 0, again.stderr  # an existing venv is replaced


@pytest.mark.slow
def test_run_then_execute_in_a_venv(
    repo: SourceRepo,
    home: Path,
    wheelhouse: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "agent.toml").write_text(
        f"[agent]\nfind_links = {str(wheelhouse)!r}\nno_index = true\n"
    )
    (repo.path / "sub" / "uses.py").write_text("import tinypkg\nprint('tiny', tinypkg.VERSION)\n")
    (repo.path / "requirements.txt").write_text("tinypkg==1.0\n")
    monkeypatch.chdir(repo.path)
    task_id = run_script("sub/uses.py")

    proc = run_agent(home, "execute", "--id", task_id)

    assert proc.returncode == 0, proc.stderr
    assert "tiny 1.0" in proc.stdout, proc.stdout + proc.stderr


def test_task_argv_appends_the_recorded_arguments() -> None:
    listed = Task(script=Script(entry_point="t.py"), runtime={"argv": ["--lr", 0.1]})
    spelled = Task(script=Script(entry_point="t.py"), runtime={"argv": "--msg 'two words'"})

    assert task_argv("py", listed) == ["py", "t.py", "--lr", "0.1"]
    assert task_argv("py", spelled) == ["py", "t.py", "--msg", "two words"]
    assert task_argv("py", Task(script=Script(entry_point="t.py"))) == ["py", "t.py"]
