"""Models, as in ClearML: ``OutputModel`` a task makes, ``InputModel`` a task uses,
``Model`` for any registered one.

A model is a record of the store's model registry (:mod:`agent.store.model_registry`)
whose weights, one file or a zipped folder (a "package"), are a content-addressed blob
(:mod:`agent.files.blobs`) in the task's file storage: the same weights registered twice
are stored once, and a download is checked against the recorded sha256.

A task links to its models through runtime properties ``models/input/{name}`` and
``models/output/{name}`` (the model's id), one property per link so that links written
at the same time never overwrite each other. ``task.models`` reads them back.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import agent_home, load_settings
from agent.core.errors import AgentError, InvalidInput, NotFound
from agent.core.models import Model as ModelRecord
from agent.files import blobs

if TYPE_CHECKING:
    from agent.files.base import FileStore
    from agent.sdk.task import Task
    from agent.store.base import Backend

#: Runtime property prefix of a task's model links.
LINK_PREFIX = "models/"
#: A zip member's time, fixed so that the same folder zips to the same bytes (and blob).
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class Framework:
    """ClearML's framework names, as stored on a model."""

    tensorflow = "TensorFlow"
    tensorflowjs = "TensorFlow_js"
    tensorflowlite = "TensorFlow_Lite"
    pytorch = "PyTorch"
    torchscript = "TorchScript"
    caffe = "Caffe"
    caffe2 = "Caffe2"
    onnx = "ONNX"
    keras = "Keras"
    mknet = "MXNet"
    cntk = "CNTK"
    torch = "Torch"
    darknet = "Darknet"
    paddlepaddle = "PaddlePaddle"
    scikitlearn = "ScikitLearn"
    xgboost = "XGBoost"
    lightgbm = "LightGBM"
    parquet = "Parquet"
    megengine = "MegEngine"
    catboost = "CatBoost"
    tensorrt = "TensorRT"
    openvino = "OpenVINO"
    joblib = "Joblib"
    pickle = "Pickle"


class ModelList(list):
    """A task's input or output models: a list (``[-1]`` is the last linked), which a
    name also indexes (``task.models["output"]["best"]``)."""

    def __init__(self, models: Iterable[tuple[str, BaseModel]] = ()):
        pairs = list(models)
        super().__init__(m for _, m in pairs)
        self._by_name = {name: m for name, m in pairs}

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            if key in self._by_name:
                return self._by_name[key]
            for model in self:
                if model.name == key:
                    return model
            raise KeyError(f"no model named {key!r}; the task has {sorted(self._by_name)}")
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        """The names the task gave its models."""
        return list(self._by_name)


