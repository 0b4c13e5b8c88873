"""Helpers of the pipeline tests: a temp AGENT_HOME, git repos, daemons, subprocess runs."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.core.models import Task
from agent.store.base import Backend
from tests import services
from tests.bare_node import bare_python, node_env
from tests.services import agent_env  # noqa: F401 - re-exported

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINES = Path(__file__).resolve().parent / "pipelines"


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """:func:`tests.services.wait_for` with the longer default that pipelines need."""
    return services.wait_for(predicate, timeout, what)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(root: Path, files: dict[str, str], commit: bool = True) -> Path:
    """A git repository at ``root`` holding ``files`` (name -> text or a file in pipelines/)."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "tests@example.com")
    git(root, "config", "user.name", "tests")
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        source = PIPELINES / content
        if "\n" not in content and source.is_file():
            shutil.copy(source, path)
        else:
            path.write_text(content)
    if commit:
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "pipeline")
    return root


def run_script(
    script: Path,
    home: Path,
    mode: str,
    timeout: float = 180,
    args: tuple[str, ...] = (),
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """``python script ARGS`` with PIPELINE_MODE=mode; fails the test on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=script.parent,
        env=agent_env(home, PIPELINE_MODE=mode, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{script.name} ({mode}) failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def launch_remote(script: Path, env: dict[str, str], *args: str, prefix: Sequence[str] = ()) -> str:
    """Run a pipeline script in remote mode (it enqueues its controller and exits); the id
    of the controller task it printed. ``prefix`` runs it elsewhere (``ip netns exec NS``)."""
    proc = subprocess.run(
        [*prefix, sys.executable, str(script), *args],
        cwd=script.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(r"as task ([0-9a-f]{32})", proc.stdout)
    assert match, proc.stdout
    return match.group(1)


def pipeline_tasks(store: Backend, name: str | None = None) -> list[Task]:
    """Controller tasks, newest first."""
    return store.query_tasks(type="controller", name=name)


def steps_of(store: Backend, pipeline_id: str) -> dict[str, Task]:
    """The step tasks of a pipeline by step name (with artifacts)."""
    return {t.name: store.get_task(t.id) for t in store.query_tasks(parent=pipeline_id)[::-1]}


def wait_finished(store: Backend, task_id: str, timeout: float = 120) -> Task:
    terminal = {"completed", "failed", "stopped", "cached", "skipped", "published"}
    return wait_for(
        lambda: (t := store.get_task(task_id)).status in terminal and t,
        timeout,
        f"task {task_id} to finish",
    )


def artifact_value(store: Backend, task_id: str, name: str) -> Any:
    from agent.pipeline.values import load_artifact

    return load_artifact(store.get_artifacts(task_id)[name])


class Daemon:
    """``agent daemon ARGS`` on the bare node (see :mod:`tests.bare_node`), its output in a
    log file; ``env`` is added to its environment (``AGENT_API_URL`` of a server);
    ``prefix`` runs it elsewhere (``ip netns exec NS``: on another host)."""

    def __init__(
        self,
        home: Path,
        *args: str,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ):
        self.home = home
        self.prefix = list(prefix)
        self.args = list(args)
        self.env = dict(env or {})
        self.log_path = home / f"daemon-{'-'.join(a.strip('-') for a in args)}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.prefix, str(bare_python()), "-m", "agent.cli.main", "daemon", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=node_env(self.home, **self.env),
                cwd=self.home,
                start_new_session=True,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
