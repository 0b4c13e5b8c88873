"""Python environments for tasks: built once per requirement set, reused, evicted LRU.

The cache key is a hash of (python version, sorted normalised requirements,
package manager); an environment lives in ``venvs/<key>`` (``$AGENT_HOME/venvs``).

Layout and locking, per key:

- ``<key>.lock``: shared while a task uses the environment, exclusive while it is
  built or evicted, so an environment in use is never removed.
- ``<key>/.agent-env.json``: written last; an environment without it is a build
  that did not finish and is rebuilt. Its mtime is the last-used stamp for LRU.

An environment is built in place rather than in a temp dir that is then renamed:
pip (and uv, unless relocatable) writes the venv's absolute path into the
shebangs of console scripts, which a rename would break. The marker file gives
the same all-or-nothing view to readers.

Every environment can ``import agent`` at the daemon's own version, and sees
nothing else of the daemon: a ``.pth`` file appends the agent's SDK view
(:mod:`agent.execution.sdk_view`: the agent package and the libraries the SDK needs,
as symlinks) to the END of ``sys.path``, so what the task's requirements install
wins, and an import the task did not declare fails alike on every node.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import agent
from agent.core.errors import AgentError
from agent.execution.locks import FileLock, file_lock
from agent.execution.requirements import canonical_name

Log = Callable[[str], None]

MARKER = ".agent-env.json"
PTH_NAME = "zzz-pipeline-agent.pth"  # processed after the env's own .pth files
PACKAGE_MANAGERS = ("uv", "pip")


class EnvError(AgentError):
    """An environment could not be built; ``reason`` says why in one line."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"environment build failed: {reason}")


@dataclass
class Env:
    """A ready environment, held (shared lock) until :meth:`release`."""

    path: Path
    python: Path
    key: str
    reused: bool
    _lock: FileLock | None = field(default=None, repr=False, compare=False)

    @property
    def bin_dir(self) -> Path:
        return self.python.parent

    def release(self) -> None:
        """Let the cache evict this environment again."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Env:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# -- requirements and interpreters -------------------------------------------

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(.*)$", re.DOTALL)


def normalize_requirement(requirement: str) -> str:
    """PEP 503 name (lower case, runs of ``-_.`` as ``-``) and no whitespace."""
    match = _NAME.match(requirement)
    if not match:
        return requirement.strip()
    name = canonical_name(match.group(1))
    rest = match.group(2)
    if ";" in rest:  # keep the spaces that environment markers need
        spec, marker = rest.split(";", 1)
        return f"{name}{''.join(spec.split())}; {' '.join(marker.split())}"
    return name + "".join(rest.split())


@lru_cache(maxsize=16)
def python_version(python: str) -> str:
    """``cpython-3.11.7`` for the interpreter at ``python`` (no subprocess for our own)."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        impl = sys.implementation.name
        return f"{impl}-{'.'.join(map(str, sys.version_info[:3]))}"
    code = "import sys; print(sys.implementation.name + '-' + '.'.join(map(str, sys.version_info[:3])))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


# Filled here, once, before any runner thread: up to Python 3.12, sysconfig fills its config
# vars without a lock, and a thread that asks while another fills them reads a half-made
# dict (uv's find_uv_bin then fails: "can only concatenate str (not NoneType)", seen with
# two slots starting their first tasks at once).
sysconfig.get_config_vars()


def find_uv() -> list[str] | None:
    """The command that runs uv, or None when it is not installed."""
    if importlib.util.find_spec("uv") is not None:
        try:
            from uv import find_uv_bin

            return [find_uv_bin()]
        except (ImportError, FileNotFoundError):
            pass
    found = shutil.which("uv")
    return [found] if found else None


# -- making the agent importable ---------------------------------------------


def agent_path_entries(env_python_version: str, view_root: str | os.PathLike[str]) -> list[str]:
    """Directories a task environment appends to ``sys.path`` to see the agent: its SDK
    view under ``view_root``. For another Python minor version than the daemon's (whose
    compiled libraries would not load there), a view of the agent's own packages only."""
    from agent.execution import sdk_view

    ours = python_version(sys.executable)
    if env_python_version.rsplit(".", 1)[0] == ours.rsplit(".", 1)[0]:
        return [str(sdk_view.sdk_view(str(view_root)))]
    source = Path(agent.__file__).resolve().parent.parent
    only_agent = {p: source / p for p in sdk_view.AGENT_PACKAGES if (source / p).is_dir()}
    return [str(sdk_view.build_view(view_root, only_agent))]


def default_view_root() -> Path:
    """Where environments built outside a cache find the SDK view (``$AGENT_HOME``)."""
    from agent.config import agent_home

    return agent_home() / "sdk-view"


