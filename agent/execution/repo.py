"""Task code from git: a bare mirror per repository, a checkout per task, the diff on top.

``RepoCache`` keeps one ``git clone --mirror`` per repository url under its root
(``$AGENT_HOME/vcs-cache``) and fetches only when a task asks for a commit the
mirror lacks. A task's checkout is a ``git clone --shared`` of the mirror (no
object copies), detached at the commit, with the task's uncommitted diff applied.

Credentials never travel inside a url that is logged, stored or written to a git
config: they come from ``AGENT_GIT_USER``/``AGENT_GIT_PASS`` (or ``user``/``password``
of ``[agent.git]`` in ``agent.toml``), or are split off a url that carries them
(``https://user:token@host``, ``ssh://user:pw@host``, ``?private_token=``), and reach
git as an ``http.extraheader`` set through the environment of the git process only
(not its command line). With credentials, an ssh url is fetched over https, as
clearml-agent does (``force_ssh = true`` in ``[agent.git]`` keeps ssh). Without any,
git's own ``~/.netrc`` and credential helpers apply. Everything this module logs goes
through :func:`~agent.core.secrets.redact`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agent.core.errors import AgentError
from agent.core.secrets import SSH_SCHEMES, redact, register_secret, split_url_credentials
from agent.execution.locks import file_lock

REPOSITORY_UNREACHABLE = "repository unreachable"
COMMIT_NOT_FOUND = "commit not found"
DIFF_DOES_NOT_APPLY = "diff does not apply"
NOT_A_REPOSITORY = "not a git repository"

Log = Callable[[str], None]


class RepoError(AgentError):
    """Task code could not be materialised.

    Attributes:
        reason: one of ``"repository unreachable"``, ``"commit not found"``,
            ``"diff does not apply"`` (or ``"not a git repository"`` from
            :func:`describe_repo`).
        detail: why, in git's words (redacted).
    """

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = redact(detail.strip())
        super().__init__(f"{reason}: {self.detail}")


# -- credentials -----------------------------------------------------------


@dataclass(frozen=True)
class GitCredentials:
    """A user name and password (or token) for http(s) repositories."""

    user: str
    password: str = field(default="", repr=False)

    @classmethod
    def from_settings(cls, settings: Any = None) -> GitCredentials | None:
        """``AGENT_GIT_USER``/``AGENT_GIT_PASS``, else ``user``/``password`` of the
        ``[agent.git]`` table of ``agent.toml``, else ``[agent] git_user/git_pass``
        (clearml-agent's names). None when none is set: git's own ``~/.netrc`` and
        credential helpers then answer, as for a plain ``git clone``."""
        table = git_settings(settings)
        user = os.environ.get("AGENT_GIT_USER") or table.get("user") or ""
        password = os.environ.get("AGENT_GIT_PASS") or table.get("password") or ""
        if not user and not password:
            return None
        return cls(str(user), str(password))

    def __post_init__(self) -> None:
        # Known secrets are masked in everything logged from now on.
        register_secret(self.password)
        register_secret(self._basic())

    def _basic(self) -> str:
        return base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

    def git_env(self) -> dict[str, str]:
        """Environment that makes git send these credentials: a header set through the
        environment of the git process only (not its command line, so not in ``ps``;
        never on disk)."""
        return {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraheader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {self._basic()}",
        }


def git_settings(settings: Any = None) -> dict[str, Any]:
    """The ``[agent.git]`` table of ``agent.toml`` (``user``, ``password``,
    ``force_ssh``), with ``[agent] git_user``/``git_pass`` as ``user``/``password``."""
    table: Mapping[str, Any] = getattr(settings, "agent", None) or {}
    merged = {"user": table.get("git_user"), "password": table.get("git_pass")}
    own = table.get("git")
    if isinstance(own, Mapping):
        merged.update({k: v for k, v in own.items() if v not in (None, "")})
    return merged


def split_credentials(url: str) -> tuple[str, GitCredentials | None]:
    """``(url as a record keeps it, the credentials it carried)``: a user and password
    (``https://user:pw@``, ``ssh://user:pw@``), a token alone (``https://tok@``), or a
    token parameter (``?access_token=``, ``?private_token=``, ``?token=``)."""
    clean, user, secret = split_url_credentials(url)
    if secret is None and (user is None or urlsplit(clean).scheme.lower() in SSH_SCHEMES):
        return clean, None  # nothing, or an ssh login name alone
    return clean, GitCredentials(user or "oauth2", secret or "")


_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/\s]+)@)?(?P<host>[^:/\s]+):(?!//)(?P<path>.+)$")


def over_https(url: str) -> str:
    """The https url of an ssh one (``git@host:o/r.git``, ``ssh://git@host:22/o/r.git``
    -> ``https://host/o/r.git``); any other url as it is. With credentials configured,
    the agent fetches ssh repositories over https, as clearml-agent does."""
    parts = urlsplit(url)
    if "://" in url:
        if parts.scheme.lower() not in SSH_SCHEMES or not parts.hostname:
            return url
        return urlunsplit(("https", parts.hostname, parts.path, "", ""))
    match = _SCP_LIKE.match(url)
    if match is None or not (match["user"] or "." in match["host"]):
        return url
    return f"https://{match['host']}/{match['path'].lstrip('/')}"


# -- git plumbing ----------------------------------------------------------


def _git_env(credentials: GitCredentials | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"  # fail instead of waiting on a prompt nobody sees
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    env.setdefault("GIT_HTTP_LOW_SPEED_LIMIT", "1000")  # abort a stalled transfer ...
    env.setdefault("GIT_HTTP_LOW_SPEED_TIME", "60")  # ... after a minute under 1 kB/s
    for key in [k for k in env if k.startswith("GIT_CONFIG_")]:
        del env[key]
    if credentials is not None:
        env.update(credentials.git_env())
    return env


def _git(
    args: list[str],
    cwd: Path | None = None,
    credentials: GitCredentials | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=_git_env(credentials),
        input=stdin,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )


def _why(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
    return redact("; ".join(lines[-3:]) or f"git exited with code {proc.returncode}")


# -- the cache -------------------------------------------------------------


class RepoCache:
    """Bare mirrors of task repositories under ``root``, one per url.

    Args:
        root: directory of the mirrors (``$AGENT_HOME/vcs-cache``).
        credentials: used for urls that carry none of their own.
        force_ssh: fetch ssh urls over ssh even with credentials (default: over https).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        credentials: GitCredentials | None = None,
        force_ssh: bool = False,
    ):
        self.root = Path(root)
        self.credentials = credentials
        self.force_ssh = force_ssh

    def mirror_path(self, url: str) -> Path:
        """Where the mirror of ``url`` lives (credentials do not change it)."""
        clean, _ = split_credentials(url)
        return self.root / f"{hashlib.sha256(clean.encode()).hexdigest()[:24]}.git"

    def ensure_commit(
        self, url: str, commit: str = "", branch: str | None = None, log: Log = print
    ) -> tuple[Path, str]:
        """Make the mirror hold ``commit`` (or the tip of ``branch``/HEAD when no commit).

        Returns the mirror path and the full commit hash. Fetches only when needed.

        Raises:
            RepoError: unreachable repository, or a commit it does not have.
        """
        clean, own = split_credentials(url)
        credentials = own or self.credentials
        source = clean if credentials is None or self.force_ssh else over_https(clean)
        mirror = self.mirror_path(clean)
        self.root.mkdir(parents=True, exist_ok=True)
        with file_lock(mirror.with_suffix(".lock")):
            if not mirror.exists():
                self._clone_mirror(source, mirror, credentials, log)
            elif not commit or _resolve(mirror, commit) is None:
                self._fetch(source, mirror, credentials, log)
            return mirror, _resolve_or_raise(mirror, clean, commit, branch)

    def checkout(
        self,
        url: str,
        commit: str,
        dest: str | os.PathLike[str],
        branch: str | None = None,
        diff: str = "",
        log: Log = print,
    ) -> Path:
        """Check ``commit`` of ``url`` out into ``dest`` (new or empty) and apply ``diff``.

        Raises:
            RepoError: ``repository unreachable``, ``commit not found`` or
                ``diff does not apply``, with git's reason.
        """
        clean, _ = split_credentials(url)
        dest = Path(dest)
        mirror, sha = self.ensure_commit(url, commit, branch, log)
        log(redact(f"checking out {sha[:12]} of {clean} into {dest}"))
        if dest.exists() and any(dest.iterdir()):
            raise FileExistsError(f"checkout destination {dest} is not empty")
        _run_or_raise(["clone", "--quiet", "--shared", "--no-checkout", str(mirror), str(dest)])
        switch = ["-B", branch] if branch else ["--detach"]
        _run_or_raise(["checkout", "--quiet", *switch, sha], cwd=dest)
        _run_or_raise(["remote", "set-url", "origin", clean], cwd=dest)
        if diff.strip():
            apply_diff(dest, diff, log)
        return dest

    def _clone_mirror(
        self, url: str, mirror: Path, credentials: GitCredentials | None, log: Log
    ) -> None:
        log(redact(f"cloning {url} into the repository cache"))
        tmp = mirror.with_name(f"{mirror.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        proc = _git(["clone", "--mirror", "--quiet", url, str(tmp)], credentials=credentials)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RepoError(REPOSITORY_UNREACHABLE, f"cannot clone {url}: {_why(proc)}")
        tmp.rename(mirror)

    def _fetch(self, url: str, mirror: Path, credentials: GitCredentials | None, log: Log) -> None:
        log(redact(f"fetching {url}"))
        _git(["remote", "set-url", "origin", url], cwd=mirror)  # https now, ssh before?
        proc = _git(["fetch", "--prune", "--quiet", "origin"], cwd=mirror, credentials=credentials)
        if proc.returncode != 0:
            raise RepoError(REPOSITORY_UNREACHABLE, f"cannot fetch {url}: {_why(proc)}")


def _resolve(repo: Path, rev: str) -> str | None:
    proc = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=repo)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _resolve_or_raise(mirror: Path, url: str, commit: str, branch: str | None) -> str:
    if commit:
        sha = _resolve(mirror, commit)
        if sha is None:
            raise RepoError(COMMIT_NOT_FOUND, f"{commit} is not in {url} (after a fetch)")
        return sha
    ref = f"refs/heads/{branch}" if branch else "HEAD"
    sha = _resolve(mirror, ref)
    if sha is None:
        raise RepoError(
            COMMIT_NOT_FOUND, f"{url} has no {f'branch {branch}' if branch else 'HEAD'}"
        )
    return sha


def _run_or_raise(args: list[str], cwd: Path | None = None) -> str:
    proc = _git(args, cwd=cwd)
    if proc.returncode != 0:
        raise RepoError(COMMIT_NOT_FOUND, f"git {args[0]} failed: {_why(proc)}")
    return proc.stdout


def apply_diff(dest: str | os.PathLike[str], diff: str, log: Log = print) -> None:
    """``git apply`` the (uncommitted) ``diff`` in the checkout ``dest``.

    Raises:
        RepoError: ``diff does not apply``, with the hunks git rejected.
    """
    if not diff.endswith("\n"):
        diff += "\n"  # git apply calls a patch without a final newline corrupt
    log(f"applying uncommitted changes ({diff.count(chr(10))} diff lines)")
    proc = _git(["apply", "--whitespace=nowarn", "-"], cwd=Path(dest), stdin=diff)
    if proc.returncode != 0:
        raise RepoError(DIFF_DOES_NOT_APPLY, _why(proc))


# -- describing a local checkout --------------------------------------------


def describe_repo(path: str | os.PathLike[str]) -> dict[str, str]:
    """Where the code at ``path`` comes from, for a task record.

    Returns ``{repository, branch, commit, diff, working_dir}``: the remote url
    (``origin`` first, without credentials) or the local path when there is no
    remote, the branch ("" when detached), HEAD's hash, the diff of tracked files
    against HEAD (staged included, binary-safe) and ``path`` relative to the root.

    Raises:
        RepoError: ``not a git repository``, or ``commit not found`` when it has no commit.
    """
    here = Path(path).resolve()
    if here.is_file():
        here = here.parent
    top = _git(["rev-parse", "--show-toplevel"], cwd=here)
    if top.returncode != 0:
        raise RepoError(NOT_A_REPOSITORY, f"{here}: {_why(top)}")
    root = Path(top.stdout.strip())
    commit = _resolve(root, "HEAD")
    if commit is None:
        raise RepoError(COMMIT_NOT_FOUND, f"{root} has no commit yet")
    branch = _git(["symbolic-ref", "--quiet", "--short", "HEAD"], cwd=root).stdout.strip()
    return {
        "repository": _remote_url(root) or str(root),
        "branch": branch,
        "commit": commit,
        "diff": _git(["diff", "HEAD", "--binary"], cwd=root).stdout,
        "working_dir": Path(os.path.relpath(here, root)).as_posix(),
    }


def _remote_url(root: Path) -> str:
    remotes = _git(["remote"], cwd=root).stdout.split()
    if not remotes:
        return ""
    name = "origin" if "origin" in remotes else remotes[0]
    url = _git(["remote", "get-url", name], cwd=root).stdout.strip()
    return split_credentials(url)[0]
