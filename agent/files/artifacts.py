"""Artifacts: store a task's output file once, with its content hash; fetch it back.

An artifact ``name`` of task ``task_id`` lives at the key
``tasks/{task_id}/artifacts/{name}/{filename}`` of a :class:`~agent.files.base.FileStore`.
Fetching reads a local store's file in place (no copy); from S3 or the server it
downloads into a content-addressed cache, ``$AGENT_HOME/cache/artifacts/{sha256}/{filename}``,
so each blob is fetched once per machine however many steps read it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from agent.config import agent_home
from agent.core.errors import InvalidInput, NotFound
from agent.core.models import Artifact, now
from agent.files.base import (
    FileStore,
    StorageError,
    safe_name,
    sha256_file,
    source_file,
)
from agent.files.factory import open_uri

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def artifact_key(task_id: str, name: str, filename: str) -> str:
    """The storage key of an artifact file: ``tasks/{task_id}/artifacts/{name}/{filename}``.

    Raises:
        InvalidInput: one of the parts is not a single safe name.
    """
    safe_name(task_id, "task id")
    safe_name(name, "artifact name")
    safe_name(filename, "artifact file name")
    return f"tasks/{task_id}/artifacts/{name}/{filename}"


def store_artifact(
    store: FileStore,
    task_id: str,
    name: str,
    local_path: str | os.PathLike[str],
    type: str = "",
    preview: str = "",
    metadata: dict[str, Any] | None = None,
) -> Artifact:
    """Upload a file as artifact ``name`` of a task and describe it.

    Args:
        store: where the blob goes.
        task_id: the task that made the artifact.
        name: the artifact's name: one plain component (``model``, not ``a/b`` or ``../x``).
        local_path: the file to store (archive a directory first).
        type: what the artifact holds ("pickle", "numpy", "pandas", ...).
        preview: a short text shown in the UI.
        metadata: free-form JSON-able details.

    Returns:
        The artifact's metadata (uri, sha256, size, ...) for the store of records.

    Raises:
        InvalidInput: unsafe name or task id, or ``local_path`` is not a regular file.
        NotFound: ``local_path`` does not exist.
    """
    src = source_file(local_path)
    key = artifact_key(task_id, name, src.name)
    sha256 = sha256_file(src)
    size = src.stat().st_size
    uri = store.put_file(src, key)
    return Artifact(
        name=name,
        uri=uri,
        sha256=sha256,
        size=size,
        type=type,
        preview=preview,
        metadata=dict(metadata or {}),
        created=now(),
    )


def fetch_artifact(
    artifact: Artifact, dest_dir: str | os.PathLike[str] | None = None, token: str | None = None
) -> Path:
    """A local path holding the artifact's content.

    Without ``dest_dir``, a local store's file is returned in place (no copy, not
    re-hashed); a remote blob is downloaded once into the content-addressed cache and
    reused while its hash matches. With ``dest_dir``, the file is always copied or
    downloaded to ``dest_dir/{filename}``. Downloads are checked against ``artifact.sha256``.

    Args:
        artifact: the artifact's metadata (its ``uri`` says where the blob is).
        dest_dir: a directory to put the file in, instead of the cache.
        token: bearer token for a server-hosted artifact; default ``AGENT_API_TOKEN``.

    Raises:
        NotFound: the blob is gone from its store.
        StorageError: the download does not match the recorded sha256, or the store failed.
    """
    store, key = open_uri(artifact.uri, token=token)
    filename = PurePosixPath(key).name
    try:
        if dest_dir is not None:
            return _download(store, key, Path(dest_dir) / filename, artifact)
        in_place = store.local_path(key)
        if in_place is not None:
            return in_place
        dest = _cache_path(artifact, filename)
        if _cache_hit(dest, artifact):
            return dest
        return _download(store, key, dest, artifact)
    except NotFound as exc:
        raise NotFound(f"artifact {artifact.name!r} ({artifact.uri}) is gone: {exc}") from exc


def artifacts_cache_dir() -> Path:
    """``$AGENT_HOME/cache/artifacts``."""
    return agent_home() / "cache" / "artifacts"


def _cache_path(artifact: Artifact, filename: str) -> Path:
    if not artifact.sha256:
        # No hash to address the content by: key the entry by the URI, refreshed on each fetch.
        uri_hash = hashlib.sha256(artifact.uri.encode()).hexdigest()
        return artifacts_cache_dir() / "by-uri" / uri_hash / filename
    if not _SHA256_HEX.fullmatch(artifact.sha256):
        raise InvalidInput(
            f"artifact {artifact.name!r} has a malformed sha256 {artifact.sha256!r} "
            "(expected 64 lowercase hex digits)"
        )
    return artifacts_cache_dir() / artifact.sha256 / filename


def _cache_hit(path: Path, artifact: Artifact) -> bool:
    if not artifact.sha256 or not path.is_file():
        return False
    if artifact.size and path.stat().st_size != artifact.size:
        return False
    return sha256_file(path) == artifact.sha256


def _download(store: FileStore, key: str, dest: Path, artifact: Artifact) -> Path:
    store.get_file(key, dest)
    if artifact.sha256:
        actual = sha256_file(dest)
        if actual != artifact.sha256:
            dest.unlink(missing_ok=True)
            raise StorageError(
                f"artifact {artifact.name!r} from {artifact.uri} is corrupt: its sha256 is "
                f"{actual}, the record says {artifact.sha256}; re-run the step that made it"
            )
    return dest
