"""Code of steps and pipelines: a function's own source, a generated step script, and
where a pipeline file comes from (git repository + commit + diff, or inline code).

A function step's script is made by :mod:`agent.pipeline.bundle`: the component's
source, the user's decorators around it, the helpers and imports these name, and a small
``__main__`` that hands the function to :func:`agent.pipeline.step_runtime.run_step`.
"""

from __future__ import annotations

import ast
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from agent.core.models import Script
from agent.core.secrets import strip_url_credentials
from agent.pipeline.bundle import function_source, step_script  # noqa: F401 - re-exported
from agent.pipeline.errors import PipelineDefinitionError


def split_return_values(return_values: Sequence[str] | str | None) -> list[str]:
    """Names of the return values; ClearML's ``['a, b']`` (one string) means two."""
    if return_values is None:
        return ["return_object"]
    if isinstance(return_values, str):
        return_values = [return_values]
    names: list[str] = []
    for item in return_values:
        names += [part.strip() for part in str(item).split(",") if part.strip()]
    for name in names:
        if not name.isidentifier() and ("/" in name or name in (".", "..")):
            raise PipelineDefinitionError(f"bad return value name {name!r}: use a plain name")
    return names


# -- git ------------------------------------------------------------------------------------
def describe_local_repo(path: str | os.PathLike[str]) -> dict[str, str] | None:
    """``describe_repo`` of a local checkout, or None when ``path`` is in no git repository."""
    from agent.execution.repo import RepoError, describe_repo

    try:
        return describe_repo(path)
    except (RepoError, OSError, subprocess.SubprocessError):
        return None


def controller_code(code: str) -> str:
    """``code`` without the functions that run as steps, as source: what a pipeline's
    controller runs, hence needs installed. Left out are functions decorated as
    components (``@PipelineDecorator.component``) and those handed to
    ``add_function_step``: their imports are their steps' business."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return ""
    steps = _function_step_names(tree)

    def is_step(node: ast.AST) -> bool:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return False
        return node.name in steps or any(_names_component(d) for d in node.decorator_list)

    tree.body = [node for node in tree.body if not is_step(node)]
    return ast.unparse(tree)


def _names_component(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name == "component"


def _function_step_names(tree: ast.AST) -> set[str]:
    """Names of the functions passed to ``add_function_step`` (``function=`` or second)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr != "add_function_step":
            continue
        given = [kw.value for kw in node.keywords if kw.arg == "function"] + node.args[1:2]
        names |= {value.id for value in given if isinstance(value, ast.Name)}
    return names


def pipeline_script(path: str | os.PathLike[str], warn: bool = False) -> Script:
    """Where a pipeline file comes from, for its controller task and its steps (see
    :func:`agent.sdk.script_info.describe_script`), with the controller's requirements:
    the imports of the file outside its step functions (see :func:`controller_code`)
    and those of the local modules it imports.

    ``warn``: tell the user (on stderr) what agents elsewhere will miss (an unpushed
    commit); for pipelines about to run on agents."""
    from agent.execution.requirements import detect_requirements
    from agent.sdk.definition import warn as note
    from agent.sdk.script_info import locate_script

    path = Path(path).resolve()
    script, home = locate_script(path, note=note if warn else None)
    search = list(dict.fromkeys([path.parent, home]))
    text = path.read_text(encoding="utf-8", errors="replace")
    script.requirements = detect_requirements(controller_code(text), search)
    return script


def repo_script(
    repo: str, branch: str | None = None, commit: str | None = None
) -> tuple[Script, str | None]:
    """A component's ``repo``: (script fields, local dir to run in, if any).

    A url is kept with ``branch``/``commit``; a local path becomes its remote (or its
    path), current branch, commit and diff, and is the step's working dir locally.

    Raises:
        PipelineDefinitionError: a local path that is no git repository.
    """
    local = Path(repo).expanduser()
    if "://" not in repo and not repo.startswith("git@") and local.exists():
        info = describe_local_repo(local)
        if info is None:
            raise PipelineDefinitionError(f"repo {repo!r} is not a git repository")
        from agent.sdk.script_info import git_root

        root = git_root(local.resolve()) or local.resolve()
        script = Script(
            repository=info["repository"],
            branch=info["branch"],
            commit=info["commit"],
            diff=info["diff"],
            working_dir=".",
        )
        return script, str(root.resolve())
    url = strip_url_credentials(repo)
    return Script(repository=url, branch=branch or "", commit=commit or "", working_dir="."), None