def site_packages(env_path: Path) -> Path:
    """The ``site-packages`` directory of a POSIX venv."""
    found = sorted(env_path.glob("lib/python*/site-packages"))
    if not found:
        raise EnvError(f"no site-packages in {env_path}")
    return found[0]


def write_agent_pth(env_path: Path, entries: Sequence[str]) -> bool:
    """Write (or refresh) the agent ``.pth`` of an environment; True when it changed."""
    pth = site_packages(env_path) / PTH_NAME
    text = "".join(f"{entry}\n" for entry in entries)
    try:
        if pth.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    pth.write_text(text)
    return True


# -- building ---------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env.update(NO_COLOR="1", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _stream(argv: list[str], log: Log) -> tuple[int, list[str]]:
    """Run ``argv``, handing each output line to ``log``; return (exit code, last lines)."""
    tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=_clean_env(),
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None
    with proc.stdout:
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            log(line)
    return proc.wait(), list(tail)


_TELLING = re.compile(
    r"no solution|unsatisfiable|not found|no matching distribution|could not find|error",
    re.IGNORECASE,
)
_DECORATION = re.compile(r"^[\s×╰─▶│|:]+")
_LABEL = re.compile(r"^(cause|error|hint):\s*", re.IGNORECASE)


def _summary(lines: list[str], fallback: str) -> str:
    """The one line of uv/pip output that says why an install failed."""
    pairs = [(raw, _LABEL.sub("", _DECORATION.sub("", raw)).strip()) for raw in lines]
    telling = [clean for raw, clean in pairs if clean and _TELLING.search(raw)]
    picked = [clean for clean in telling if "because" in clean.lower()] or telling
    rest = [clean for _, clean in pairs if clean]
    return (picked[0] if picked else rest[-1] if rest else fallback)[:300]


def _install_args(find_links: str | None, index_url: str | None, no_index: bool) -> list[str]:
    args = ["--no-index"] if no_index else []
    if find_links:
        args += ["--find-links", str(find_links)]
    if index_url:
        args += ["--index-url", index_url]
    return args


def build_env(
    path: str | os.PathLike[str],
    requirements: Sequence[str],
    python: str = sys.executable,
    package_manager: str = "uv",
    log: Log = print,
    find_links: str | None = None,
    index_url: str | None = None,
    no_index: bool = False,
    view_root: str | os.PathLike[str] | None = None,
) -> Path:
    """Create a venv at ``path`` with ``requirements`` and the agent ``.pth``.

    Returns the venv's python. Output of uv/pip streams to ``log`` line by line. The SDK
    view lives under ``view_root`` (default ``$AGENT_HOME/sdk-view``).

    Raises:
        EnvError: the venv could not be made or the requirements not installed.
    """
    path = Path(path)
    shutil.rmtree(path, ignore_errors=True)
    uv = find_uv() if package_manager == "uv" else None
    if package_manager == "uv" and uv is None:
        log("uv not found: building the environment with venv + pip")
    try:
        _create_and_install(
            path,
            list(requirements),
            python,
            uv,
            log,
            _install_args(find_links, index_url, no_index),
        )
        view_root = view_root if view_root is not None else default_view_root()
        write_agent_pth(path, agent_path_entries(python_version(python), view_root))
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path / "bin" / "python"


def _create_and_install(
    path: Path,
    requirements: list[str],
    python: str,
    uv: list[str] | None,
    log: Log,
    extra: list[str],
) -> None:
    env_python = str(path / "bin" / "python")
    if uv is not None:
        create = [*uv, "venv", "--python", python, str(path)]
        install = [*uv, "pip", "install", "--python", env_python, *extra, *requirements]
    else:
        create = [python, "-m", "venv", *([] if requirements else ["--without-pip"]), str(path)]
        install = [env_python, "-m", "pip", "install", *extra, *requirements]
    log(f"creating environment {path} ({'uv' if uv else 'venv + pip'})")
    code, tail = _stream(create, log)
    if code != 0:
        raise EnvError(f"cannot create a venv for {python}: {_summary(tail, f'exit code {code}')}")
    if not requirements:
        return
    log(f"installing {len(requirements)} requirement(s): {' '.join(requirements)}")
    code, tail = _stream(install, log)
    if code != 0:
        raise EnvError(f"cannot install requirements: {_summary(tail, f'exit code {code}')}")


# -- the cache --------------------------------------------------------------


