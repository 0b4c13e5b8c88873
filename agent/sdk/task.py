"""Task: the SDK object user code and pipeline steps work with (ClearML's ``Task``).

``Task.init`` in a script creates a task for the run (or, run by an agent with
``AGENT_TASK_ID`` set, attaches to the agent's task), makes it current and closes
it at exit: ``completed``, or ``failed`` after an uncaught exception or a non-zero
``sys.exit``. Under an agent the status is the agent's business: the SDK then
only reads and reports. ``Task.create``/``clone``/``enqueue`` prepare tasks for
agents without running anything here.

The store is reached through :func:`agent.store.factory.get_backend` on first
use, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.core.errors import NotFound
from agent.core.models import Task as TaskRecord
from agent.core.models import TaskStatus, TaskTypes
from agent.sdk import argparse_binding, frameworks, session
from agent.sdk.artifacts import ArtifactsMixin
from agent.sdk.definition import (
    INIT_MARK,
    INIT_VALUE,
    TaskNotFound,
    base_docker,
    docker_command,
    launch_argv,
    repo_name,
    requested,
    requirement_lines,
    restart,
    reusable_task,
    running_script,
    script_for_create,
    task_type_value,
    warn,
)
from agent.sdk.lifecycle import LifecycleMixin
from agent.sdk.parameters import ParametersMixin, to_stored
from agent.store.serving import warn_if_unserved

if TYPE_CHECKING:
    from agent.sdk.capture import OutputCapture
    from agent.sdk.logger import Logger
    from agent.sdk.model import ModelList
    from agent.store.base import Backend

#: Environment variable an agent sets in every task process it starts.
TASK_ID_ENV = "AGENT_TASK_ID"

# A script may parse its arguments before Task.init: the parse is remembered from here on.
argparse_binding.install()


class Task(ParametersMixin, ArtifactsMixin, LifecycleMixin):
    """A task of the store, with ClearML's SDK methods.

    Get one with :meth:`init`, :meth:`current_task`, :meth:`get_task`,
    :meth:`create` or :meth:`clone`, not with the constructor.
    """

    TaskTypes = TaskTypes

    def __init__(self, record: TaskRecord, backend: Backend | None = None):
        self._record = record
        self._backend_obj = backend
        self._logger: Logger | None = None
        self._capture: OutputCapture | None = None
        self._owns_status = False  # True: this process ran it and closes it (Task.init)
        self._closed = False
        self._uploader = None
        self._pending = []

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.project!r}/{self.name!r} {self._record.status}>"

    # -- getting tasks -------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        project_name: str | None = None,
        task_name: str | None = None,
        task_type: TaskTypes | str = TaskTypes.training,
        tags: Sequence[str] | None = None,
        reuse_last_task_id: bool | str = False,
        continue_last_task: bool | str = False,
        output_uri: str | bool | None = None,
        capture_output: bool | None = None,
        auto_connect_arg_parser: bool = True,
        auto_connect_frameworks: Any = True,
        auto_resource_monitoring: bool = True,
        auto_connect_streams: bool = True,
    ) -> Task:
        """Start (or attach to) the task of this run and make it current.

        Args:
            project_name: project of a new task (default: the git repository's name,
                else "default").
            task_name: name of a new task (default: the script's file name).
            task_type: one of :class:`TaskTypes`.
            tags: tags of a new task.
            reuse_last_task_id: a task id to run again, or True to reuse the latest
                task of the same project and name when it recorded nothing (no
                artifacts, no scalars). Default False: a new task each run.
            continue_last_task: a task id, or True for the latest task of the same
                project and name, to run again keeping what it recorded.
            output_uri: where artifacts go (a directory, ``s3://...``, the server);
                default ``AGENT_FILES_URL``, else the server, else ``$AGENT_HOME/files``.
            capture_output: copy stdout/stderr to the task log; default: yes, unless
                run by an agent (which streams the output itself).
            auto_connect_arg_parser: record what ``argparse`` parses in section ``Args``
                (under an agent, the stored values win); a dict leaves arguments out
                (``{"seed": False}``); False turns it off.
            auto_connect_frameworks: register models that joblib.dump, torch.save and
                pickle.dump save to files as output models of the task (ClearML's dict
                form picks frameworks: ``{"pytorch": False}``); False turns it off.
            auto_resource_monitoring: accepted for ClearML code.
            auto_connect_streams: ClearML's name for ``capture_output``.

        Returns:
            The current task. A second call in the same process returns it again.

        Raises:
            TaskNotFound: ``AGENT_TASK_ID`` (or the task id to reuse) names no task.
        """
        with session.lock():
            current = session.current()
            if current is not None:
                return current
            attach_id = os.environ.get(TASK_ID_ENV)
            if attach_id:
                task = cls._attach(attach_id)
            else:
                task = cls._start_new(
                    project_name,
                    task_name,
                    task_type,
                    tags,
                    continue_last_task or reuse_last_task_id,
                    bool(continue_last_task),
                    output_uri,
                )
            session.set_current(task)
            session.install_hooks()
            argparse_binding.connect_task(task, auto_connect_arg_parser)
            frameworks.connect(auto_connect_frameworks)
        if capture_output is None:
            capture_output = auto_connect_streams and not attach_id
        if capture_output:
            task._start_capture()
        return task

    @classmethod
    def _attach(cls, task_id: str) -> Task:
        try:
            return cls(_backend().get_task(task_id))
        except NotFound as exc:
            raise TaskNotFound(
                f"{TASK_ID_ENV}={task_id} names no task in the store ({exc}); "
                "unset it to create a new task"
            ) from exc

    @classmethod
    def _start_new(
        cls,
        project_name: str | None,
        task_name: str | None,
        task_type: TaskTypes | str,
        tags: Sequence[str] | None,
        reuse: bool | str,
        keep_outputs: bool,
        output_uri: str | bool | None,
    ) -> Task:
        backend = _backend()
        script = running_script()
        project = project_name or repo_name(script) or "default"
        name = task_name or Path(script.entry_point).stem or "untitled"
        record = reusable_task(backend, reuse, project, name, keep_outputs)
        if record is None:
            record = backend.create_task(
                TaskRecord(
                    name=name,
                    project=project,
                    type=task_type_value(task_type),
                    tags=list(tags or []),
                    script=script,
                    output_uri=output_uri if isinstance(output_uri, str) else None,
                    runtime={INIT_MARK: INIT_VALUE, **launch_argv()},
                )
            )
        else:
            record = backend.update_task(record.id, script=script, tags=list(tags or record.tags))
            record = backend.merge_runtime(record.id, launch_argv() or {"argv": []})
        task = cls(restart(backend, record), backend)
        task._owns_status = True
        return task

    @classmethod
    def current_task(cls) -> Task | None:
        """The task of this process: the one ``Task.init`` made, or, run by an agent,
        the agent's task (attached on first call). None otherwise."""
        current = session.current()
        if current is None and os.environ.get(TASK_ID_ENV):
            return cls.init()
        return current

    @classmethod
    def get_task(
        cls,
        task_id: str | None = None,
        project_name: str | None = None,
        task_name: str | None = None,
        tags: Sequence[str] | None = None,
        allow_archived: bool = True,
        task_filter: dict[str, Any] | None = None,
    ) -> Task:
        """A task by id, or the newest one with this project, exact name and tags (and
        ClearML's ``task_filter``, see :meth:`get_tasks`).

        Raises:
            TaskNotFound: nothing matches.
            ValueError: neither an id nor anything to match was given.
        """
        if task_id:
            try:
                return cls(_backend().get_task(task_id))
            except NotFound as exc:
                raise TaskNotFound(f"no task with id {task_id!r}") from exc
        found = cls._matching(
            project_name,
            task_name,
            tags,
            allow_archived,
            dict(task_filter or {}),
            limit=1,
            exact_name=True,
        )
        if not found:
            what = ", ".join(
                f"{k} {v!r}"
                for k, v in (
                    ("project", project_name),
                    ("name", task_name),
                    ("tags", tags),
                    ("filter", task_filter),
                )
                if v
            )
            raise TaskNotFound(f"no task with {what} (see `agent tasks`)")
        return found[0]

    @classmethod
    def get_tasks(
        cls,
        task_ids: Iterable[str] | None = None,
        project_name: str | None = None,
        task_name: str | None = None,
        tags: Sequence[str] | None = None,
        allow_archived: bool = True,
        task_filter: dict[str, Any] | None = None,
        status: str | Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[Task]:
        """Tasks by ids, or the newest ones matching, as in ClearML:

        Args:
            task_ids: these tasks (the rest is ignored).
            project_name: their project.
            task_name: a regular expression searched in their names (ClearML's
                partial match): ``"train"`` matches ``"train_v2"``; ``"^train$"`` only it.
            tags: tags they all carry (a tag starting with ``-`` must be absent).
            allow_archived: False leaves archived tasks out.
            task_filter: ClearML's filter dict: ``status`` and ``type`` (a value or a
                list), ``tags``, ``parent``, ``id`` (a list), ``search_text`` (in the
                name), ``order_by`` (``["-last_update"]``, ``["name"]`` ...), ``page`` and
                ``page_size``. Other keys are ignored with a warning.
            status: ``task_filter["status"]``, as a keyword.
        """
        backend = _backend()
        if task_ids is not None:
            return [cls(backend.get_task(i), backend) for i in task_ids]
        task_filter = dict(task_filter or {})
        if status is not None:
            task_filter.setdefault("status", status)
        return cls._matching(project_name, task_name, tags, allow_archived, task_filter, limit)

    @classmethod
    def _matching(
        cls,
        project: str | None,
        name: str | None,
        tags: Sequence[str] | None,
        allow_archived: bool,
        task_filter: dict[str, Any],
        limit: int,
        exact_name: bool = False,
    ) -> list[Task]:
        from agent.sdk.task_filter import TaskFilter

        query = TaskFilter.parse(task_filter, tags, allow_archived)
        if name and not exact_name:
            query.name_pattern = name
            name = None
        if not (project or name or query.selects):
            raise ValueError(
                "get_tasks needs task ids, or a project, name, tags or task_filter to match"
            )
        backend = _backend()
        records = backend.query_tasks(
            project=project,
            name=name,
            tag=query.store_tag,
            status=query.statuses,
            type=query.store_type,
            parent=query.parent,
            limit=max(query.offset + limit, 1000)
            if query.filters_after_store
            else query.offset + limit,
        )
        return [cls(r, backend) for r in query.apply(records, limit)]

    # -- preparing tasks for agents -----------------------------------------------------
    @classmethod
    def create(
        cls,
        project_name: str | None = None,
        task_name: str | None = None,
        task_type: TaskTypes | str = TaskTypes.training,
        script: str | os.PathLike[str] | None = None,
        repo: str | None = None,
        branch: str | None = None,
        commit: str | None = None,
        working_directory: str | None = None,
        requirements: str | os.PathLike[str] | Sequence[str] | None = None,
        packages: Sequence[str] | bool | None = None,
        docker: str | None = None,
        docker_args: str | None = None,
        docker_bash_setup_script: str | None = None,
        argparse_args: Sequence[tuple[str, Any]] | None = None,
        add_task_init_call: bool = True,
        detect_repository: bool = True,
        requirements_file: str | os.PathLike[str] | None = None,
    ) -> Task:
        """A new ``created`` task that an agent can run (nothing runs here).

        Args:
            script: the entry point: a path inside ``repo``, or a local file. A local
                file in a git work tree records the repository, branch, commit and
                uncommitted diff; outside git, its code is stored in the task.
            repo, branch, commit: run this repository's code instead of a local file's.
            working_directory: where the script runs, relative to the repository root.
            requirements: a requirements file, or a list of requirement lines.
            packages: more requirement lines.
            docker, docker_args, docker_bash_setup_script: the container to run in.
            argparse_args: ``(name, value)`` pairs for hyperparameter section ``Args``.
            add_task_init_call: accepted for ClearML code: the agent always sets
                ``AGENT_TASK_ID``, so a ``Task.init`` in the script attaches to this task.
            detect_repository: False stores a local script's code even inside git.
            requirements_file: ClearML's name for a requirements file.
        """
        record = TaskRecord(
            name=task_name or (Path(script).stem if script else "untitled"),
            project=project_name or "default",
            type=task_type_value(task_type),
            script=script_for_create(
                script, repo, branch, commit, working_directory, detect_repository
            ),
            hyperparams={"Args": {str(k): to_stored(v) for k, v in argparse_args}}
            if argparse_args
            else {},
            container={
                "image": docker or "",
                "arguments": docker_args or "",
                "setup_script": docker_bash_setup_script or "",
            },
        )
        record.script.requirements = requirement_lines(requirements_file, requirements, packages)
        backend = _backend()
        return cls(backend.create_task(record), backend)

    @classmethod
    def clone(
        cls,
        source_task: Task | str,
        name: str | None = None,
        comment: str | None = None,
        parent: Task | str | None = None,
        project: str | None = None,
    ) -> Task:
        """A new ``created`` task with the source's definition (code, parameters,
        configuration, container), not its results."""
        backend = _backend()
        record = backend.clone_task(
            _task_id(source_task),
            name=name,
            parent=_task_id(parent) if parent is not None else None,
            project=project,
        )
        if comment is not None:
            record = backend.update_task(record.id, comment=comment)
        return cls(record, backend)

    @classmethod
    def enqueue(
        cls,
        task: Task | str,
        queue_name: str | None = None,
        queue_id: str | None = None,
        priority: int = 0,
    ) -> Task:
        """Put a task on a queue for an agent (``queue_name`` default ``"default"``).

        Raises:
            NotFound: ``queue_id`` names no queue.
            Conflict: the task cannot be queued in its status (e.g. it is running).
        """
        backend = _backend()
        queue = queue_name or (_queue_name(backend, queue_id) if queue_id else "default")
        queued = cls(backend.enqueue(_task_id(task), queue, priority=priority), backend)
        warn_if_unserved(backend, queue)
        return queued

    @classmethod
    def dequeue(cls, task: Task | str) -> Task:
        """Take a queued task off its queue (back to ``created``)."""
        backend = _backend()
        return cls(backend.dequeue(_task_id(task)), backend)

    # -- requirements (before Task.init) ----------------------------------------------
    @classmethod
    def add_requirements(cls, package_name: str, package_version: str | None = None) -> None:
        """Add a requirement to what the next :meth:`init` records (call it before).

        Args:
            package_name: a distribution name (``"scikit-learn"``, ``"torch>=2"``), or the
                path of a requirements file whose lines are all added.
            package_version: ``"1.2.3"`` (pinned) or a specifier (``">=1.2"``).
        """
        requested.add(package_name, package_version)

    @classmethod
    def ignore_requirements(cls, package_name: str) -> None:
        """Leave a detected requirement out of what the next :meth:`init` records."""
        from agent.execution.requirements import requirement_name

        requested.ignored.add(requirement_name(package_name))

    @classmethod
    def force_requirements_env_freeze(
        cls, force: bool = True, requirements_file: str | os.PathLike[str] | None = None
    ) -> None:
        """Record the whole environment (every installed distribution, pinned) instead of
        the script's imports, or the lines of ``requirements_file``; call before
        :meth:`init`."""
        requested.freeze = bool(force)
        requested.file = os.fspath(requirements_file) if requirements_file else None

    def execute_remotely(
        self, queue_name: str | None = None, clone: bool = False, exit_process: bool = True
    ) -> Task | None:
        """Go on running this script on an agent (ClearML's ``execute_remotely``).

        Here (not under an agent): with ``queue_name``, this task (or, with ``clone``, a
        clone of it) is enqueued there, with the code, requirements and parameters
        recorded so far; with ``queue_name=None`` it is left ``created``, a template to
        clone or to use as a ``PipelineController.add_step`` base task. Then, with
        ``exit_process``, this process exits cleanly (code 0). Run by an agent for this
        very task, it does nothing and returns None.

        Returns:
            The task that an agent will run (or the template); None under an agent.

        Raises:
            ValueError: ``clone=False`` with ``exit_process=False``: a task that enqueues
                itself cannot also go on running here.
        """
        if self._stored_values_win:
            return None
        if session.current() is not self:  # not this process's own run: only enqueue it
            if not queue_name:
                raise ValueError(
                    "execute_remotely of a task this process does not run needs a queue_name"
                )
            return Task.enqueue(Task.clone(self) if clone else self, queue_name=queue_name)
        if not clone and not exit_process:
            raise ValueError(
                "execute_remotely(clone=False, exit_process=False) is not supported: a task "
                "that enqueues itself must leave this process (use clone=True to keep running)"
            )
        self.flush(wait_for_uploads=True)
        if clone:
            target = Task.clone(self)
        else:
            self._leave_here("switching to remote execution")
            target = self
        if queue_name:
            target = Task.enqueue(target, queue_name=queue_name)
            where = f"enqueued on {queue_name!r}"
        else:
            if target._record.status != TaskStatus.created.value:
                target._record = self._backend.set_status(target.id, TaskStatus.created.value)
            where = "left as a template (created): clone or enqueue it to run it"
        warn(f"task {target.id} {where} (follow it with `agent logs {target.id} --follow`)")
        if exit_process:
            if clone:
                self._leave_here(f"continued remotely as task {target.id}")
            warn("leaving the local process: the run goes on remotely")
            _leave_process()
        return target

    def _leave_here(self, message: str) -> None:
        """Stop this process's run of the task: reports flushed, output no longer copied,
        status ``stopped`` with ``message``, nothing left for the exit hooks to close."""
        self._owns_status = False
        self._finish(None)
        if self.get_status() == TaskStatus.in_progress.value:
            self._record = self._backend.set_status(self.id, TaskStatus.stopped.value, message)

    @staticmethod
    def running_locally() -> bool:
        """True unless this process was started by an agent."""
        return not os.environ.get(TASK_ID_ENV)

    # -- identity and record ------------------------------------------------------------
    @property
    def _backend(self) -> Backend:
        if self._backend_obj is None:
            self._backend_obj = _backend()
        return self._backend_obj

    @property
    def _stored_values_win(self) -> bool:
        """Run by an agent for this very task: stored parameters beat the code's."""
        return os.environ.get(TASK_ID_ENV) == self.id

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def data(self) -> TaskRecord:
        """The task record as last read (see :meth:`reload`)."""
        return self._record

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def project(self) -> str:
        """The project's name (projects are known by name)."""
        return self._record.project

    def get_project_name(self) -> str:
        return self._record.project

    @property
    def task_type(self) -> str:
        return self._record.type

    @property
    def parent(self) -> str | None:
        return self._record.parent

    @property
    def comment(self) -> str:
        return self._record.comment

    @property
    def output_uri(self) -> str | None:
        return self._record.output_uri

    @output_uri.setter
    def output_uri(self, value: str | None) -> None:
        self._update(output_uri=value)

    @property
    def status(self) -> str:
        """The current status, read from the store."""
        return self.get_status()

    def get_status(self) -> str:
        return self.reload()._record.status

    def get_status_message(self) -> str:
        return self.reload()._record.status_message

    def reload(self) -> Task:
        """Read the task record again from the store."""
        self._record = self._backend.get_task(self.id)
        return self

    def _fresh(self) -> TaskRecord:
        return self.reload()._record

    def _update(self, **fields: Any) -> TaskRecord:
        self._record = self._backend.update_task(self.id, **fields)
        return self._record

    # -- editing ------------------------------------------------------------------------
    def set_name(self, name: str) -> None:
        self._update(name=name)

    def set_comment(self, comment: str) -> None:
        self._update(comment=comment)

    def set_parent(self, parent: Task | str | None) -> None:
        self._update(parent=_task_id(parent) if parent is not None else None)

    def settask_type_value(self, task_type: TaskTypes | str) -> None:
        self._update(type=task_type_value(task_type))

    def set_base_docker(
        self,
        docker_cmd: str | None = None,
        docker_image: str | None = None,
        docker_arguments: str | Sequence[str] | None = None,
        docker_setup_bash_script: str | Sequence[str] | None = None,
    ) -> None:
        """Set the container an agent running with ``--docker`` runs this task in.

        Replaces the whole container (image, arguments, setup script). Ignored in the
        process an agent runs for this very task, as in ClearML: there the stored
        container is the one the task runs in.

        Args:
            docker_cmd: ``"image --args ..."`` in one string (ClearML's older form).
            docker_image: the image, e.g. ``"python:3.11-slim"``.
            docker_arguments: container arguments (``"-e K=V -v a:b"``, or a list
                joined with spaces); default the words after the image in ``docker_cmd``.
            docker_setup_bash_script: bash run in the container before the task (a
                string, or a list of lines).
        """
        if self._stored_values_win:
            return
        container = base_docker(
            docker_cmd, docker_image, docker_arguments, docker_setup_bash_script
        )
        self._update(container=container)

    def get_base_docker(self) -> str | None:
        """The container image and its arguments, ``"image args"``; None when unset."""
        return docker_command(self._fresh().container or {})

    def get_tags(self) -> list[str]:
        return list(self._fresh().tags)

    def set_tags(self, tags: Sequence[str]) -> None:
        """Replace the task's tags."""
        self._update(tags=list(tags))

    def add_tags(self, tags: str | Sequence[str]) -> None:
        """Add tags (a single tag or several) to the task's tags."""
        new = [tags] if isinstance(tags, str) else list(tags)
        current = self.get_tags()
        self._update(tags=current + [t for t in new if t not in current])

    def set_user_properties(self, *iterables: Any, **properties: Any) -> None:
        """Set user properties (runtime properties): ``name=value`` keywords, dicts of
        ``{name: value}`` or ``{"name": ..., "value": ...}``, or ``(name, value)`` pairs."""
        values: dict[str, Any] = {}
        for item in iterables:
            if isinstance(item, dict) and "name" in item and "value" in item:
                values[str(item["name"])] = item["value"]
            elif isinstance(item, dict):
                values.update({str(k): v for k, v in item.items()})
            else:
                for entry in item:
                    if isinstance(entry, dict):
                        values[str(entry["name"])] = entry["value"]
                    else:
                        values[str(entry[0])] = entry[1]
        values.update(properties)
        self.set_runtime_properties(values)

    def get_user_properties(self, value_only: bool = False) -> dict[str, Any]:
        """User properties as ClearML gives them (``{name: {"name", "value"}}``), or
        ``{name: value}`` with ``value_only=True``."""
        values = self.get_runtime_properties()
        if value_only:
            return values
        return {k: {"name": k, "value": v} for k, v in values.items()}

    def set_runtime_properties(self, values: dict[str, Any]) -> None:
        """Merge ``values`` into the task's runtime properties."""
        self._record = self._backend.merge_runtime(self.id, to_stored(dict(values)))

    def get_runtime_properties(self) -> dict[str, Any]:
        """Runtime properties, without the system's own (names starting with ``_``)."""
        return {k: v for k, v in self._fresh().runtime.items() if not str(k).startswith("_")}

    # -- reports ------------------------------------------------------------------------
    @property
    def models(self) -> dict[str, ModelList]:
        """The task's models: ``{"input": [...], "output": [...]}``; each list is in the
        order the models were linked and is indexed by name too (``["output"]["best"]``)."""
        from agent.sdk.model import task_models

        return task_models(self._backend, self._fresh().runtime)

    def get_logger(self) -> Logger:
        """The :class:`~agent.sdk.logger.Logger` of this task."""
        if self._logger is None:
            from agent.sdk.logger import Logger

            self._logger = Logger(self.id, self._backend, file_store=self._file_store)
        return self._logger

    def flush(self, wait_for_uploads: bool = False) -> None:
        """Send buffered reports, changed connected parameters and changed registered
        artifacts now (and wait for background uploads)."""
        self._record_connected()
        self._upload_registered()
        if self._logger is not None:
            self._logger.flush()
        if wait_for_uploads:
            self.wait_for_uploads()

    def get_reported_scalars(self) -> dict[str, dict[str, dict[str, list]]]:
        """``{title: {series: {"x": [iterations], "y": [values]}}}`` (ClearML's shape)."""
        self.flush()
        return {
            title: {
                name: {"x": [p[0] for p in points], "y": [p[1] for p in points]}
                for name, points in series.items()
            }
            for title, series in self._backend.get_scalars(self.id).items()
        }

    def get_last_scalar_metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{title: {series: {"last": v, "min": v, "max": v}}}`` of what was reported
        (ClearML's shape). "last" may be NaN; "min"/"max" are over the finite values."""
        from agent.core.metrics import last_metrics

        self.flush()
        return last_metrics(self._backend.get_scalars(self.id))

    def get_reported_plots(self) -> list[dict[str, Any]]:
        """``[{title, series, iteration, figure}]`` in report order (plots, matplotlib
        figures among them; not the debug samples)."""
        from agent.sdk import media

        self.flush()
        return [
            p
            for p in self._backend.get_plots(self.id)
            if media.kind_of(p["figure"]) != media.DEBUG_SAMPLE
        ]

    def get_debug_samples(
        self,
        title: str | None = None,
        series: str | None = None,
        n_last_iterations: int | None = None,
    ) -> list[dict[str, Any]]:
        """The images and media reported with ``report_image`` / ``report_media``, as
        ``[{"metric", "variant", "iter", "url", ...}]`` (ClearML's event fields; with
        "sha256", "size", "filename", "content_type"), oldest iteration first; only
        ``title``/``series`` when given, and only the last ``n_last_iterations``."""
        from agent.sdk import media

        self.flush()
        samples = [
            {
                "metric": p["title"],
                "variant": p["series"],
                "iter": p["iteration"],
                **p["figure"]["media"],
            }
            for p in self._backend.get_plots(self.id)
            if media.kind_of(p["figure"]) == media.DEBUG_SAMPLE
            and (title is None or p["title"] == title)
            and (series is None or p["series"] == series)
        ]
        samples.sort(key=lambda s: s["iter"])
        if n_last_iterations:
            last = sorted({s["iter"] for s in samples})[-n_last_iterations:]
            samples = [s for s in samples if s["iter"] in last]
        for sample in samples:
            sample.pop("kind", None)
        return samples

    def get_output_log(self) -> str:
        """The task's log as text."""
        self.flush()
        lines: list[str] = []
        after = 0
        while batch := self._backend.get_logs(self.id, after=after):
            lines.extend(line.text for line in batch)
            after = batch[-1].seq
        return "\n".join(lines)


@contextlib.contextmanager
def bind_current_task(task_id: str) -> Iterator[Task]:
    """Make task ``task_id`` current (``Task.current_task()``, ``Logger.current_logger()``)
    while the block runs, then flush its reports and restore the previous one.

    For code that runs a step in this process (a pipeline's debug mode): the step's
    status stays with whoever runs it.
    """
    task = Task.get_task(task_id)
    previous = session.swap_current(task)
    try:
        yield task
    finally:
        try:
            task.wait_for_uploads()
            if task._logger is not None:
                task._logger.close()
        finally:
            session.restore_current(task, previous)


# -- helpers --------------------------------------------------------------------------------
def _leave_process() -> None:
    """Exit with code 0: ``sys.exit`` in the main thread (cleanups run), else at once."""
    import sys
    import threading

    if threading.current_thread() is threading.main_thread():
        sys.exit(0)
    os._exit(0)


def _backend() -> Backend:
    from agent.store.factory import get_backend

    return get_backend()


def _task_id(task: Task | TaskRecord | str) -> str:
    return task if isinstance(task, str) else task.id


def _queue_name(backend: Backend, queue_id: str) -> str:
    for queue in backend.list_queues():
        if queue.id == queue_id:
            return queue.name
    raise NotFound(f"no queue with id {queue_id!r} (see `agent queues`)")
