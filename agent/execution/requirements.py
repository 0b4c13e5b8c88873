"""What a task needs installed: imports detected in its code, or a requirements file."""

from __future__ import annotations

import ast
import functools
import os
import sys
from pathlib import Path

#: Import packages that never become requirements: the agent itself travels with
#: every environment (see ``env.py``), and ``__future__`` is no module.
EXCLUDED_MODULES = frozenset({"agent", "services_mode", "__future__"})


def imported_modules(source: str) -> set[str]:
    """Top-level names of every absolute import in ``source`` (also inside functions)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def detect_requirements(source: str) -> list[str]:
    """Pinned requirements (``name==version``) for the third-party imports of ``source``.

    Imports are mapped to the distributions installed here that provide them;
    stdlib modules, the agent's own packages and imports nothing installed
    provides (local modules, typos) are left out.
    """
    providers = _providers()
    pinned: set[str] = set()
    for module in imported_modules(source):
        if module in EXCLUDED_MODULES or module in sys.stdlib_module_names:
            continue
        for dist in providers.get(module, ()):
            try:
                pinned.add(f"{dist}=={_metadata().version(dist)}")
            except _metadata().PackageNotFoundError:
                continue
    return sorted(pinned, key=str.lower)


@functools.lru_cache(maxsize=1)
def _providers() -> dict[str, list[str]]:
    """Import name -> distributions, read once per process (scanning them takes ~0.25 s)."""
    return dict(_metadata().packages_distributions())


def read_requirements_file(path: str | os.PathLike[str]) -> list[str]:
    """Requirement lines of a pip requirements file, following ``-r`` includes.

    Comments, blank lines and pip options (``--index-url`` ...) are dropped;
    ``\\`` line continuations are joined.
    """
    path = Path(path)
    text = path.read_text().replace("\\\n", "")
    found: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        for flag in ("-r ", "--requirement ", "--requirement="):
            if line.startswith(flag):
                found += read_requirements_file(path.parent / line[len(flag) :].strip())
                break
        else:
            if not line.startswith("-"):
                found.append(line)
    return found


def _metadata():
    import importlib.metadata  # here: a pipeline that never pins requirements skips it

    return importlib.metadata
