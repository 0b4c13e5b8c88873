"""Artifacts of a task: upload Python objects and files, read them back.

``task.upload_artifact(name, obj)`` serializes ``obj`` (see
:mod:`agent.sdk.serialization`), stores the file with
:func:`agent.files.artifacts.store_artifact` at the task's destination
(``task.output_uri``, else ``AGENT_FILES_URL``, else the server when one is
configured, else ``$AGENT_HOME/files``) and records it on the task.
``task.artifacts[name]`` is an :class:`ArtifactView` whose ``get()`` loads it back.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.core.errors import InvalidInput
from agent.core.models import Artifact
from agent.sdk import serialization
from agent.sdk.parameters import to_stored

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from agent.core.models import Task as TaskRecord
    from agent.files.base import FileStore
    from agent.store.base import Backend

_log = logging.getLogger("agent.sdk")


class ArtifactView:
    """One stored artifact: its record, and ways to get its content back."""

    def __init__(self, artifact: Artifact):
        self.record = artifact

    def __repr__(self) -> str:
        return f"<ArtifactView {self.name!r} type={self.type!r} size={self.size} url={self.url!r}>"

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def url(self) -> str:
        """Where the blob is stored (``file://``, ``s3://`` or the server's URL)."""
        return self.record.uri

    uri = url

    @property
    def sha256(self) -> str:
        return self.record.sha256

    @property
    def hash(self) -> str:
        """ClearML's name for the content hash."""
        return self.record.sha256

    @property
    def size(self) -> int:
        return self.record.size

    @property
    def type(self) -> str:
        """One of "numpy", "pandas", "image", "json", "pickle", "file" or "custom"."""
        return self.record.type

    @property
    def preview(self) -> str:
        return self.record.preview

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata given at upload (without the SDK's own serialization details)."""
        return {k: v for k, v in self.record.metadata.items() if k != serialization.FORMAT_KEY}

    @property
    def format(self) -> str:
        """How the file is written: "npy", "parquet", "json", "pickle", "zip", ..."""
        return serialization.artifact_format(self.type, self.record.metadata, Path(self.url))

    def get_local_copy(
        self, extract_archive: bool = True, raise_on_error: bool = True
    ) -> str | None:
        """A local path with the artifact's file.

        From a local store this is the stored file itself (do not modify it); from S3
        or the server, a cached download. A zipped directory is extracted (once) and
        its directory returned, unless ``extract_archive=False``.

        Returns:
            The path, or None on an error when ``raise_on_error=False``.
        """
        try:
            path = self._fetch()
            if extract_archive and self.format == "zip":
                return _extracted(path)
            return str(path)
        except Exception:
            if raise_on_error:
                raise
            _log.warning("cannot get a local copy of artifact %r", self.name, exc_info=True)
            return None

    def get(self, deserialization_function: Callable[[bytes], Any] | None = None) -> Any:
        """The artifact's content as a Python object.

        numpy -> array (memory-mapped copy-on-write when large), pandas -> DataFrame,
        image -> a PIL image, json -> its value, pickle -> the object, file -> its local path (a zipped
        directory: the extracted directory), custom -> ``deserialization_function(bytes)``.

        Raises:
            InvalidInput: a custom-serialized artifact and no ``deserialization_function``.
        """
        fmt = self.format
        if deserialization_function is None and fmt == "custom":
            raise InvalidInput(
                f"artifact {self.name!r} was stored with a custom serialization_function: "
                "pass the matching deserialization_function to get()"
            )
        path = self._fetch()
        if deserialization_function is not None:
            return deserialization_function(path.read_bytes())
        if fmt == "file":
            return str(path)
        if fmt == "zip":
            return _extracted(path)
        return serialization.load(path, fmt, in_place=True)

    def _fetch(self) -> Path:
        from agent.files.artifacts import fetch_artifact

        return fetch_artifact(self.record)


def _frame_digest(frame: Any) -> str:
    """A hash of a DataFrame's content, index and columns (cheap next to an upload)."""
    import hashlib

    import pandas as pd

    digest = hashlib.sha256()
    digest.update(repr(list(frame.columns)).encode())
    digest.update(repr(list(frame.dtypes.astype(str))).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=True).values.tobytes())
    return digest.hexdigest()


def _extracted(archive: Path) -> str:
    from agent.files.storage_manager import StorageManager

    return StorageManager.get_local_copy(str(archive), extract_archive=True)


class ArtifactsMixin:
    """``upload_artifact`` and ``artifacts`` of :class:`agent.sdk.task.Task`."""

    # Provided by Task.
    id: str
    data: TaskRecord
    _backend: Backend
    _uploader: ThreadPoolExecutor | None
    _pending: list[Future]

    def upload_artifact(
        self,
        name: str,
        artifact_object: Any,
        metadata: dict[str, Any] | None = None,
        delete_after_upload: bool = False,
        auto_pickle: bool = True,
        preview: Any = None,
        wait_on_upload: bool = True,
        extension_name: str | None = None,
        serialization_function: Callable[[Any], bytes] | None = None,
    ) -> ArtifactView | bool:
        """Store an object or a file as artifact ``name`` of this task.

        Args:
            name: a plain name (no ``/``); uploading the same name again replaces it.
            artifact_object: a numpy array, a pandas DataFrame, a PIL image (PNG), a JSON
                value, a path to a file or directory (zipped), a wildcard
                (``"data/*.jpg"``) or a list of file paths (one zip of the files), or any
                picklable object.
            metadata: JSON-able details kept with the artifact.
            delete_after_upload: remove the local file (a path ``artifact_object``) once stored.
            auto_pickle: pickle objects that have no better format; False raises instead.
            preview: text shown in the UI (default: a short description of the object).
            wait_on_upload: False serializes now and uploads in the background;
                :meth:`wait_for_uploads` (and ``close()``) wait for it.
            extension_name: the format: ".parquet"/".csv"/".csv.gz"/".pkl" for
                DataFrames, ".npy"/".pkl" for arrays, ".json"/".pkl" for other objects,
                or the file extension of a ``serialization_function``'s output.
            serialization_function: ``obj -> bytes``; read back with
                ``get(deserialization_function=...)``.

        Returns:
            The stored artifact's :class:`ArtifactView` (truthy, as ClearML's True), or
            True when the upload runs in the background.
        """
        from agent.files.base import safe_name

        safe_name(name, "artifact name")
        workdir = Path(tempfile.mkdtemp(prefix="agent-artifact-"))
        try:
            item = serialization.serialize(
                artifact_object, name, workdir, serialization_function, extension_name
            )
            if not auto_pickle and item.type == "pickle":
                raise InvalidInput(
                    f"artifact {name!r}: a {type(artifact_object).__name__} would be pickled "
                    "but auto_pickle=False; pass a serialization_function or a file path"
                )
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        meta = {**to_stored(dict(metadata or {})), serialization.FORMAT_KEY: item.format}
        shown = serialization.clip(str(preview)) if preview is not None else item.preview
        source = item.path if delete_after_upload and item.format["format"] == "file" else None

        def upload() -> ArtifactView:
            try:
                return self._store_artifact(name, item, meta, shown)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
                if source is not None:
                    source.unlink(missing_ok=True)

        if wait_on_upload:
            return upload()
        self._pending.append(self._uploads().submit(upload))
        return True

    def _store_artifact(
        self, name: str, item: serialization.Serialized, meta: dict[str, Any], preview: str
    ) -> ArtifactView:
        from agent.files.artifacts import store_artifact

        artifact = store_artifact(
            self._file_store(), self.id, name, item.path, item.type, preview, meta
        )
        return ArtifactView(self._backend.add_artifact(self.id, artifact))

    def _file_store(self) -> FileStore:
        from agent.config import load_settings
        from agent.files.factory import store_for_url

        settings = load_settings()
        url = (
            self.data.output_uri
            or settings.files_url
            or settings.api_url
            or str(settings.home / "files")
        )
        return store_for_url(url, token=settings.api_token)

    def _uploads(self) -> ThreadPoolExecutor:
        if self._uploader is None:
            from concurrent.futures import ThreadPoolExecutor

            self._uploader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-upload")
        return self._uploader

    def wait_for_uploads(self, timeout: float | None = None, raise_on_error: bool = True) -> None:
        """Wait for background uploads (``wait_on_upload=False``) to finish.

        Raises:
            Exception: the first failed upload's error, when ``raise_on_error``.
        """
        pending, self._pending = self._pending, []
        first_error: BaseException | None = None
        for future in pending:
            error = future.exception(timeout=timeout)
            if error is not None:
                _log.warning("artifact upload of task %s failed: %s", self.id, error)
                first_error = first_error or error
        if first_error is not None and raise_on_error:
            raise first_error

    # -- registered (watched) DataFrames -----------------------------------------------
    def register_artifact(
        self,
        name: str,
        artifact: Any,
        metadata: dict[str, Any] | None = None,
        uniqueness_columns: Any = True,
    ) -> None:
        """Watch a pandas DataFrame: it is uploaded as artifact ``name`` now, and again
        whenever it changed, at :meth:`flush` and when the task closes (ClearML's
        ``register_artifact``).

        Raises:
            TypeError: ``artifact`` is not a pandas DataFrame.
        """
        if not serialization._is_instance(artifact, "pandas", "DataFrame"):
            raise TypeError(
                f"register_artifact watches pandas DataFrames, not {type(artifact).__name__}: "
                "use upload_artifact for anything else"
            )
        from agent.files.base import safe_name

        safe_name(name, "artifact name")
        registered = self.__dict__.setdefault("_registered", {})
        registered[name] = [artifact, dict(metadata or {}), None]
        self._upload_registered(only=name)

    def unregister_artifact(self, name: str) -> None:
        """Stop watching a registered DataFrame (what was uploaded stays)."""
        self.__dict__.setdefault("_registered", {}).pop(name, None)

    def get_registered_artifacts(self) -> dict[str, Any]:
        """``{name: DataFrame}`` of the registered artifacts."""
        return {name: entry[0] for name, entry in self.__dict__.get("_registered", {}).items()}

    def _upload_registered(self, only: str | None = None) -> None:
        """Upload the registered DataFrames that changed since their last upload."""
        for name, entry in list(self.__dict__.get("_registered", {}).items()):
            if only is not None and name != only:
                continue
            frame, metadata, last = entry
            digest = _frame_digest(frame)
            if digest != last:
                self.upload_artifact(name, frame, metadata=metadata)
                entry[2] = digest

    @property
    def artifacts(self) -> dict[str, ArtifactView]:
        """This task's stored artifacts by name (read from the store on each access)."""
        return {n: ArtifactView(a) for n, a in self._backend.get_artifacts(self.id).items()}
