"""A bare compute node: a venv holding pipeline-agent (and what it depends on) and nothing
else, as on a fresh machine where ``pip install pipeline-agent`` is all that was done.

End-to-end tests run their daemons from it, while the launching side (the test process,
or scripts it starts) has the user's libraries (pandas, scikit-learn ...). A step that
works here does so because its requirements travelled with it, not because the test
machine happens to have them.

Built once per test session (about 5 s with a warm uv cache), from a copy of this
checkout's files (tracked and untracked, not ignored), installed like a release: no
editable install, so no path into the checkout leaks into the node.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.services import REPO_ROOT

#: Extras of the distribution a node gets: the docker backend's SDK.
NODE_EXTRAS = "docker"


def _suite_dir() -> Path:
    return Path(os.environ["HOME"]) / "bare-node"  # HOME is the suite's own (conftest)


def _uv() -> list[str]:
    from agent.execution.env import find_uv

    uv = find_uv()
    if uv is None:
        raise RuntimeError("uv is not installed (it is a dependency of pipeline-agent)")
    return uv


def _source_copy(target: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = REPO_ROOT / name
        if not source.is_file() or name.startswith(("tests/", "bench/", "examples/")):
            continue
        dest = target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
    return target


@functools.cache
def bare_python() -> Path:
    """The interpreter of this session's bare node (built on first use)."""
    root = _suite_dir()
    python = root / "venv" / "bin" / "python"
    if python.exists():
        return python
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    source = _source_copy(root / "source")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    uv = _uv()
    for argv in (
        [*uv, "venv", "--quiet", "--python", sys.executable, str(root / "venv")],
        [*uv, "pip", "install", "--quiet", "--python", str(python), f"{source}[{NODE_EXTRAS}]"],
    ):
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"cannot build the bare node: {' '.join(argv)}\n{proc.stderr}")
    return python


def node_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment of a process on the bare node: ``home`` as AGENT_HOME, nothing of the
    test process's Python (no PYTHONPATH, no virtualenv), no server settings."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_") and k not in drop}
    env["AGENT_HOME"] = str(home)
    env["PATH"] = os.pathsep.join([str(bare_python().parent), env.get("PATH", "")])
    env.update(extra)
    return env