class BaseModel:
    """What every model offers: its record, and its weights as local files."""

    def __init__(self, record: ModelRecord, backend: Backend | None = None):
        self._record = record
        self._backend_obj = backend

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.name!r} framework={self.framework!r}>"

    # -- record -------------------------------------------------------------------
    @property
    def _backend(self) -> Backend:
        if self._backend_obj is None:
            from agent.store.factory import get_backend

            self._backend_obj = get_backend()
        return self._backend_obj

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def name(self) -> str:
        return self._record.name

    @name.setter
    def name(self, value: str) -> None:
        self._update(name=str(value))

    @property
    def project(self) -> str:
        return self._record.project

    @property
    def framework(self) -> str:
        return self._record.framework

    @property
    def task(self) -> str | None:
        """The id of the task that made the model (None for an imported one)."""
        return self._record.task

    @property
    def tags(self) -> list[str]:
        return list(self._record.tags)

    @tags.setter
    def tags(self, value: Sequence[str]) -> None:
        self._update(tags=[str(t) for t in value])

    @property
    def comment(self) -> str:
        return self._record.comment

    @comment.setter
    def comment(self, value: str) -> None:
        self._update(comment=str(value))

    @property
    def labels(self) -> dict[str, int]:
        """Class names to ids (ClearML's label enumeration)."""
        return dict(self._record.labels)

    @property
    def config_text(self) -> str:
        return self._record.design

    @property
    def config_dict(self) -> dict[str, Any]:
        """The configuration as a dict (it was given as one, or is JSON text); else {}."""
        try:
            value = json.loads(self._record.design) if self._record.design else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def url(self) -> str:
        """Where the weights are (``file://``, ``s3://``, the server's URL); "" before any."""
        return self._record.uri

    @property
    def sha256(self) -> str:
        return self._record.sha256

    @property
    def size(self) -> int:
        return self._record.size

    @property
    def published(self) -> bool:
        return self._record.published

    @property
    def iteration(self) -> int | None:
        return self._record.iteration

    @property
    def is_package(self) -> bool:
        return self._record.package

    @property
    def data(self) -> ModelRecord:
        """The model's record, as last read."""
        return self._record

    def reload(self) -> BaseModel:
        """Read the record again (another process may have changed it)."""
        self._record = self._backend.get_model(self.id)
        return self

    def _update(self, **fields: Any) -> None:
        self._record = self._backend.update_model(self.id, **fields)

    def publish(self) -> None:
        """Mark the model published (``Model.query_models(only_published=True)``)."""
        self._update(published=True)

    def archive(self) -> None:
        self._update(archived=True)

    def unarchive(self) -> None:
        self._update(archived=False)

    def set_metadata(self, key: str, value: Any, v_type: str | None = None) -> bool:
        """Set one metadata entry (ClearML keeps value and type as text)."""
        metadata = dict(self._record.metadata)
        kind = v_type or type(value).__name__
        metadata[str(key)] = {"key": str(key), "value": str(value), "type": kind}
        self._update(metadata=metadata)
        return True

    def get_metadata(self, key: str) -> str | None:
        entry = self._record.metadata.get(key)
        return entry.get("value") if isinstance(entry, dict) else entry

    def get_all_metadata(self) -> dict[str, dict[str, str]]:
        return dict(self._record.metadata)

    # -- weights ------------------------------------------------------------------
    def get_weights(
        self,
        raise_on_error: bool = False,
        force_download: bool = False,
        extract_archive: bool = False,
    ) -> str | None:
        """A local path to the weights file (a package: its zip; see
        :meth:`get_weights_package`), verified against its sha256.

        Returns None when the model has no weights, or on an error unless
        ``raise_on_error``.
        """
        try:
            return str(self._local_weights(extract_archive and self.is_package))
        except AgentError:
            if raise_on_error:
                raise
            return None

    def get_weights_package(
        self,
        return_path: bool = False,
        raise_on_error: bool = False,
        force_download: bool = False,
        extract_archive: bool = True,
    ) -> str | list[str] | None:
        """The files of a package model, extracted: the folder (``return_path``) or the
        list of file paths. None for a model that is not a package."""
        if not self.is_package:
            if raise_on_error:
                raise InvalidInput(f"model {self.name!r} ({self.id}) is not a package")
            return None
        try:
            folder = self._local_weights(extract=True)
        except AgentError:
            if raise_on_error:
                raise
            return None
        if return_path:
            return str(folder)
        return sorted(str(p) for p in folder.rglob("*") if p.is_file())

    def get_local_copy(
        self,
        extract_archive: bool | None = None,
        raise_on_error: bool = False,
        force_download: bool = False,
    ) -> str | None:
        """The weights file, or a package's extracted folder (``extract_archive`` default)."""
        extract = self.is_package if extract_archive is None else extract_archive
        try:
            return str(self._local_weights(extract and self.is_package))
        except AgentError:
            if raise_on_error:
                raise
            return None

    def _local_weights(self, extract: bool) -> Path:
        record = self._record
        if not record.uri:
            raise NotFound(f"model {record.name!r} ({record.id}) has no weights yet")
        what = f"model {record.name!r} ({record.id}) file {record.filename!r}"
        if not record.sha256:  # a URL registered as is (import_model of a remote URL)
            from agent.files.storage_manager import StorageManager

            return Path(StorageManager.get_local_copy(record.uri))
        blob = blobs.blob_path(record.uri, record.sha256, record.size, what)
        folder = agent_home() / "cache" / "models" / record.sha256
        if extract:
            return _extracted(blob, folder / "package", what)
        target = folder / (record.filename or "weights")
        if not target.is_file() or target.stat().st_size != record.size:
            blobs.link_or_copy(blob, target)
        return target


