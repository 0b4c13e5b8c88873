"""How a new task is described: its type, script, requirements, container, and which
old task ``Task.init(reuse_last_task_id=...)`` may run again."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.core.errors import NotFound
from agent.core.models import Script, TaskStatus, TaskTypes
from agent.core.models import Task as TaskRecord
from agent.core.secrets import strip_url_credentials

if TYPE_CHECKING:
    from agent.store.base import Backend

#: Runtime property marking tasks made by ``Task.init`` (the ones it may reuse).
INIT_MARK = "_created_by"
INIT_VALUE = "Task.init"
#: A requirements-file comment: "#" at the start or after blanks (not "...#egg=").
_COMMENT = re.compile(r"(?:^|\s)#")


_BUSY_OR_GONE = frozenset({TaskStatus.queued, TaskStatus.in_progress, TaskStatus.archived})


class TaskNotFound(NotFound, ValueError):
    """No task matches (a ValueError too, for code written against ClearML)."""


def task_type_value(value: TaskTypes | str) -> str:
    try:
        return TaskTypes(str(value)).value
    except ValueError:
        options = ", ".join(t.value for t in TaskTypes)
        raise ValueError(f"unknown task type {value!r}; use one of: {options}") from None


def base_docker(
    docker_cmd: str | None = None,
    docker_image: str | None = None,
    docker_arguments: str | Sequence[str] | None = None,
    docker_setup_bash_script: str | Sequence[str] | None = None,
) -> dict[str, str]:
    """A task's ``container`` from ClearML's ``set_base_docker`` arguments.

    ``docker_cmd`` ("image --args ...") wins over ``docker_image``; what follows the
    image in it is the arguments unless ``docker_arguments`` is given. Lists of arguments are
    joined with spaces and lists of script lines with newlines, as ClearML does.
    """
    # The rest of docker_cmd is kept as written, so that quoted values survive.
    image, *cmd_args = (docker_cmd or docker_image or "").split(maxsplit=1) or [""]
    if not docker_arguments:
        docker_arguments = cmd_args[0] if cmd_args else ""
    arguments = (
        docker_arguments if isinstance(docker_arguments, str) else " ".join(docker_arguments)
    )
    script = docker_setup_bash_script or ""
    setup_script = script if isinstance(script, str) else "\n".join(script)
    return {"image": image, "arguments": arguments, "setup_script": setup_script}


def docker_command(container: dict[str, Any]) -> str | None:
    """``"image arguments"`` of a task's container (ClearML's ``get_base_docker``), or None."""
    image = str(container.get("image") or "")
    arguments = container.get("arguments") or ""
    if not isinstance(arguments, str):
        arguments = " ".join(arguments)
    return " ".join(part for part in (image, arguments) if part) or None


def repo_name(script: Script) -> str:
    url = script.repository.rstrip("/")
    return url.rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git") if url else ""


def reusable_task(
    backend: Backend, reuse: bool | str, project: str, name: str, keep_outputs: bool = False
) -> TaskRecord | None:
    """The task that ``reuse_last_task_id``/``continue_last_task`` points at, if any.

    A task id is taken as it is. True picks the newest task ``Task.init`` made with
    this project and name that is not queued, running or archived, and, unless
    ``keep_outputs`` (continuing it), that recorded no artifacts and no scalars.
    """
    if isinstance(reuse, str) and reuse:
        try:
            return backend.get_task(reuse)
        except NotFound as exc:
            raise TaskNotFound(f"no task {reuse!r} to reuse or continue") from exc
    if reuse is not True:
        return None
    previous = backend.query_tasks(project=project, name=name, limit=1)
    if not previous:
        return None
    last = previous[0]
    if last.runtime.get(INIT_MARK) != INIT_VALUE or last.status in _BUSY_OR_GONE:
        return None
    if not keep_outputs and (backend.get_artifacts(last.id) or backend.get_scalars(last.id)):
        return None
    return last


def restart(backend: Backend, record: TaskRecord) -> TaskRecord:
    """Move a new or reused task to ``in_progress`` (through ``created`` when it ran before)."""
    if record.status not in (TaskStatus.created, TaskStatus.in_progress):
        record = backend.set_status(record.id, TaskStatus.created.value)
    if record.status != TaskStatus.in_progress:
        record = backend.set_status(record.id, TaskStatus.in_progress.value)
    return record


def script_for_create(
    script: str | os.PathLike[str] | None,
    repo: str | None,
    branch: str | None,
    commit: str | None,
    working_directory: str | None,
    detect_repository: bool,
) -> Script:
    if repo or not script:
        result = Script(repository=strip_url_credentials(repo or ""), entry_point=str(script or ""))
    else:
        path = Path(script)
        if not path.is_file():
            raise FileNotFoundError(f"Task.create: no script {str(path)!r} (or give repo=...)")
        from agent.sdk.script_info import describe_script

        result = describe_script(path, with_git=detect_repository)
    if branch:
        result.branch = branch
    if commit:
        result.commit = commit
    if working_directory:
        result.working_dir = working_directory
    return result


def requirement_lines(*sources: Any) -> list[str]:
    lines: list[str] = []
    for source in sources:
        if source is None or isinstance(source, bool):
            continue
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"no requirements file {str(path)!r}")
            source = path.read_text(encoding="utf-8").splitlines()
        for line in source:
            line = _COMMENT.split(str(line), 1)[0].strip()
            if line and line not in lines:
                lines.append(line)
    return lines


# -- what Task.init records of the running script ------------------------------------------
class RequirementsRequest:
    """What the user asked for before ``Task.init`` (ClearML's class-level calls)."""

    def __init__(self) -> None:
        self.packages: list[str] = []
        self.ignored: set[str] = set()
        self.freeze = False
        self.file: str | None = None

    def add(self, package_name: str, package_version: str | None = None) -> None:
        """Add ``package_name`` (a requirements file's lines, when it names a file)."""
        path = Path(str(package_name)).expanduser()
        if package_version is None and path.suffix == ".txt" and path.is_file():
            from agent.execution.requirements import read_requirements_file

            self.packages += read_requirements_file(path)
            return
        line = str(package_name).strip()
        if package_version:
            version = str(package_version).strip()
            line += version if version[0] in "<>=!~" else f"=={version}"
        self.packages.append(line)


#: Requests of this process, read by the next ``Task.init``.
requested = RequirementsRequest()


def warn(line: str) -> None:
    """A note for the user on stderr (an unpushed commit, an untracked script)."""
    import sys

    print(f"pipeline-agent: {line}", file=sys.stderr, flush=True)


def running_script() -> Script:
    """The :class:`Script` of the running program, with its requirements: what an agent
    needs to run it again (empty fields for a REPL or ``-c``)."""
    from agent.sdk.script_info import locate_script, main_script_path

    path = main_script_path()
    if path is None:
        return Script(entry_point="", working_dir=os.getcwd(), requirements=script_requirements())
    script, home = locate_script(path, note=warn)
    script.requirements = script_requirements(path, home)
    return script


def script_requirements(path: Path | None = None, home: Path | None = None) -> list[str]:
    """A script's requirements, first found wins: ``force_requirements_env_freeze``
    (its file, else every installed distribution), then
    :func:`agent.execution.requirements.script_requirements` (the requirements file of
    the project's directory ``home``, else the imports). ``Task.add_requirements`` lines
    go on top."""
    from agent.execution import requirements as reqs

    if requested.file:
        base = reqs.read_requirements_file(requested.file)
    elif requested.freeze:
        base = reqs.environment_freeze()
    elif path is not None:
        base = reqs.script_requirements(path, home or path.parent)
    else:
        base = []
    merged = reqs.merge_requirements(base, requested.packages)
    return [line for line in merged if reqs.requirement_name(line) not in requested.ignored]


def launch_argv() -> dict[str, list[str]]:
    """``{"argv": [...]}``: the arguments this script was started with, which an agent
    passes again (empty when there were none)."""
    import sys

    args = [str(arg) for arg in sys.argv[1:]]
    return {"argv": args} if args else {}
