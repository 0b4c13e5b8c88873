"""Where a task's code comes from: the calling script, its git repository, commit and diff.

Used by ``Task.init`` (the script that is running) and ``Task.create`` (a script on
disk). Every git call is short and bounded; a missing git, a script outside any
repository or a slow repository leaves the git fields empty instead of failing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agent.core.models import Script

#: Seconds one git command may take before its field is left empty.
GIT_TIMEOUT_S = 5.0
#: A diff larger than this is left out of the task record.
MAX_DIFF_BYTES = 2 * 1024 * 1024


def main_script_path() -> Path | None:
    """The file of the running ``__main__`` script, or None (REPL, ``-c``, notebooks)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None
    path = Path(path)
    return path.resolve() if path.is_file() else None


def script_for_file(path: str | os.PathLike[str], with_git: bool = True) -> Script:
    """Describe a local script: its git origin when it has one, else its own code.

    In a git work tree: repository (the ``origin`` url), branch, commit, the
    uncommitted diff, the entry point and working dir relative to the repository
    root. Outside one (or with ``with_git=False``): the entry point is the file
    name and ``code`` holds the script's text, so that it can run anywhere.
    """
    path = Path(path).resolve()
    root = git_root(path.parent) if with_git else None
    if root is None:
        return Script(
            entry_point=path.name,
            working_dir=".",
            code=path.read_text(encoding="utf-8", errors="replace"),
        )
    rel = path.relative_to(root)
    return Script(
        repository=strip_credentials(_git(root, "remote", "get-url", "origin")),
        branch=_branch(root),
        commit=_git(root, "rev-parse", "HEAD"),
        diff=_diff(root),
        entry_point=rel.name,
        working_dir=rel.parent.as_posix() or ".",
    )


def running_script(with_git: bool = True) -> Script:
    """The :class:`Script` of the running program (empty fields when unknown).

    Unlike :func:`script_for_file`, a script outside git does not copy its code:
    the task records where it ran, not a runnable copy.
    """
    path = main_script_path()
    if path is None:
        return Script(entry_point="", working_dir=os.getcwd())
    script = script_for_file(path, with_git=with_git)
    if not script.commit:
        script.code = ""
        script.working_dir = str(path.parent)
    return script


def git_root(directory: str | os.PathLike[str]) -> Path | None:
    """The top of the git work tree holding ``directory``, or None."""
    top = _git(Path(directory), "rev-parse", "--show-toplevel")
    return Path(top).resolve() if top else None


def strip_credentials(url: str) -> str:
    """An http(s) ``url`` without its ``user:token@`` part: records never hold credentials.

    ssh URLs keep their user (``git@host``): it names the account, not a secret.
    """
    scheme, sep, rest = url.partition("://")
    if scheme.lower() not in ("http", "https") or not sep:
        return url
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rsplit('@', 1)[-1]}{slash}{path}"


def _branch(root: Path) -> str:
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    return "" if branch == "HEAD" else branch  # detached head: no branch


def _diff(root: Path) -> str:
    # --binary so that `git apply` can restore binary files too.
    diff = _git(root, "diff", "HEAD", "--binary", strip=False)
    if len(diff.encode("utf-8", errors="replace")) > MAX_DIFF_BYTES:
        return ""
    return diff


def _git(cwd: Path, *args: str, strip: bool = True) -> str:
    """Output of one git command, or "" when git is missing, fails or is slow."""
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    if result.returncode != 0:
        return ""
    return result.stdout.strip() if strip else result.stdout
