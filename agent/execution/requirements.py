"""What a task needs installed, found on the machine that launches it.

Detection reads the code, never runs it: the third-party imports of a script (and of the
local modules it imports, followed recursively) or of a function's source are mapped to
the distributions installed here and pinned to their versions. An import that nothing
installed here provides is still recorded, by its distribution's name (``sklearn`` ->
``scikit-learn``, see :data:`IMPORT_TO_DISTRIBUTION`), unless it is optional (inside a
``try`` that catches ImportError) or is a module of the user's own code.

Explicit lists win over detection: a repository's ``requirements.txt`` or
``pyproject.toml``, ``Task.add_requirements``, ``packages=`` of a component.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

#: Import packages that never become requirements: the agent itself travels with
#: every environment (see ``sdk_view.py``), and ``__future__`` is no module.
EXCLUDED_MODULES = frozenset({"agent", "services_mode", "__future__"})

#: Import names whose distribution is called something else, for imports that are not
#: installed here (installed ones are looked up in their metadata).
IMPORT_TO_DISTRIBUTION = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "cv2": "opencv-python",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "attr": "attrs",
    "jwt": "pyjwt",
    "git": "gitpython",
    "zmq": "pyzmq",
    "serial": "pyserial",
    "usb": "pyusb",
    "magic": "python-magic",
    "docx": "python-docx",
    "pptx": "python-pptx",
    "Crypto": "pycryptodome",
    "OpenSSL": "pyopenssl",
    "MySQLdb": "mysqlclient",
    "psycopg2": "psycopg2-binary",
    "fitz": "pymupdf",
    "Bio": "biopython",
    "umap": "umap-learn",
    "faiss": "faiss-cpu",
    "grpc": "grpcio",
    "kafka": "kafka-python",
    "hydra": "hydra-core",
    "mpl_toolkits": "matplotlib",
    "pkg_resources": "setuptools",
    "slugify": "python-slugify",
    "multipart": "python-multipart",
    "websocket": "websocket-client",
    "IPython": "ipython",
    "Levenshtein": "levenshtein",
    "lightning_fabric": "lightning-fabric",
    "pytorch_lightning": "pytorch-lightning",
    "tensorflow_datasets": "tensorflow-datasets",
    "win32api": "pywin32",
    "wx": "wxpython",
    "gi": "pygobject",
}

#: Local code followed for imports: at most this many files, each at most this big.
MAX_LOCAL_FILES = 500
MAX_LOCAL_FILE_BYTES = 2 * 1024 * 1024


# -- reading imports ------------------------------------------------------------------------
def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    caught = {n.id if isinstance(n, ast.Name) else getattr(n, "attr", "") for n in names}
    return bool(caught & {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


def _imports(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(required, optional) top-level names of absolute imports; optional ones sit in the
    body of a ``try`` whose handlers catch ImportError."""
    required: set[str] = set()
    optional: set[str] = set()

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name.split(".")[0] for alias in node.names]
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            return [node.module.split(".")[0]]
        return []

    def visit(node: ast.AST, in_try: bool) -> None:
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for child in node.body:
                visit(child, True)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, in_try)
            return
        (optional if in_try else required).update(names(node))
        for child in ast.iter_child_nodes(node):
            visit(child, in_try)

    visit(tree, False)
    return required, optional - required


def _parse(source: str) -> ast.AST | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


def imported_modules(source: str) -> set[str]:
    """Top-level names of every absolute import in ``source`` (also inside functions)."""
    tree = _parse(source)
    if tree is None:
        return set()
    required, optional = _imports(tree)
    return required | optional


def _third_party(names: Iterable[str]) -> set[str]:
    return {n for n in names if n not in EXCLUDED_MODULES and n not in sys.stdlib_module_names}


# -- local code -----------------------------------------------------------------------------
def local_module_path(module: str, search_dirs: Sequence[Path]) -> Path | None:
    """The file or package directory of ``module`` in the user's own code, or None."""
    for directory in search_dirs:
        package = directory / module
        if (package / "__init__.py").is_file():
            return package
        single = directory / f"{module}.py"
        if single.is_file():
            return single
        if package.is_dir() and any(package.glob("*.py")):
            return package  # a namespace package of the user's code
    return None


def _python_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    found = []
    for file in sorted(path.rglob("*.py")):
        if any(part.startswith(".") or part == "__pycache__" for part in file.parts):
            continue
        found.append(file)
    return found


