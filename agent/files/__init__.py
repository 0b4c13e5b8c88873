"""Artifact file storage: local dir, S3, or the server; content hashes; StorageManager.

``S3FileStore`` (boto3) and the FastAPI router live in ``agent.files.s3`` and
``agent.files.server_routes``; they are not imported here, to keep ``import agent``
light.
"""

from typing import TYPE_CHECKING, Any

from agent.files.artifacts import artifact_key, fetch_artifact, store_artifact
from agent.files.base import (
    FileStore,
    StorageError,
    StoredFile,
    safe_key,
    safe_name,
    sha256_file,
)
from agent.files.factory import open_uri, store_for_url
from agent.files.local import LocalFileStore

# ServerFileStore and StorageManager import `requests` (~45 ms): loaded on first use.
_LAZY = {
    "ServerFileStore": "agent.files.server",
    "StorageManager": "agent.files.storage_manager",
}

if TYPE_CHECKING:
    from agent.files.server import ServerFileStore
    from agent.files.storage_manager import StorageManager


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.files' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "FileStore",
    "LocalFileStore",
    "ServerFileStore",
    "StorageError",
    "StorageManager",
    "StoredFile",
    "artifact_key",
    "fetch_artifact",
    "open_uri",
    "safe_key",
    "safe_name",
    "sha256_file",
    "store_artifact",
    "store_for_url",
]
