"""A task from a local script (``agent run``): where its code is, what it needs, how to call it.

Where the code comes from is :func:`agent.sdk.script_info.describe_script`'s business
(repository + commit + diff in git, inline code outside it): the working dir and entry
point are chosen so the script runs as it would here, from the current directory when the
script lies under it (``python sub/train.py`` from the root), else from its own directory.

Requirements, first found wins: the ``packages`` given, the repository's
``requirements.txt`` or ``pyproject.toml`` (next to the script when outside git), the
imports of the script and of the local modules it imports, pinned to the versions
installed here. Script arguments go to ``task.runtime["argv"]``, which every execution
backend appends to the command line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.core.errors import InvalidInput
from agent.core.models import Task, TaskTypes
from agent.execution.requirements import script_requirements
from agent.sdk.script_info import locate_script

Log = Callable[[str], None]


def task_from_script(
    script_path: str | os.PathLike[str],
    args: Sequence[str] = (),
    project: str = "",
    name: str = "",
    packages: Sequence[str] | None = None,
    docker: str | None = None,
    docker_args: str | None = None,
    task_type: str = TaskTypes.training.value,
    cwd: str | os.PathLike[str] | None = None,
    log: Log | None = None,
) -> Task:
    """A new (unsaved, ``created``) task that runs ``script_path`` with ``args``.

    Args:
        script_path: the Python script to run.
        args: its command-line arguments (``task.runtime["argv"]``).
        project: project of the task.
        name: task name (default: the script's file name).
        packages: requirements to install; overrides requirements files and imports.
        docker: image to run it in (``task.container["image"]``).
        docker_args: container arguments (``task.container["arguments"]``).
        task_type: one of :class:`~agent.core.models.TaskTypes`.
        cwd: the directory the user runs from (default: the current one).
        log: receives notes for the user (untracked script, unpushed commit, ...).

    Raises:
        InvalidInput: no such script, or an unknown task type.
    """
    note = log or (lambda _line: None)
    script = Path(script_path).expanduser().resolve()
    if not script.is_file():
        raise InvalidInput(f"script {os.fspath(script_path)!r} not found (or not a file)")
    try:
        kind = TaskTypes(task_type).value
    except ValueError:
        choices = ", ".join(t.value for t in TaskTypes)
        raise InvalidInput(f"unknown task type {task_type!r}; one of: {choices}") from None
    here = Path(cwd).resolve() if cwd is not None else Path.cwd().resolve()
    source, home = locate_script(script, cwd=here, note=note)
    if not source.repository:
        note(
            f"{script.parent} is not in a git repository: only {script.name} travels "
            "(as inline code); other local files will not be there"
        )
    source.requirements = (
        [p.strip() for p in packages if p.strip()]
        if packages
        else script_requirements(script, home)
    )
    container = {"image": docker or "", "arguments": docker_args or "", "setup_script": ""}
    return Task(
        name=name or script.name,
        project=project,
        type=kind,
        script=source,
        container=container,
        runtime={"argv": [str(arg) for arg in args]} if args else {},
    )