def code_imports(
    sources: Iterable[str], search_dirs: Sequence[Path] = ()
) -> tuple[set[str], set[str]]:
    """(required, optional) third-party modules of ``sources`` and of the local modules
    they import (found in ``search_dirs``), followed recursively."""
    required: set[str] = set()
    optional: set[str] = set()
    seen_paths: set[Path] = set()
    queue = [tree for tree in map(_parse, sources) if tree is not None]
    budget = MAX_LOCAL_FILES
    while queue:
        req, opt = _imports(queue.pop())
        for module in _third_party(req | opt):
            local = local_module_path(module, search_dirs) if search_dirs else None
            if local is None:
                (required if module in req else optional).add(module)
                continue
            for file in _python_files(local):
                if file in seen_paths or budget <= 0:
                    continue
                seen_paths.add(file)
                budget -= 1
                try:
                    if file.stat().st_size > MAX_LOCAL_FILE_BYTES:
                        continue
                    tree = _parse(file.read_text(encoding="utf-8", errors="replace"))
                except OSError:
                    continue
                if tree is not None:
                    queue.append(tree)
    return required, optional - required


# -- modules to distributions -----------------------------------------------------------------
def distribution_name(module: str) -> str:
    """The distribution that provides ``module`` when it is not installed here."""
    return IMPORT_TO_DISTRIBUTION.get(module, module)


def installed_module(module: str) -> bool:
    """Whether ``module`` can be imported here (found on ``sys.path``; not imported)."""
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def requirements_for_modules(
    required: Iterable[str],
    optional: Iterable[str] = (),
    search_dirs: Sequence[Path] = (),
    quick: bool = False,
) -> list[str]:
    """Requirement lines for third-party modules: ``name==version`` for what is installed
    here, the distribution's name for a required module that is not (optional ones that
    are not installed are left out, as are modules of the user's own code).

    ``quick``: look a module's distribution up by its own (or its usual) name first, and
    scan every installed distribution (a quarter of a second) only when that fails."""
    lines: dict[str, str] = {}
    providers: dict[str, list[str]] | None = None
    for module, needed in [*((m, True) for m in required), *((m, False) for m in optional)]:
        if module in EXCLUDED_MODULES or module in sys.stdlib_module_names:
            continue
        if search_dirs and local_module_path(module, search_dirs) is not None:
            continue
        dists = _quick_providers(module) if quick else []
        if not dists:
            providers = providers if providers is not None else _providers()
            dists = providers.get(module, [])
        if dists:
            for dist in dists:
                line = _pinned(dist)  # "" for the user's own code installed from a path
                if line:
                    lines.setdefault(requirement_name(line), line)
        elif needed and not installed_module(module):
            name = distribution_name(module)
            lines.setdefault(requirement_name(name), name)
    return sorted(lines.values(), key=str.lower)


def detect_requirements(source: str, search_dirs: Sequence[Path] = ()) -> list[str]:
    """Requirement lines for the third-party imports of ``source`` (see the module doc)."""
    required, optional = code_imports([source], search_dirs)
    return requirements_for_modules(required, optional, search_dirs)


def detect_script_requirements(script: Path, search_dirs: Sequence[Path] = ()) -> list[str]:
    """Requirements of a script file and the local modules it imports."""
    dirs = list(search_dirs) or [script.parent]
    try:
        source = script.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return detect_requirements(source, dirs)


def script_requirements(script: Path, home: Path) -> list[str]:
    """What a script needs, first found wins: the requirements file of its project's
    directory ``home`` (a repository's root; see :func:`repository_requirements`), else
    the imports of the script and of the local modules it imports."""
    listed = repository_requirements(home)
    if listed is not None:
        return listed[0]
    return detect_script_requirements(script, list(dict.fromkeys([script.parent, home])))


@functools.lru_cache(maxsize=256)
def _quick_providers(module: str) -> list[str]:
    """The installed distribution named like ``module`` (or as
    :data:`IMPORT_TO_DISTRIBUTION` says); [] when there is none of that name."""
    for name in dict.fromkeys((distribution_name(module), module)):
        try:
            return [str(_metadata().distribution(name).metadata["Name"] or name)]
        except _metadata().PackageNotFoundError:
            continue
    return []


@functools.lru_cache(maxsize=1)
def _providers() -> dict[str, list[str]]:
    """Import name -> distributions, read once per process (scanning them takes ~0.25 s)."""
    return dict(_metadata().packages_distributions())


