"""A task from a local script (``agent run``): where its code is, what it needs, how to call it.

Inside a git repository the task points at the repository: its url (the ``origin``
remote, else the local path), branch, commit and the uncommitted diff of tracked
files, so an agent reproduces the working copy exactly. The working dir and entry
point are relative to the repository root, chosen so the script runs as it would
here: from the current directory when the script lies under it (``python
sub/train.py`` from the root), else from the script's own directory. A script that
git does not track yet travels in the diff as a new file.

Outside a repository the script travels alone, as inline code (``script.code``).

Requirements, first found wins: the ``packages`` given, the repository's
``requirements.txt`` (next to the script when outside git), the script's imports
pinned to the versions installed here. Script arguments go to
``task.runtime["argv"]``, which every execution backend appends to the command line.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.core.errors import InvalidInput
from agent.core.models import Script, Task, TaskTypes
from agent.execution.repo import NOT_A_REPOSITORY, RepoError, describe_repo
from agent.execution.requirements import detect_requirements, read_requirements_file

Log = Callable[[str], None]

REQUIREMENTS_FILE = "requirements.txt"


def task_from_script(
    script_path: str | os.PathLike[str],
    args: Sequence[str] = (),
    project: str = "",
    name: str = "",
    packages: Sequence[str] | None = None,
    docker: str | None = None,
    docker_args: str | None = None,
    task_type: str = TaskTypes.training.value,
    cwd: str | os.PathLike[str] | None = None,
    log: Log | None = None,
) -> Task:
    """A new (unsaved, ``created``) task that runs ``script_path`` with ``args``.

    Args:
        script_path: the Python script to run.
        args: its command-line arguments (``task.runtime["argv"]``).
        project: project of the task.
        name: task name (default: the script's file name).
        packages: requirements to install; overrides requirements.txt and imports.
        docker: image to run it in (``task.container["image"]``).
        docker_args: container arguments (``task.container["arguments"]``).
        task_type: one of :class:`~agent.core.models.TaskTypes`.
        cwd: the directory the user runs from (default: the current one).
        log: receives notes for the user (untracked script, unpushed commit, ...).

    Raises:
        InvalidInput: no such script, or an unknown task type.
        RepoError: the script's repository has no commit yet.
    """
    note = log or (lambda _line: None)
    script = Path(script_path).expanduser().resolve()
    if not script.is_file():
        raise InvalidInput(f"script {os.fspath(script_path)!r} not found (or not a file)")
    try:
        kind = TaskTypes(task_type).value
    except ValueError:
        choices = ", ".join(t.value for t in TaskTypes)
        raise InvalidInput(f"unknown task type {task_type!r}; one of: {choices}") from None
    here = Path(cwd).resolve() if cwd is not None else Path.cwd().resolve()
    located = _script_from_repo(script, here, note)
    if located is None:
        note(
            f"{script.parent} is not in a git repository: only {script.name} travels "
            "(as inline code); other local files will not be there"
        )
        source = Script(entry_point=script.name, working_dir=".", code=script.read_text())
        located = source, script.parent
    source, requirements_dir = located
    source.requirements = _requirements(script, packages, requirements_dir)
    container = {"image": docker or "", "arguments": docker_args or "", "setup_script": ""}
    return Task(
        name=name or script.name,
        project=project,
        type=kind,
        script=source,
        container=container,
        runtime={"argv": [str(arg) for arg in args]} if args else {},
    )


# -- code ---------------------------------------------------------------------


def _script_from_repo(script: Path, here: Path, note: Log) -> tuple[Script, Path] | None:
    """The repository fields of ``script`` and the repository root; None outside git."""
    try:
        info = describe_repo(script.parent)
    except RepoError as exc:
        if exc.reason == NOT_A_REPOSITORY:
            return None
        raise
    root = script.parent
    for _ in Path(info["working_dir"]).parts:
        root = root.parent
    run_dir = here if script.is_relative_to(here) and here.is_relative_to(root) else script.parent
    diff = info["diff"]
    relative = script.relative_to(root).as_posix()
    if not _tracked(root, relative):
        note(f"{relative} is not committed: it travels in the task's diff as a new file")
        diff = _join_diffs(diff, _new_file_diff(root, relative))
    _check_pushed(root, info, note)
    source = Script(
        repository=info["repository"],
        branch=info["branch"],
        commit=info["commit"],
        diff=diff,
        entry_point=script.relative_to(run_dir).as_posix(),
        working_dir=run_dir.relative_to(root).as_posix(),
    )
    return source, root


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=root,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )


def _tracked(root: Path, relative: str) -> bool:
    return _git(root, "ls-files", "--error-unmatch", "--", relative).returncode == 0


def _new_file_diff(root: Path, relative: str) -> str:
    """A diff that creates ``relative`` (``git diff --no-index`` exits 1 when files differ)."""
    return _git(root, "diff", "--no-index", "--binary", "--", "/dev/null", relative).stdout


def _join_diffs(first: str, second: str) -> str:
    if first and not first.endswith("\n"):
        first += "\n"
    return first + second


def _check_pushed(root: Path, info: dict[str, str], note: Log) -> None:
    """Tell the user when agents elsewhere cannot fetch the commit."""
    if info["repository"] == str(root):
        note(
            f"the repository has no remote: agents fetch it from {root}, "
            "so only those on this machine can run the task"
        )
        return
    remote_branches = _git(root, "branch", "-r", "--contains", info["commit"]).stdout.strip()
    if not remote_branches:
        note(
            f"commit {info['commit'][:12]} is on no remote branch: push it "
            f"(git push), or agents will not find it in {info['repository']}"
        )


# -- requirements -----------------------------------------------------------------


def _requirements(script: Path, packages: Sequence[str] | None, where: Path) -> list[str]:
    """``packages``, else ``where/requirements.txt``, else the script's imports."""
    if packages:
        return [p.strip() for p in packages if p.strip()]
    listed = where / REQUIREMENTS_FILE
    if listed.is_file():
        return read_requirements_file(listed)
    return detect_requirements(script.read_text())
