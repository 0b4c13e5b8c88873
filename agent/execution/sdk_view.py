"""The agent SDK as a task environment sees it: the ``agent`` package and the libraries it
needs at run time, and nothing else of the daemon's site-packages.

A task's venv holds what the task declared. To ``import agent`` (at the daemon's version)
it also needs the SDK's own dependencies (requests, SQLAlchemy, boto3 ...), which the
daemon already has. Rather than installing them into every venv, or appending the daemon's
whole site-packages (which made an undeclared ``import sklearn`` work on one node and fail on
the next), the daemon builds a *view*: a directory of symlinks to exactly those
distributions (their packages, modules and ``.dist-info``), resolved from the installed
metadata. Every venv's ``.pth`` appends the view to the END of ``sys.path``, so what a task
installs itself wins.

Views live in ``$AGENT_HOME/sdk-view/<digest>``, one per set of targets, built once
(atomically: a temp dir renamed into place) and shared by every environment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import agent
from agent.execution.requirements import canonical_name as canonical

logger = logging.getLogger(__name__)

#: Distributions the SDK imports in a task process (the store, the HTTP client, files on
#: S3, resource stats, retries). The daemon's and server's own dependencies (FastAPI,
#: uvicorn, click, rich, uv, Jinja2 for the web UI, and greenlet for the server's store
#: calls on its event loop) are not part of a task's world.
SDK_REQUIREMENTS = ("sqlalchemy", "psycopg[binary]", "requests", "tenacity", "psutil", "boto3")
#: Runtime dependencies of the distribution that tasks do not see (see SDK_REQUIREMENTS).
DAEMON_ONLY_REQUIREMENTS = frozenset(
    {"fastapi", "uvicorn", "click", "rich", "uv", "jinja2", "greenlet"}
)
#: The agent's own import packages, always in the view.
AGENT_PACKAGES = ("agent", "services_mode")
DISTRIBUTION = "pipeline-agent"

_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


@dataclass(frozen=True)
class Requirement:
    name: str
    extras: frozenset[str]


def parse_requirement(line: str) -> tuple[Requirement, frozenset[str]] | None:
    """(requirement, the extras its marker asks for) of a ``Requires-Dist`` line."""
    match = _REQ.match(line)
    if not match:
        return None
    extras = frozenset(canonical(e) for e in (match.group(2) or "").split(",") if e.strip())
    marker = line.split(";", 1)[1] if ";" in line else ""
    wanted_by = frozenset(canonical(e) for e in _EXTRA.findall(marker))
    return Requirement(canonical(match.group(1)), extras), wanted_by


def closure(requirements: Iterable[str]) -> list[object]:
    """The installed distributions that ``requirements`` need, recursively.

    Environment markers are not evaluated: a dependency counts when it is installed here
    (which is what pip or uv decided for this interpreter). A dependency behind an extra
    counts only when that extra was asked for. Missing ones are skipped.
    """
    import importlib.metadata as metadata

    todo = [parsed[0] for line in requirements if (parsed := parse_requirement(line))]
    seen: dict[str, object] = {}
    asked: dict[str, set[str]] = {}
    while todo:
        req = todo.pop()
        extras = asked.setdefault(req.name, set())
        if req.name in seen and req.extras <= extras:
            continue
        extras |= req.extras
        try:
            dist = seen.get(req.name) or metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        seen[req.name] = dist
        for line in dist.requires or ():
            parsed = parse_requirement(line)
            if parsed is None:
                continue
            dep, wanted_by = parsed
            if not wanted_by or wanted_by & extras:
                todo.append(dep)
    return list(seen.values())


def _dist_path(dist: object) -> Path | None:
    """The ``.dist-info`` directory of a distribution found on a path."""
    path = getattr(dist, "_path", None)
    return Path(path) if path is not None else None


def _top_level_entries(dist: object) -> dict[str, Path]:
    """{name in the view: what it links to} for one distribution."""
    info = _dist_path(dist)
    if info is None:
        return {}
    site = info.parent
    entries: dict[str, Path] = {info.name: info}
    files = getattr(dist, "files", None) or []
    children: dict[str, set[str]] = {}
    for file in files:
        parts = Path(str(file)).parts
        if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith(".pth"):
            continue
        if len(parts) > 1:
            children.setdefault(parts[0], set()).add(parts[1])
        else:
            entries[parts[0]] = site / parts[0]
    for top, names in children.items():
        target = site / top
        if top.endswith((".dist-info", ".egg-info")):
            entries.setdefault(top, target)
        elif (target / "__init__.py").exists() or not target.is_dir():
            entries[top] = target
        else:  # a namespace package other distributions share: only this one's parts
            for name in names - {"__pycache__"}:
                entries[f"{top}/{name}"] = target / name
    return {name: path for name, path in entries.items() if path.exists()}


def view_entries() -> dict[str, Path]:
    """Everything the view holds: the agent's packages, its distribution's metadata, and
    the SDK's dependencies (read once per process: what is installed does not change
    under a running daemon)."""
    return dict(_view_entries())


@lru_cache(maxsize=1)
def _view_entries() -> dict[str, Path]:
    entries: dict[str, Path] = {}
    for dist in closure(SDK_REQUIREMENTS):
        entries.update(_top_level_entries(dist))
    source_root = Path(agent.__file__).resolve().parent.parent
    for package in AGENT_PACKAGES:
        if (source_root / package / "__init__.py").exists():
            entries[package] = source_root / package
    info = _agent_dist_info()
    if info is not None:
        entries[info.name] = info
    return entries


def _agent_dist_info() -> Path | None:
    import importlib.metadata as metadata

    try:
        return _dist_path(metadata.distribution(DISTRIBUTION))
    except metadata.PackageNotFoundError:
        return None  # run from a checkout: ``agent`` alone, no metadata


def build_view(root: str | os.PathLike[str], entries: dict[str, Path] | None = None) -> Path:
    """The view directory for ``entries`` under ``root`` (made when missing); its path."""
    entries = view_entries() if entries is None else entries
    listing = sorted((name, str(target)) for name, target in entries.items())
    digest = hashlib.sha256(json.dumps([sys.version, listing]).encode()).hexdigest()[:16]
    root = Path(root)
    view = root / digest
    if view.is_dir():
        return view
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=root))
    try:
        for name, target in listing:
            link = staging / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target, target_is_directory=Path(target).is_dir())
        (staging / "VIEW.json").write_text(json.dumps({"python": sys.version, "entries": listing}))
        try:
            staging.rename(view)
        except OSError:  # another process made the same view first
            if not view.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return view


@lru_cache(maxsize=4)
def sdk_view(root: str) -> Path:
    """The view under ``root`` for this process's agent and libraries (built once)."""
    view = build_view(root)
    logger.debug("agent SDK view for task environments: %s", view)
    return view