class EnvCache:
    """Environments under ``root``, one per requirement set, LRU past ``max_envs``.

    Args:
        root: directory of the environments (``$AGENT_HOME/venvs``).
        max_envs: how many to keep; the least recently used beyond it go.
        package_manager: ``"uv"`` (falls back to pip when uv is missing) or ``"pip"``.
        python: the interpreter the environments are made from.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        max_envs: int = 20,
        package_manager: str = "uv",
        python: str = sys.executable,
    ):
        if package_manager not in PACKAGE_MANAGERS:
            raise ValueError(
                f"package_manager must be one of {PACKAGE_MANAGERS}, not {package_manager!r}"
            )
        self.root = Path(root)
        self.max_envs = max_envs
        self.package_manager = package_manager
        self.python = python
        #: The agent SDK view of these environments (hidden from :meth:`entries`).
        self.view_root = self.root / ".sdk-view"
        self._effective_manager: str | None = None

    @property
    def effective_package_manager(self) -> str:
        """``uv`` when asked for and installed, else ``pip``."""
        if self._effective_manager is None:
            wanted_uv = self.package_manager == "uv" and find_uv() is not None
            self._effective_manager = "uv" if wanted_uv else "pip"
        return self._effective_manager

    def key(self, requirements: Sequence[str]) -> str:
        """sha256 of (python version, sorted normalised requirements, package manager)."""
        reqs = sorted({normalize_requirement(r) for r in requirements if r.strip()})
        blob = json.dumps([python_version(self.python), reqs, self.effective_package_manager])
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(
        self,
        requirements: Sequence[str],
        log: Log = print,
        find_links: str | None = None,
        index_url: str | None = None,
        no_index: bool = False,
    ) -> Env:
        """A ready environment with ``requirements``, held until ``Env.release()``.

        Warm reuse takes no subprocess; a build runs under the key's exclusive lock
        (another process wanting the same key waits for it and then reuses it).

        Raises:
            EnvError: the requirements cannot be installed.
        """
        key = self.key(requirements)
        path = self.root / key
        self.root.mkdir(parents=True, exist_ok=True)
        built = False
        for _ in range(3):  # an evictor can win the race between build and use
            held = FileLock(self._lock_path(key))
            held.acquire(shared=True)
            if (path / MARKER).exists():
                return self._hand_out(path, key, held, reused=not built)
            held.release()
            with file_lock(self._lock_path(key)):
                if not (path / MARKER).exists():
                    self._build(path, key, list(requirements), log, find_links, index_url, no_index)
                    built = True
        raise EnvError(f"environment {key[:12]} was evicted while being set up; retry")

    def _hand_out(self, path: Path, key: str, held: FileLock, reused: bool) -> Env:
        os.utime(path / MARKER)  # last-used stamp for LRU
        write_agent_pth(path, agent_path_entries(python_version(self.python), self.view_root))
        env = Env(path=path, python=path / "bin" / "python", key=key, reused=reused, _lock=held)
        if not reused:
            self.evict(keep={key})
        return env

    def _build(
        self,
        path: Path,
        key: str,
        requirements: list[str],
        log: Log,
        find_links: str | None,
        index_url: str | None,
        no_index: bool,
    ) -> None:
        build_env(
            path,
            requirements,
            python=self.python,
            package_manager=self.effective_package_manager,
            log=log,
            find_links=find_links,
            index_url=index_url,
            no_index=no_index,
            view_root=self.view_root,
        )
        record = {
            "key": key,
            "requirements": requirements,
            "python": python_version(self.python),
            "package_manager": self.effective_package_manager,
            "created": time.time(),
        }
        (path / MARKER).write_text(json.dumps(record, indent=1))

    def _lock_path(self, key: str) -> Path:
        return self.root / f"{key}.lock"

    def entries(self) -> list[Path]:
        """Ready environments, least recently used first."""
        if not self.root.exists():
            return []
        ready = [
            p for p in self.root.iterdir() if not p.name.startswith(".") and (p / MARKER).exists()
        ]
        return sorted(ready, key=lambda p: (p / MARKER).stat().st_mtime)

    def evict(self, keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Remove least recently used environments past ``max_envs``; skip those in use."""
        envs = self.entries()
        excess = len(envs) - self.max_envs
        removed: list[str] = []
        for env_path in envs:
            if excess <= 0:
                break
            if env_path.name in keep or not self._remove(env_path):
                continue
            removed.append(env_path.name)
            excess -= 1
        return removed

    def _remove(self, env_path: Path) -> bool:
        lock = FileLock(self._lock_path(env_path.name))
        if not lock.acquire(blocking=False):
            return False  # a task is using it (shared lock) or it is being built
        try:
            if not (env_path / MARKER).exists():
                return False
            trash = self.root / f".trash-{env_path.name}-{os.getpid()}"
            env_path.rename(trash)  # readers see it gone at once; delete at leisure
        finally:
            lock.release()
        shutil.rmtree(trash, ignore_errors=True)
        return True
