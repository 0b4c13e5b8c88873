"""Artifact file storage: local dir, S3, or the server; content hashes; StorageManager.

``S3FileStore`` (boto3) and the FastAPI router live in ``agent.files.s3`` and
``agent.files.server_routes``; they are not imported here, to keep ``import agent``
light.
"""

from agent.files.artifacts import artifact_key, fetch_artifact, store_artifact
from agent.files.base import (
    FileStore,
    StorageError,
    open_uri,
    safe_key,
    safe_name,
    sha256_file,
    store_for_url,
)
from agent.files.local import LocalFileStore
from agent.files.server import ServerFileStore
from agent.files.storage_manager import StorageManager

__all__ = [
    "FileStore",
    "LocalFileStore",
    "ServerFileStore",
    "StorageError",
    "StorageManager",
    "artifact_key",
    "fetch_artifact",
    "open_uri",
    "safe_key",
    "safe_name",
    "sha256_file",
    "store_artifact",
    "store_for_url",
]
