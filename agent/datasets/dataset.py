"""``Dataset``: ClearML Data's API over dataset tasks and content-addressed blobs.

Lifecycle of a version: :meth:`Dataset.create` (a ``data_processing`` task, in progress,
holding its parents' files) -> :meth:`add_files` / :meth:`remove_files` (hashed here,
nothing stored yet) -> :meth:`upload` (each new content stored once as a blob) ->
:meth:`finalize` (the ``state`` artifact written, the task completed; the version is
read-only from then on). :meth:`Dataset.get` finds a version again, anywhere that reaches
the same store, and :meth:`get_local_copy` assembles its files in a read-only cache.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.core.errors import AgentError, InvalidInput, NotFound
from agent.core.models import Task as TaskRecord
from agent.core.models import TaskStatus, TaskTypes
from agent.datasets import local_copy
from agent.datasets.state import (
    STATE_FORMAT,
    Changes,
    FileEntry,
    Progress,
    collect,
    dataset_path_of,
    diff,
    hash_files,
    matching,
)
from agent.files import blobs

if TYPE_CHECKING:
    from agent.sdk.logger import Logger
    from agent.sdk.task import Task
    from agent.store.base import Backend

_log = logging.getLogger("agent.datasets")

#: Runtime property of a dataset task: name, version, parents, final, counts.
INFO_KEY = "dataset"
#: The artifact holding a version's file list.
STATE_ARTIFACT = "state"
#: Hyperparameter section where ``Dataset.get(alias=...)`` records what a task used.
ALIAS_SECTION = "Datasets"
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


class Dataset:
    """One version of a dataset (ClearML's ``Dataset``); make one with :meth:`create`,
    find one with :meth:`get`."""

    def __init__(self, task: Task, files: dict[str, FileEntry], parent_files: dict[str, FileEntry]):
        self._task = task
        self._files = files
        self._parent_files = parent_files
        self._pending: dict[str, Path] = {}  # dataset path -> local file not stored yet

    def __repr__(self) -> str:
        return f"<Dataset {self.id} {self.project}/{self.name} v{self.version}>"

    # -- making a version -------------------------------------------------------------
    @classmethod
    def create(
        cls,
        dataset_name: str | None = None,
        dataset_project: str | None = None,
        dataset_tags: Sequence[str] | None = None,
        parent_datasets: Sequence[Dataset | str] | None = None,
        use_current_task: bool = False,
        dataset_version: str | None = None,
        output_uri: str | None = None,
        description: str | None = None,
        **_: Any,
    ) -> Dataset:
        """A new, writable version holding its parents' files (later parents win).

        Args:
            dataset_name: its name (with ``use_current_task``, default the task's).
            dataset_project: its project (default: the parents' or the current task's).
            dataset_tags: its tags.
            parent_datasets: the versions it starts from (objects or ids); each must be final.
            use_current_task: make the current task this dataset instead of a new task.
            dataset_version: "major.minor.patch"; default: the next patch of the
                newest version of this name, or "1.0.0".
            output_uri: where its files are stored (default: the task's file storage).
            description: the task's comment.

        Raises:
            InvalidInput: no name, or a parent that is not final.
        """
        from agent.sdk.task import Task

        backend = _backend()
        parents = [_as_dataset(p) for p in parent_datasets or []]
        for parent in parents:
            if not parent.is_final():
                raise InvalidInput(
                    f"parent dataset {parent.name!r} ({parent.id}) is not final: finalize it first"
                )
        current = Task.current_task() if use_current_task else None
        if use_current_task and current is None:
            raise InvalidInput("use_current_task=True needs a current task: call Task.init()")
        name = dataset_name or (current.name if current else None)
        project = dataset_project or (parents[0].project if parents else None)
        project = project or (current.project if current else None) or "datasets"
        if not name:
            raise InvalidInput("Dataset.create needs dataset_name")
        version = dataset_version or _next_version(backend, project, name)
        if not _VERSION.match(version):
            raise InvalidInput(f"dataset_version {version!r} is not 'major.minor.patch'")
        info = {
            "name": name,
            "project": project,
            "version": version,
            "parents": [p.id for p in parents],
            "final": False,
        }
        if current is not None:
            task = current
            task._update(type=TaskTypes.data_processing.value, tags=list(dataset_tags or []))
            backend.merge_runtime(task.id, {INFO_KEY: info})
        else:
            record = backend.create_task(
                TaskRecord(
                    name=name,
                    project=project,
                    type=TaskTypes.data_processing.value,
                    tags=list(dataset_tags or []),
                    comment=description or "",
                    output_uri=output_uri,
                    runtime={INFO_KEY: info},
                )
            )
            backend.set_status(record.id, TaskStatus.in_progress.value)
            task = Task(backend.get_task(record.id), backend)
        merged: dict[str, FileEntry] = {}
        for parent in parents:
            merged.update(parent._files)
        return cls(task, dict(merged), merged)

    def add_files(
        self,
        path: str | Path,
        wildcard: str | Sequence[str] | None = None,
        local_base_folder: str | Path | None = None,
        dataset_path: str | None = None,
        recursive: bool = True,
        verbose: bool = False,
        max_workers: int | None = None,
    ) -> int:
        """Add a file, or a folder's files (``wildcard`` on names or relative paths), at
        ``dataset_path`` inside the dataset. A file of the same path is replaced.

        Returns:
            How many files were added or changed (an unchanged file does not count).
        """
        self._check_writable("add files to")
        base = Path(local_base_folder) if local_base_folder is not None else None
        found = collect(Path(path), wildcard, recursive, base)
        prefix = dataset_path_of(dataset_path or "")
        sizes = [p.stat().st_size for p, _ in found]
        progress = Progress(f"dataset {self.name!r}: hashing", len(found), sum(sizes), verbose)
        digests = hash_files([p for p, _ in found], max_workers, progress)
        changed = 0
        for (local, relative), digest, size in zip(found, digests, sizes, strict=True):
            target = f"{prefix}/{relative}" if prefix else relative
            old = self._files.get(target)
            if old is not None and old.sha256 == digest:
                continue
            self._files[target] = FileEntry(target, digest, size)
            self._pending[target] = local
            changed += 1
        if verbose:
            print(f"dataset {self.name!r}: {changed} of {len(found)} files added or changed")
        return changed

    def remove_files(self, dataset_path: str, recursive: bool = True, verbose: bool = False) -> int:
        """Remove the files that ``dataset_path`` selects (a path, a folder, a wildcard).

        Returns:
            How many files were removed.
        """
        self._check_writable("remove files from")
        gone = list(matching(list(self._files), dataset_path, recursive))
        for path in gone:
            del self._files[path]
            self._pending.pop(path, None)
        if verbose:
            print(f"dataset {self.name!r}: removed {len(gone)} files")
        return len(gone)

    def upload(
        self,
        show_progress: bool = True,
        verbose: bool = False,
        output_url: str | None = None,
        compression: Any = None,
        chunk_size: int | None = None,
        max_workers: int | None = None,
        retries: int = 3,
    ) -> None:
        """Store the files added since the last upload; a content the store has already
        (in a parent, another dataset, a model) is not stored again."""
        self._check_writable("upload")
        if not self._pending:
            return
        from concurrent.futures import ThreadPoolExecutor

        store = self._store(output_url)
        known = {e.sha256 for e in self._parent_files.values() if e.uri}
        pending = sorted(self._pending.items())
        total = sum(self._files[p].size for p, _ in pending)
        progress = Progress(f"dataset {self.name!r}: uploading", len(pending), total, show_progress)

        def store_one(item: tuple[str, Path]) -> tuple[str, blobs.StoredBlob]:
            path, local = item
            entry = self._files[path]
            stored = _with_retries(
                lambda: blobs.put_blob(store, local, entry.sha256, entry.sha256 in known), retries
            )
            progress.advance(entry.size)
            return path, stored

        workers = max(1, max_workers or 8)
        with ThreadPoolExecutor(workers, thread_name_prefix="dataset-upload") as pool:
            results = list(pool.map(store_one, pending))
        written = 0
        for path, stored in results:
            self._files[path] = FileEntry(path, stored.sha256, stored.size, stored.uri)
            self._pending.pop(path, None)
            written += stored.size if stored.written else 0
        info = self._info()
        info["stored_bytes"] = int(info.get("stored_bytes", 0)) + written
        self._set_info(info)
        if show_progress and len(pending) > 1:
            print(progress.line(), f"- {written} new bytes stored", flush=True)

    def finalize(
        self, verbose: bool = False, raise_on_error: bool = True, auto_upload: bool = False
    ) -> bool:
        """Make the version final: its file list is written and it can no longer change.

        Raises:
            InvalidInput: files were added but not uploaded (call :meth:`upload`, or
                ``finalize(auto_upload=True)``).
        """
        if self.is_final():
            return True
        if self._pending:
            if not auto_upload:
                if not raise_on_error:
                    return False
                raise InvalidInput(
                    f"dataset {self.name!r} has {len(self._pending)} files not uploaded: "
                    "call upload() first, or finalize(auto_upload=True)"
                )
            self.upload(show_progress=verbose)
        changes = diff(self._parent_files, self._files)
        self._write_state(changes)
        info = self._info()
        info.update(
            final=True,
            files=len(self._files),
            size=sum(e.size for e in self._files.values()),
            added=len(changes.added),
            modified=len(changes.modified),
            removed=len(changes.removed),
        )
        self._set_info(info)
        self._task.flush()
        backend = self._task._backend
        if self._task.status != TaskStatus.in_progress.value:
            backend.set_status(self.id, TaskStatus.in_progress.value)
        backend.set_status(self.id, TaskStatus.completed.value)
        self._task.reload()
        return True

    # -- finding a version --------------------------------------------------------------
    @classmethod
    def get(
        cls,
        dataset_id: str | None = None,
        dataset_project: str | None = None,
        dataset_name: str | None = None,
        dataset_tags: Sequence[str] | None = None,
        only_completed: bool = False,
        only_published: bool = False,
        include_archived: bool = False,
        auto_create: bool = False,
        writable_copy: bool = False,
        dataset_version: str | None = None,
        alias: str | None = None,
        overridable: bool = False,
        **_: Any,
    ) -> Dataset:
        """A dataset version by id, or the newest of a project/name (and tags/version).

        Args:
            auto_create: create the dataset when none matches.
            writable_copy: a new writable child of the version found.
            alias: record the id on the current task (hyperparameter section "Datasets"),
                so that what a run used is on its record.
            overridable: with ``alias``, run by an agent, the recorded id wins.

        Raises:
            NotFound: no dataset matches (and not ``auto_create``).
        """
        if alias and overridable:
            dataset_id = _overridden(alias) or dataset_id
        if dataset_id is None and not (dataset_project or dataset_name):
            raise InvalidInput("Dataset.get needs dataset_id, or dataset_project/dataset_name")
        try:
            found = (
                cls._load(dataset_id)
                if dataset_id
                else cls._newest(
                    dataset_project,
                    dataset_name,
                    dataset_tags,
                    dataset_version,
                    only_completed or only_published,
                    include_archived,
                )  # fmt: skip
            )
        except NotFound:
            if not auto_create or dataset_id:
                raise
            return cls.create(dataset_name, dataset_project, dataset_tags)
        if alias:
            _record_alias(alias, found.id)
        if writable_copy:
            return cls.create(found.name, found.project, found.tags, parent_datasets=[found])
        return found

    @classmethod
    def list_datasets(
        cls,
        dataset_project: str | None = None,
        partial_name: str | None = None,
        tags: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        only_completed: bool = True,
        recursive_project_search: bool = True,
        include_archived: bool = True,
    ) -> list[dict[str, Any]]:
        """Dataset versions, newest first: ``{id, name, project, version, tags, created,
        final, files, size}`` each."""
        out = []
        for record in dataset_records(_backend(), dataset_project, recursive_project_search):
            info = record.runtime[INFO_KEY]
            if partial_name and partial_name.lower() not in str(info.get("name", "")).lower():
                continue
            if tags and not set(tags) & set(record.tags):
                continue
            if ids and record.id not in ids:
                continue
            if only_completed and record.status not in ("completed", "published"):
                continue
            if not include_archived and record.status == "archived":
                continue
            out.append(summary(record))
        return out

    @classmethod
    def _load(cls, dataset_id: str) -> Dataset:
        from agent.sdk.task import Task

        backend = _backend()
        try:
            record = backend.get_task(dataset_id)
        except NotFound as exc:
            raise NotFound(f"no dataset with id {dataset_id!r} (see `agent datasets`)") from exc
        info = record.runtime.get(INFO_KEY)
        if not isinstance(info, dict):
            raise NotFound(f"task {dataset_id} is not a dataset (see `agent datasets`)")
        task = Task(record, backend)
        files = read_state(backend, record) if info.get("final") else None
        parent_files: dict[str, FileEntry] = {}
        for parent_id in info.get("parents", []):
            parent_files.update(cls._load(parent_id)._files)
        dataset = cls(task, files if files is not None else dict(parent_files), parent_files)
        return dataset

    @classmethod
    def _newest(
        cls,
        project: str | None,
        name: str | None,
        tags: Sequence[str] | None,
        version: str | None,
        only_final: bool,
        include_archived: bool,
    ) -> Dataset:
        for record in dataset_records(_backend(), project):
            info = record.runtime[INFO_KEY]
            if name is not None and info.get("name") != name:
                continue
            if tags and not set(tags) <= set(record.tags):
                continue
            if version is not None and info.get("version") != version:
                continue
            if only_final and not info.get("final"):
                continue
            if not include_archived and record.status == "archived":
                continue
            return cls._load(record.id)
        wanted = ", ".join(
            f"{k}={v!r}"
            for k, v in (("project", project), ("name", name), ("version", version))
            if v
        )
        raise NotFound(f"no dataset matches {wanted} (see `agent datasets`)")

    # -- reading ------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._task.id

    @property
    def name(self) -> str:
        return str(self._info().get("name", self._task.name))

    @property
    def project(self) -> str:
        return str(self._info().get("project", self._task.project))

    @property
    def version(self) -> str:
        return str(self._info().get("version", ""))

    @property
    def tags(self) -> list[str]:
        return self._task.get_tags()

    @property
    def file_entries_dict(self) -> dict[str, FileEntry]:
        """{dataset path: FileEntry(path, sha256, size, uri)}."""
        return dict(self._files)

    @property
    def file_entries(self) -> list[FileEntry]:
        return [self._files[p] for p in sorted(self._files)]

    def is_final(self) -> bool:
        return bool(self._info().get("final"))

    def get_parents(self) -> list[str]:
        """The ids of the versions this one started from."""
        return list(self._info().get("parents", []))

    def get_logger(self) -> Logger:
        """The dataset task's logger (tables, plots, scalars about the data)."""
        return self._task.get_logger()

    def get_default_storage(self) -> str:
        return self._task._file_store().url

    def list_files(
        self, dataset_path: str | None = None, recursive: bool = True, dataset_id: str | None = None
    ) -> list[str]:
        """The dataset's file paths, sorted; ``dataset_path`` selects a folder or a wildcard."""
        files = self._files if dataset_id in (None, self.id) else Dataset._load(dataset_id)._files
        return sorted(matching(sorted(files), dataset_path, recursive))

    def list_added_files(self, dataset_id: str | None = None) -> list[str]:
        """Files this version has and its parents did not."""
        return self._changes(dataset_id).added

    def list_modified_files(self, dataset_id: str | None = None) -> list[str]:
        """Files whose content differs from the parents'."""
        return self._changes(dataset_id).modified

    def list_removed_files(self, dataset_id: str | None = None) -> list[str]:
        """Files of the parents that this version no longer has."""
        return self._changes(dataset_id).removed

    def _changes(self, dataset_id: str | None) -> Changes:
        other = self if dataset_id in (None, self.id) else Dataset._load(dataset_id)
        return diff(other._parent_files, other._files)

    def get_local_copy(
        self,
        use_soft_links: bool | None = None,
        part: int | None = None,
        num_parts: int | None = None,
        raise_on_error: bool = True,
        max_workers: int | None = None,
    ) -> str:
        """A read-only folder with the version's files, assembled once per machine and
        reused (``$AGENT_HOME/cache/datasets/{id}``). Every file is checked against its
        sha256 when first fetched.

        Raises:
            InvalidInput: the version is not final.
            NotFound / StorageError: a file's blob is missing or corrupt (the error names
                the dataset and the file).
        """
        self._check_final("get a local copy of")
        try:
            key = self.id if part is None or num_parts is None else f"{self.id}.{part}of{num_parts}"
            entries = self._entries_for(part, num_parts)
            folder = local_copy.cached_copy(entries, key, self._what(), max_workers)
        except AgentError:
            if raise_on_error:
                raise
            return ""
        return str(folder)

    def get_mutable_local_copy(
        self,
        target_folder: str | Path,
        overwrite: bool = False,
        part: int | None = None,
        num_parts: int | None = None,
        raise_on_error: bool = True,
        max_workers: int | None = None,
    ) -> str | None:
        """Copy the version's files into ``target_folder`` (writable copies).

        Raises:
            InvalidInput: ``target_folder`` has files and ``overwrite`` is False.
        """
        target = Path(target_folder)
        if target.is_dir() and any(target.iterdir()):
            if not overwrite:
                raise InvalidInput(
                    f"{str(target)!r} is not empty: pass overwrite=True to replace its content"
                )
            shutil.rmtree(target)
        source = Path(self.get_local_copy(part=part, num_parts=num_parts, max_workers=max_workers))
        local_copy.copy_tree(source, target)
        return str(target)

    # -- internals ----------------------------------------------------------------------
    def _entries_for(self, part: int | None, num_parts: int | None) -> list[FileEntry]:
        entries = self.file_entries
        if num_parts is None or part is None:
            return entries
        if not 0 <= part < num_parts:
            raise InvalidInput(f"part {part} is not in 0..{num_parts - 1}")
        return entries[part::num_parts]

    def _what(self) -> str:
        return f"dataset {self.project}/{self.name} v{self.version} ({self.id})"

    def _info(self) -> dict[str, Any]:
        return dict(self._task.data.runtime.get(INFO_KEY) or {})

    def _set_info(self, info: dict[str, Any]) -> None:
        self._task._backend.merge_runtime(self.id, {INFO_KEY: info})
        self._task.reload()

    def _check_writable(self, action: str) -> None:
        if self.is_final():
            raise InvalidInput(
                f"cannot {action} {self._what()}: it is final; make a child version with "
                f"Dataset.create(..., parent_datasets=['{self.id}'])"
            )

    def _check_final(self, action: str) -> None:
        if not self.is_final():
            raise InvalidInput(f"cannot {action} {self._what()}: finalize() it first")

    def _store(self, output_url: str | None) -> Any:
        if output_url:
            from agent.config import load_settings
            from agent.files.factory import store_for_url

            return store_for_url(output_url, token=load_settings().api_token)
        return self._task._file_store()

    def _write_state(self, changes: Changes) -> None:
        from agent.files.artifacts import store_artifact

        state = {
            "format": STATE_FORMAT,
            "parents": self.get_parents(),
            "files": {p: self._files[p].to_list() for p in sorted(self._files)},
            "added": changes.added,
            "modified": changes.modified,
            "removed": changes.removed,
        }
        with tempfile.TemporaryDirectory(prefix="agent-dataset-") as tmp:
            path = Path(tmp) / "state.json"
            path.write_text(json.dumps(state, separators=(",", ":")), encoding="utf-8")
            artifact = store_artifact(
                self._task._file_store(), self.id, STATE_ARTIFACT, path, type="json",
                preview=f"{len(self._files)} files",
            )  # fmt: skip
        self._task._backend.add_artifact(self.id, artifact)


# -- module helpers ---------------------------------------------------------------------
def _backend() -> Backend:
    from agent.store.factory import get_backend

    return get_backend()


def _as_dataset(value: Dataset | str) -> Dataset:
    return value if isinstance(value, Dataset) else Dataset._load(str(value))


def dataset_records(
    backend: Backend, project: str | None = None, recursive: bool = True
) -> list[TaskRecord]:
    """The dataset tasks (of ``project`` and, ``recursive``, its sub-projects), newest first."""
    records = backend.query_tasks(type=TaskTypes.data_processing.value, limit=100_000)
    out = []
    for record in records:
        if not isinstance(record.runtime.get(INFO_KEY), dict):
            continue
        if project is not None and record.project != project:
            if not (recursive and record.project.startswith(project.rstrip("/") + "/")):
                continue
        out.append(record)
    return out


def summary(record: TaskRecord) -> dict[str, Any]:
    """What ``agent datasets`` and ``list_datasets`` show of a version."""
    info = record.runtime[INFO_KEY]
    return {
        "id": record.id,
        "name": info.get("name", record.name),
        "project": info.get("project", record.project),
        "version": info.get("version", ""),
        "tags": list(record.tags),
        "created": record.created,
        "status": record.status,
        "final": bool(info.get("final")),
        "files": int(info.get("files", 0)),
        "size": int(info.get("size", 0)),
        "added": int(info.get("added", 0)),
        "modified": int(info.get("modified", 0)),
        "removed": int(info.get("removed", 0)),
        "stored_bytes": int(info.get("stored_bytes", 0)),
        "parents": list(info.get("parents", [])),
    }


def read_state(backend: Backend, record: TaskRecord) -> dict[str, FileEntry]:
    """The file entries a final version's ``state`` artifact lists.

    Raises:
        NotFound: the version has no state artifact.
    """
    from agent.files.artifacts import fetch_artifact

    artifact = backend.get_artifacts(record.id).get(STATE_ARTIFACT)
    if artifact is None:
        raise NotFound(f"dataset {record.name!r} ({record.id}) has no file list (artifact 'state')")
    state = json.loads(fetch_artifact(artifact).read_text(encoding="utf-8"))
    return {p: FileEntry.from_list(p, v) for p, v in state["files"].items()}


def _next_version(backend: Backend, project: str, name: str) -> str:
    versions = []
    for record in dataset_records(backend, project, recursive=False):
        info = record.runtime[INFO_KEY]
        match = _VERSION.match(str(info.get("version", "")))
        if info.get("name") == name and match:
            versions.append(tuple(int(g) for g in match.groups()))
    if not versions:
        return "1.0.0"
    major, minor, patch = max(versions)
    return f"{major}.{minor}.{patch + 1}"


def _with_retries(call: Any, retries: int) -> Any:
    for attempt in range(max(1, retries)):
        try:
            return call()
        except AgentError as exc:
            if attempt == max(1, retries) - 1 or isinstance(exc, (InvalidInput, NotFound)):
                raise
            _log.warning("upload failed (%s); retrying", exc)
    raise AssertionError("unreachable")


def _record_alias(alias: str, dataset_id: str) -> None:
    from agent.sdk.task import Task

    task = Task.current_task()
    if task is not None:
        task.set_parameter(f"{ALIAS_SECTION}/{alias}", dataset_id)


def _overridden(alias: str) -> str | None:
    from agent.sdk.task import Task

    task = Task.current_task()
    if task is None or not task._stored_values_win:
        return None
    value = task.get_parameter(f"{ALIAS_SECTION}/{alias}")
    return str(value) if value else None
