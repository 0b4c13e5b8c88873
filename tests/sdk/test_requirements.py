"""What ``Task.init`` records for an agent to run the script elsewhere: requirements (detected
where the user's libraries are installed), the code outside git, an unpushed commit warned
about. ClearML's behaviour: imports analysed into "installed packages", a repository's
requirements file preferred, ``Task.add_requirements`` / ``force_requirements_env_freeze``
called before ``Task.init``."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.sdk.conftest import script_env


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def _run(home: Path, script: Path, source: str) -> subprocess.CompletedProcess[str]:
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(textwrap.dedent(source))
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=script.parent,
        env=script_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _task(backend, name: str):
    (task,) = backend.query_tasks(name=name)
    return backend.get_task(task.id)


INIT = """
import helpers
from agent import Task
task = Task.init(project_name="req", task_name="{name}")
"""


def test_init_records_imports_of_the_script_and_its_local_modules(agent_home, backend, tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "helpers.py").write_text(
        "import psutil\ndef f():\n    import sklearn\n    import cv2\n"
    )
    _run(agent_home, tmp_path / "job" / "train.py", INIT.format(name="imports"))
    task = _task(backend, "imports")
    version = importlib.metadata.version
    assert task.script.requirements == [
        "opencv-python",  # not installed here: recorded by its distribution's name
        f"psutil=={version('psutil')}",
        f"scikit-learn=={version('scikit-learn')}",
    ]


def test_a_repository_requirements_file_wins_over_imports(agent_home, backend, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "requirements.txt").write_text("numpy>=1.26  # arrays\nrequests\n")
    (repo / "src").mkdir()
    (repo / "src" / "helpers.py").write_text("import psutil\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "first")
    _run(agent_home, repo / "src" / "train.py", INIT.format(name="listed"))
    task = _task(backend, "listed")
    assert task.script.requirements == ["numpy>=1.26", "requests"]
    assert task.script.repository == str(repo.resolve())


def test_add_requirements_and_env_freeze_before_init(agent_home, backend, tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "helpers.py").write_text("import psutil\n")
    (tmp_path / "extra.txt").write_text("tinypkg==1.0\n")
    source = """
        import helpers
        from agent import Task
        Task.add_requirements("torch", "2.13.0")
        Task.add_requirements("rich", ">=13")
        Task.add_requirements(EXTRA)
        Task.ignore_requirements("psutil")
        Task.init(project_name="req", task_name="added")
    """.replace("EXTRA", repr(str(tmp_path / "extra.txt")))
    _run(agent_home, tmp_path / "job" / "train.py", source)
    assert _task(backend, "added").script.requirements == [
        "torch==2.13.0",
        "rich>=13",
        "tinypkg==1.0",
    ]

    frozen = """
        from agent import Task
        Task.force_requirements_env_freeze()
        Task.init(project_name="req", task_name="frozen")
    """
    _run(agent_home, tmp_path / "job" / "frozen.py", frozen)
    recorded = _task(backend, "frozen").script.requirements
    assert f"psutil=={importlib.metadata.version('psutil')}" in recorded
    assert f"numpy=={importlib.metadata.version('numpy')}" in recorded  # imported or not

    from_file = """
        from agent import Task
        Task.force_requirements_env_freeze(requirements_file=EXTRA)
        Task.init(project_name="req", task_name="from-file")
    """.replace("EXTRA", repr(str(tmp_path / "extra.txt")))
    _run(agent_home, tmp_path / "job" / "from_file.py", from_file)
    assert _task(backend, "from-file").script.requirements == ["tinypkg==1.0"]


def test_outside_git_the_code_travels_inline(agent_home, backend, tmp_path):
    source = INIT.replace("import helpers\n", "").format(name="inline")
    _run(agent_home, tmp_path / "loose" / "train.py", source)
    task = _task(backend, "inline")
    assert task.script.repository == ""
    assert task.script.code == textwrap.dedent(source)
    assert (task.script.entry_point, task.script.working_dir) == ("train.py", ".")


def test_an_unpushed_commit_is_warned_about_at_init(agent_home, backend, tmp_path):
    origin = tmp_path / "origin.git"
    _git(tmp_path, "init", "-q", "--bare", str(origin))
    repo = tmp_path / "work"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text(textwrap.dedent(INIT.replace("import helpers\n", "")))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "pushed")
    _git(repo, "remote", "add", "origin", str(origin))
    _git(repo, "push", "-q", "origin", "main")

    source = INIT.replace("import helpers\n", "")
    pushed = _run(agent_home, repo / "train.py", source.format(name="pushed"))
    assert "not pushed" not in pushed.stderr

    (repo / "README.md").write_text("local only\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "local")
    commit = _git(repo, "rev-parse", "HEAD")
    local = _run(agent_home, repo / "train.py", source.format(name="local"))
    assert (
        f"commit {commit[:12]} is not pushed: agents that cannot reach {repo.resolve()} will fail"
    ) in local.stderr
    task = _task(backend, "local")
    assert (task.script.repository, task.script.commit) == (str(origin), commit)