class Model(BaseModel):
    """A registered model, by id (ClearML's ``Model``)."""

    def __init__(self, model_id: str):
        from agent.store.factory import get_backend

        backend = get_backend()
        try:
            record = backend.get_model(model_id)
        except NotFound as exc:
            raise NotFound(f"no model with id {model_id!r} (see `agent models`)") from exc
        super().__init__(record, backend)

    @classmethod
    def _wrap(cls, record: ModelRecord, backend: Backend) -> Model:
        model = cls.__new__(cls)
        BaseModel.__init__(model, record, backend)
        return model

    @classmethod
    def query_models(
        cls,
        project_name: str | None = None,
        model_name: str | None = None,
        tags: Sequence[str] | None = None,
        only_published: bool = False,
        include_archived: bool = False,
        max_results: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> list[Model]:
        """Registered models, the last updated first (ClearML's filters).

        Args:
            project_name: only this project's models.
            model_name: only models of this name.
            tags: ClearML's tag filter: any of them (``"-tag"`` excludes), or all of
                them after ``"__$all"``; ``"__$not"`` negates the next tag.
            only_published / include_archived: as named.
            max_results: at most this many.
            metadata: {key: value} entries every model returned has.
        """
        from agent.store.factory import get_backend

        backend = get_backend()
        late = bool(tags or metadata)
        records = backend.query_models(
            project=project_name,
            name=model_name,
            only_published=only_published,
            include_archived=include_archived,
            limit=None if late else max_results,
        )
        kept = [
            r
            for r in records
            if tags_match(tags, r.tags)
            and all(_metadata_value(r, k) == str(v) for k, v in (metadata or {}).items())
        ]
        if max_results is not None:
            kept = kept[: max(0, max_results)]
        return [cls._wrap(r, backend) for r in kept]

    @classmethod
    def remove(
        cls, model: BaseModel | str, delete_weights_file: bool = True, force: bool = False, **_: Any
    ) -> bool:
        """Forget a model. Its blob stays: blobs are shared by content (another model or
        dataset may hold the same bytes)."""
        from agent.store.factory import get_backend

        get_backend().delete_model(model.id if isinstance(model, BaseModel) else str(model))
        return True


class InputModel(Model):
    """A model a task uses: by id, or the newest of a name/project/tags."""

    def __init__(
        self,
        model_id: str | None = None,
        name: str | None = None,
        project: str | None = None,
        tags: Sequence[str] | None = None,
        only_published: bool = False,
    ):
        if model_id is None:
            found = Model.query_models(project, name, tags, only_published, max_results=1)
            if not found:
                raise NotFound(
                    f"no model matches name={name!r} project={project!r} tags={tags!r} "
                    "(see `agent models`)"
                )
            model_id = found[0].id
        super().__init__(model_id)

    @classmethod
    def import_model(
        cls,
        weights_url: str,
        config_text: str | None = None,
        config_dict: dict[str, Any] | None = None,
        label_enumeration: dict[str, int] | None = None,
        name: str | None = None,
        project: str | None = None,
        tags: Sequence[str] | None = None,
        comment: str | None = None,
        is_package: bool = False,
        create_as_published: bool = False,
        framework: str | None = None,
    ) -> InputModel:
        """Register existing weights. A local file is stored (once, by content) in the
        default file storage; a remote URL is recorded as it is."""
        from agent.store.factory import get_backend

        backend = get_backend()
        record = ModelRecord(
            name=name or Path(weights_url).stem,
            project=project or "",
            framework=str(framework or ""),
            tags=list(tags or []),
            comment=comment or "",
            design=_design(config_text, config_dict),
            labels=dict(label_enumeration or {}),
            published=create_as_published,
            package=is_package,
        )
        local = Path(weights_url[7:] if weights_url.startswith("file://") else weights_url)
        if local.is_file():
            stored = blobs.put_blob(default_file_store(), local)
            record.uri, record.sha256, record.size = stored.uri, stored.sha256, stored.size
            record.filename = local.name
        else:
            record.uri, record.filename = weights_url, Path(weights_url).name
        return cls._wrap(backend.create_model(record), backend)  # type: ignore[return-value]

    def connect(self, task: Task, name: str | None = None, **_: Any) -> None:
        """Record this model as an input of ``task`` (under ``name``, default its own)."""
        link_model(task._backend, task.id, "input", name or self.name or self.id, self.id)


class OutputModel(BaseModel):
    """A model a task makes (ClearML's ``OutputModel``): registered at once, its weights
    set by :meth:`update_weights` / :meth:`update_weights_package`."""

    def __init__(
        self,
        task: Task | None = None,
        config_text: str | None = None,
        config_dict: dict[str, Any] | None = None,
        label_enumeration: dict[str, int] | None = None,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        comment: str | None = None,
        framework: str | None = None,
        base_model_id: str | None = None,
    ):
        from agent.sdk.task import Task

        task = task or Task.current_task()
        self._task = task
        self._upload_uri: str | None = None
        if base_model_id is not None:  # wrap a registered model (connect() links it)
            backend = task._backend if task is not None else None
            wrapped = Model(base_model_id)
            super().__init__(wrapped.data, backend or wrapped._backend)
            return
        if task is None:
            raise InvalidInput("OutputModel needs a task: call Task.init() first, or pass task=...")
        record = ModelRecord(
            name=name or task.name,
            project=task.project,
            framework=str(framework or ""),
            task=task.id,
            tags=list(tags or []),
            comment=comment or "",
            design=_design(config_text, config_dict),
            labels=dict(label_enumeration or {}),
        )
        super().__init__(task._backend.create_model(record), task._backend)
        link_model(task._backend, task.id, "output", record.name, record.id)

    def connect(self, task: Task, name: str | None = None, **_: Any) -> None:
        """Record this model as an output of ``task`` under ``name`` (a pipeline's
        ``monitor_models`` finds it by that name)."""
        self._task = task
        link_model(task._backend, task.id, "output", name or self.name or self.id, self.id)

    def set_upload_destination(self, uri: str) -> None:
        """Where weights go (a directory, ``s3://...``, the server); default: the task's."""
        self._upload_uri = uri

    def update_design(
        self, config_text: str | None = None, config_dict: dict[str, Any] | None = None
    ) -> bool:
        self._update(design=_design(config_text, config_dict))
        return True

    def update_labels(self, labels: dict[str, int]) -> None:
        self._update(labels=dict(labels))

    def update_weights(
        self,
        weights_filename: str | os.PathLike[str] | None = None,
        upload_uri: str | None = None,
        target_filename: str | None = None,
        auto_delete_file: bool = True,
        register_uri: str | None = None,
        iteration: int | None = None,
        update_comment: bool = True,
        is_package: bool = False,
        async_enable: bool = True,
    ) -> str:
        """Store a weights file (once, by content) and make it this model's weights.

        As in ClearML, ``auto_delete_file`` (default True) deletes the local file once it
        is stored; ``register_uri`` records a URL as it is, without uploading.

        Returns:
            The weights' URI.
        """
        if register_uri is not None:
            fields = {"uri": register_uri, "sha256": "", "size": 0, "package": is_package}
            self._update(filename=Path(register_uri).name, iteration=iteration, **fields)
            return register_uri
        if weights_filename is None:
            raise InvalidInput("update_weights needs weights_filename (or register_uri)")
        path = Path(weights_filename)
        stored = blobs.put_blob(self._store(upload_uri), path)
        self._update(
            uri=stored.uri,
            sha256=stored.sha256,
            size=stored.size,
            filename=target_filename or path.name,
            package=is_package,
            iteration=iteration,
        )
        if auto_delete_file:
            with contextlib.suppress(OSError):
                path.unlink()
        return stored.uri

    def update_weights_package(
        self,
        weights_filenames: Sequence[str | os.PathLike[str]] | None = None,
        weights_path: str | os.PathLike[str] | None = None,
        upload_uri: str | None = None,
        target_filename: str | None = None,
        auto_delete_file: bool = True,
        iteration: int | None = None,
        async_enable: bool = True,
    ) -> str:
        """Store a folder (``weights_path``) or a list of files as one zipped package."""
        if weights_path is not None:
            root = Path(weights_path)
            if not root.is_dir():
                raise InvalidInput(f"weights_path {str(root)!r} is not a directory")
            files = [(p, p.relative_to(root).as_posix()) for p in root.rglob("*") if p.is_file()]
            default_name = root.name
        elif weights_filenames:
            files = [(Path(f), Path(f).name) for f in weights_filenames]
            default_name = self.name or "weights"
        else:
            raise InvalidInput("update_weights_package needs weights_path or weights_filenames")
        with tempfile.TemporaryDirectory(prefix="agent-model-") as tmp:
            archive = Path(tmp) / f"{target_filename or default_name}.zip"
            _zip(files, archive)
            uri = self.update_weights(
                archive, upload_uri, archive.name, auto_delete_file=False,
                iteration=iteration, is_package=True,
            )  # fmt: skip
        if auto_delete_file:
            for path, _ in files:
                with contextlib.suppress(OSError):
                    path.unlink()
        return uri

    def _store(self, upload_uri: str | None) -> FileStore:
        uri = upload_uri or self._upload_uri
        if uri is not None:
            from agent.files.factory import store_for_url

            return store_for_url(uri, token=load_settings().api_token)
        if self._task is not None:
            return self._task._file_store()
        return default_file_store()


# -- task links -------------------------------------------------------------------------
def link_model(backend: Backend, task_id: str, kind: str, name: str, model_id: str) -> None:
    """Link model ``model_id`` to a task as its ``kind`` ("input"/"output") ``name``."""
    if kind not in ("input", "output"):
        raise InvalidInput(f"a model link is 'input' or 'output', not {kind!r}")
    backend.merge_runtime(task_id, {f"{LINK_PREFIX}{kind}/{name}": model_id})


def model_links(runtime: dict[str, Any], kind: str) -> dict[str, str]:
    """{name: model id} of a task's ``kind`` models, in the order they were linked."""
    prefix = f"{LINK_PREFIX}{kind}/"
    return {k[len(prefix) :]: str(v) for k, v in runtime.items() if k.startswith(prefix)}


def task_models(backend: Backend, runtime: dict[str, Any]) -> dict[str, ModelList]:
    """``task.models``: {"input": ModelList, "output": ModelList}."""
    out = {}
    for kind in ("input", "output"):
        links = model_links(runtime, kind)
        records = {}
        if links:
            found = backend.query_models(ids=list(set(links.values())), include_archived=True)
            records = {r.id: r for r in found}
        out[kind] = ModelList(
            (name, Model._wrap(records[mid], backend))
            for name, mid in links.items()
            if mid in records
        )
    return out


def default_file_store() -> FileStore:
    """Where weights go without a task: ``AGENT_FILES_URL``, the server, or
    ``$AGENT_HOME/files``."""
    from agent.files.factory import store_for_url

    settings = load_settings()
    url = settings.files_url or settings.api_url or str(settings.home / "files")
    return store_for_url(url, token=settings.api_token)


# -- helpers ----------------------------------------------------------------------------
def tags_match(spec: Sequence[str] | None, tags: Sequence[str]) -> bool:
    """ClearML's tag filter: by default any listed tag matches (OR); after ``"__$all"``
    every one must (AND), ``"__$or"`` goes back to OR; ``"-tag"`` and ``"__$not" tag``
    require the tag to be absent."""
    if not spec:
        return True
    have = set(tags)
    mode, negate = "or", False
    any_terms: list[bool] = []
    all_terms: list[bool] = []
    for item in spec:
        if item in ("__$all", "__$and"):
            mode = "and"
            continue
        if item == "__$or":
            mode = "or"
            continue
        if item == "__$not":
            negate = True
            continue
        absent = negate or item.startswith("-")
        tag = item[1:] if item.startswith("-") and not negate else item
        result = (tag not in have) if absent else (tag in have)
        negate = False
        if absent:
            all_terms.append(result)  # an exclusion always holds, whatever the mode
        elif mode == "and":
            all_terms.append(result)
        else:
            any_terms.append(result)
    return all(all_terms) and (any(any_terms) if any_terms else True)


def _metadata_value(record: ModelRecord, key: str) -> str | None:
    entry = record.metadata.get(key)
    return str(entry.get("value")) if isinstance(entry, dict) else entry


def _design(config_text: str | None, config_dict: dict[str, Any] | None) -> str:
    if config_dict is not None:
        return json.dumps(config_dict, indent=2, sort_keys=True, default=str)
    return config_text or ""


def _zip(files: Sequence[tuple[Path, str]], archive: Path) -> None:
    """Zip ``files`` (path, name in the zip) so that the same content gives the same bytes."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, arcname in sorted(files, key=lambda f: f[1]):
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with open(path, "rb") as fin, zf.open(info, "w") as fout:
                while chunk := fin.read(1024 * 1024):
                    fout.write(chunk)


def _extracted(archive: Path, folder: Path, what: str) -> Path:
    done = folder.parent / f"{folder.name}.extracted"
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise InvalidInput(f"{what}: the package holds an unsafe path {member!r}")
            zf.extractall(folder)
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"{what} is not a zip package: {exc}") from exc
    done.write_text("")
    return folder
