"""Function steps: the code, requirements and repository of a function, built once.

Shared by ``PipelineDecorator.component`` and ``PipelineController.add_function_step``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.core.models import Script, TaskTypes
from agent.pipeline.source import repo_script, step_script
from agent.pipeline.steps import FunctionStep


def resolve_packages(
    packages: str | Sequence[str] | None, code: str, search_dirs: Sequence[Path] = ()
) -> list[str]:
    """A component's requirements: the list given, the lines of a requirements file,
    else the third-party imports found in its code (pinned to what is installed here;
    modules found in ``search_dirs`` are the user's own code, not requirements)."""
    if packages is not None and not isinstance(packages, str):
        return [str(p) for p in packages]
    if isinstance(packages, str):
        from agent.execution.requirements import read_requirements_file

        path = Path(packages).expanduser()
        if path.is_file():
            return read_requirements_file(path)
        return [line.strip() for line in packages.splitlines() if line.strip()]
    return detected_requirements(code, search_dirs)


def detected_requirements(code: str, search_dirs: Sequence[Path] = ()) -> list[str]:
    """``detect_requirements(code)``, skipped when the code imports nothing third-party."""
    try:
        from agent.execution.requirements import (
            EXCLUDED_MODULES,
            detect_requirements,
            imported_modules,
        )
    except ImportError:  # an execution layer without detection: nothing detected
        return []
    third_party = {
        m
        for m in imported_modules(code)
        if m not in EXCLUDED_MODULES and m not in sys.stdlib_module_names
    }
    return detect_requirements(code, search_dirs) if third_party else []


def function_dir(function: Callable[..., Any]) -> str | None:
    """The directory of the file that defines ``function``."""
    import inspect

    try:
        source = inspect.getsourcefile(inspect.unwrap(function))
    except TypeError:
        return None
    return str(Path(source).resolve().parent) if source else None


def build_function_step(
    name: str,
    function: Callable[..., Any],
    kwargs: dict[str, Any],
    return_values: list[str],
    task_type: Any = None,
    packages: str | Sequence[str] | None = None,
    repo: str | None = None,
    repo_branch: str | None = None,
    repo_commit: str | None = None,
    helper_functions: Sequence[Callable[..., Any]] | None = None,
    docker: str | None = None,
    docker_args: str | None = None,
    docker_bash_setup_script: str | None = None,
    code: str | None = None,
    resolved_packages: list[str] | None = None,
    **options: Any,
) -> FunctionStep:
    """A :class:`FunctionStep` for ``function`` (``code``/``resolved_packages`` when known)."""
    code = (
        code if code is not None else step_script(function, return_values, helper_functions or ())
    )
    if resolved_packages is not None:
        requirements = resolved_packages
    else:
        directory = function_dir(function)
        requirements = resolve_packages(packages, code, [Path(directory)] if directory else [])
    script, local_dir, explicit = Script(), options.pop("local_dir", None), False
    if repo:
        script, repo_dir = repo_script(repo, repo_branch, repo_commit)
        local_dir, explicit = repo_dir, True
    return FunctionStep(
        name=name,
        function=function,
        code=code,
        return_values=list(return_values),
        kwargs=kwargs,
        packages=list(requirements),
        task_type=str(task_type or TaskTypes.custom.value),
        docker=docker or "",
        docker_args=docker_args or "",
        docker_bash_setup_script=docker_bash_setup_script or "",
        script=script,
        explicit_repo=explicit,
        local_dir=local_dir or function_dir(function) or os.getcwd(),
        **options,
    )


def steps_script(pipeline_script: Script) -> Script:
    """What a function step records of its pipeline's code: the repository, commit,
    diff and working dir (so an agent's checkout can import the modules next to the
    pipeline file); nothing when the pipeline is not in git."""
    if not pipeline_script.repository:
        return Script(working_dir=".")
    return Script(
        repository=pipeline_script.repository,
        branch=pipeline_script.branch,
        commit=pipeline_script.commit,
        diff=pipeline_script.diff,
        working_dir=pipeline_script.working_dir,
    )
