"""Where a task's code comes from: a script file, its git repository, commit and diff.

One description for every way a task is made from a file: ``Task.init`` (the running
script), ``Task.create``, ``agent run`` and a pipeline's controller. In a git work tree
the task points at the repository (the ``origin`` url without credentials, else the local
path), branch, commit and the uncommitted diff, plus the script and the ``.py`` files next
to it that git does not track yet, so an agent's checkout holds what runs here. Outside
git (or in a repository without a commit) the script travels alone, as inline code.

Every git call is bounded; a missing or slow git leaves the task with inline code
instead of failing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.core.models import Script

#: Seconds one git command may take.
GIT_TIMEOUT_S = 10.0
#: A diff larger than this is left out of the task record (the note says so).
MAX_DIFF_BYTES = 2 * 1024 * 1024
#: Untracked ``.py`` files next to the script travel when at most this big.
MAX_UNTRACKED_BYTES = 512 * 1024

Note = Callable[[str], None]


def main_script_path() -> Path | None:
    """The file of the running ``__main__`` script, or None (REPL, ``-c``, notebooks)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None
    path = Path(path)
    return path.resolve() if path.is_file() else None


def describe_script(
    path: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    with_git: bool = True,
    note: Note | None = None,
) -> Script:
    """A :class:`Script` that runs ``path`` on an agent as it runs here.

    Args:
        path: the script.
        cwd: the directory it is run from; when the script lies under it (inside the
            repository) the task runs from there too (``python sub/train.py``); default:
            the script's own directory.
        with_git: False stores the script's code even inside a git work tree.
        note: receives what the user should know (untracked files, an unpushed commit).
    """
    return locate_script(path, cwd, with_git, note)[0]


def locate_script(
    path: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    with_git: bool = True,
    note: Note | None = None,
) -> tuple[Script, Path]:
    """:func:`describe_script`, and the directory the script's project lives in: the
    repository's root when the code travels as a repository, else the script's own
    directory (where a requirements file and the user's own modules are looked for)."""
    path = Path(path).resolve()
    note = note or (lambda _line: None)
    root = git_root(path.parent) if with_git else None
    if root is not None:
        script = _from_repository(path, root, cwd, note)
        if script is not None:
            return script, root
    inline = Script(
        entry_point=path.name,
        working_dir=".",
        code=path.read_text(encoding="utf-8", errors="replace"),
    )
    return inline, path.parent


def _from_repository(path: Path, root: Path, cwd: Any, note: Note) -> Script | None:
    from agent.execution.repo import RepoError, describe_repo

    try:
        info = describe_repo(path.parent)
    except (RepoError, OSError, subprocess.SubprocessError) as exc:
        note(f"{root}: {exc}: the script travels alone, as inline code")
        return None
    here = Path(cwd).resolve() if cwd is not None else path.parent
    run_dir = here if path.is_relative_to(here) and here.is_relative_to(root) else path.parent
    diff = info["diff"] + _untracked_diff(root, path, note)
    if len(diff.encode("utf-8", errors="replace")) > MAX_DIFF_BYTES:
        note(
            f"the uncommitted changes of {root} are over {MAX_DIFF_BYTES >> 20} MB: "
            "they are not recorded (commit them so that agents run them)"
        )
        diff = ""
    check_pushed(root, info["repository"], info["commit"], note)
    return Script(
        repository=info["repository"],
        branch=info["branch"],
        commit=info["commit"],
        diff=diff,
        entry_point=path.relative_to(run_dir).as_posix(),
        working_dir=run_dir.relative_to(root).as_posix(),
    )


def _untracked_diff(root: Path, script: Path, note: Note) -> str:
    """A diff creating the script and the ``.py`` files beside it that git does not track."""
    here = script.parent.relative_to(root).as_posix() or "."
    listed = _git(root, "ls-files", "--others", "--exclude-standard", "--", here)
    chunks = []
    for rel in listed.splitlines():
        full = root / rel
        if full.parent != script.parent or not (full.suffix == ".py" or full == script):
            continue
        try:
            if full.stat().st_size > MAX_UNTRACKED_BYTES:
                note(f"{rel} is not committed and too big to travel in the task's diff")
                continue
        except OSError:
            continue
        if full == script:
            note(f"{rel} is not committed: it travels in the task's diff as a new file")
        chunk = _git(root, "diff", "--no-index", "--binary", "--", "/dev/null", rel, ok=(0, 1))
        chunks.append(chunk if chunk.endswith("\n") or not chunk else chunk + "\n")
    return "".join(chunks)


def check_pushed(root: Path, repository: str, commit: str, note: Note) -> bool:
    """Tell the user (through ``note``) when agents elsewhere cannot fetch ``commit``;
    True when they can."""
    short = commit[:12]
    if repository == str(root):
        note(
            f"commit {short} is not pushed (the repository has no remote): agents that "
            f"cannot reach {root} will fail"
        )
        return False
    if not _git(root, "branch", "-r", "--contains", commit).strip():
        note(
            f"commit {short} is not pushed: agents that cannot reach {root} will fail "
            f"(push it to {repository})"
        )
        return False
    return True


def git_root(directory: str | os.PathLike[str]) -> Path | None:
    """The top of the git work tree holding ``directory``, or None."""
    top = _git(Path(directory), "rev-parse", "--show-toplevel").strip()
    return Path(top).resolve() if top else None


def _git(cwd: Path, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    """Output of one git command, or "" when git is missing, fails or is slow."""
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=GIT_TIMEOUT_S,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout if result.returncode in ok else ""