@functools.lru_cache(maxsize=1024)
def _pinned(dist: str) -> str:
    """``dist==version``; "" for a distribution installed from a local path (editable
    or not), which no other machine can install by name: it is the user's own code."""
    try:
        found = _metadata().distribution(dist)
    except _metadata().PackageNotFoundError:
        return ""
    if _installed_from_path(found):
        return ""
    return f"{found.metadata['Name'] or dist}=={found.version}"


def _installed_from_path(dist: object) -> bool:
    direct = dist.read_text("direct_url.json") or ""  # type: ignore[attr-defined]
    return '"dir_info"' in direct or '"file://' in direct


def canonical_name(name: str) -> str:
    """PEP 503 form of a distribution name: lower case, runs of ``-_.`` as ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str:
    """The PEP 503 name of a requirement line (``Scikit_Learn>=1`` -> ``scikit-learn``)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return canonical_name(match.group(1)) if match else line


def merge_requirements(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    """``base`` with each line of ``extra`` added, replacing a line of the same name."""
    merged = {requirement_name(line): line for line in base}
    for line in extra:
        merged[requirement_name(line)] = line
    return list(merged.values())


# -- explicit lists ---------------------------------------------------------------------------
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


def read_pyproject_requirements(path: str | os.PathLike[str]) -> list[str] | None:
    """The dependencies a ``pyproject.toml`` declares (PEP 621 ``[project]``, else
    Poetry's), or None when it declares none."""
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    project = data.get("project") or {}
    if isinstance(project.get("dependencies"), list) and project["dependencies"]:
        return [str(line).strip() for line in project["dependencies"] if str(line).strip()]
    poetry = ((data.get("tool") or {}).get("poetry") or {}).get("dependencies") or {}
    lines = [_poetry_line(name, spec) for name, spec in poetry.items() if name != "python"]
    return [line for line in lines if line] or None


def _poetry_line(name: str, spec: object) -> str:
    extras = ""
    if isinstance(spec, dict):
        if "path" in spec or "git" in spec or "url" in spec:
            return ""  # local or VCS sources travel with the code, not as a requirement
        extras = "[{}]".format(",".join(spec["extras"])) if spec.get("extras") else ""
        spec = spec.get("version", "*")
    return f"{name}{extras}{_poetry_version(str(spec).strip())}"


def _poetry_version(spec: str) -> str:
    """Poetry's ``^1.2``, ``~1.2``, ``1.2``, ``*`` as PEP 440 specifiers."""
    if spec in ("", "*"):
        return ""
    if spec[0] in "<>=!," or spec.startswith("~=") or "," in spec:
        return spec.replace(" ", "")
    bound, version = (spec[0], spec[1:]) if spec[0] in "^~" else ("", spec)
    parts = [int(p) if p.isdigit() else 0 for p in version.split(".")]
    if bound == "^":
        first = next((i for i, p in enumerate(parts) if p), len(parts) - 1)
        upper = [*parts[:first], parts[first] + 1]
        return f">={version},<{'.'.join(map(str, upper))}"
    if bound == "~":
        upper = [parts[0] + 1] if len(parts) == 1 else [parts[0], parts[1] + 1]
        return f">={version},<{'.'.join(map(str, upper))}"
    return f"=={version}"


def repository_requirements(root: Path) -> tuple[list[str], str] | None:
    """(lines, file name) of the requirements a repository lists at its root, or None."""
    listed = root / "requirements.txt"
    if listed.is_file():
        return read_requirements_file(listed), listed.name
    declared = read_pyproject_requirements(root / "pyproject.toml")
    if declared:
        return declared, "pyproject.toml"
    return None


def environment_freeze() -> list[str]:
    """Every distribution installed here, pinned (``Task.force_requirements_env_freeze``).

    Left out: the agent itself, packaging tools a venv brings (pip, setuptools, wheel), and
    editable or local-path installs, which no other machine can install by name.
    """
    skip = {"pipeline-agent", "pip", "setuptools", "wheel", "distribute"}
    lines: dict[str, str] = {}
    for dist in _metadata().distributions():
        name = dist.metadata["Name"]
        key = requirement_name(name) if name else ""
        if not key or key in skip or key in lines or _installed_from_path(dist):
            continue
        lines[key] = f"{name}=={dist.version}"
    return sorted(lines.values(), key=str.lower)


def _metadata():
    import importlib.metadata  # here: a pipeline that never pins requirements skips it

    return importlib.metadata
