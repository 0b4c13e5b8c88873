"""The server side of :class:`~agent.files.server.ServerFileStore`: a FastAPI router.

``make_files_router(root)`` serves a :class:`~agent.files.local.LocalFileStore` under
``/api/v1/files/{key}``: ``PUT`` (raw body, streamed to a temp file, then renamed
into place), ``GET`` (streamed), ``HEAD`` and ``DELETE``; ``GET /api/v1/files?prefix=P``
lists ``{"files": [{"key", "size"}, ...]}`` of the keys that start with ``P``. Unsafe
keys get 422 with a JSON ``detail``, missing files 404. Authentication is the app's business: pass its
dependency in ``dependencies``::

    app.include_router(make_files_router(files_dir, dependencies=[Depends(require_token)]))
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import fastapi
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel
from starlette.convertors import Convertor, register_url_convertor

from agent.core.errors import AgentError
from agent.files.base import (
    FILES_API_PATH,
    KEY_PATTERN,
    MAX_KEY_BYTES,
    MAX_KEY_PART_BYTES,
    PREFIX_PATTERN,
    StoredFile,
)
from agent.files.local import LocalFileStore

_OCTET_STREAM = "application/octet-stream"
_LIMITS = f"at most {MAX_KEY_BYTES} bytes of UTF-8, {MAX_KEY_PART_BYTES} a part"
# The patterns are for the schema only: the store checks keys itself, with clearer messages.
Key = Annotated[
    str,
    fastapi.Path(
        description=f"A relative path like 'dir/file' ({_LIMITS})",
        json_schema_extra={"pattern": KEY_PATTERN},
    ),
]
Prefix = Annotated[
    str,
    Query(
        description=f"Empty, or a key with or without a trailing '/' ({_LIMITS})",
        json_schema_extra={"pattern": PREFIX_PATTERN},
    ),
]


class FileList(BaseModel):
    files: list[StoredFile]


class StoredBlob(BaseModel):
    key: str
    size: int
    sha256: str


#: The answers a blob endpoint gives besides its success (the app adds their body).
class _AnyPath(Convertor[str]):
    """Starlette's ``path`` without its blind spot: a key holding a line break reaches the
    route (and its clear 422) instead of matching no route at all (a bare 404)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return str(value)


register_url_convertor("anypath", _AnyPath())

_NO_FILE = {404: {"description": "Nothing is stored at this key"}}
_CLASH = {409: {"description": "A file and a directory would share a path"}}
_BLOB = {200: {"content": {_OCTET_STREAM: {}}, "description": "The blob"}}


def make_files_router(root: Path, dependencies: Sequence[Any] | None = None) -> APIRouter:
    """A router serving the files under ``root`` at ``/api/v1/files/{key}``.

    Args:
        root: the directory that holds the blobs (created on the first upload).
        dependencies: FastAPI dependencies run before every endpoint (e.g. auth).

    Returns:
        An APIRouter with its ``/api/v1/files`` prefix set; mount it with
        ``app.include_router(router)``.
    """
    store = LocalFileStore(root)
    router = APIRouter(prefix=FILES_API_PATH, tags=["files"], dependencies=list(dependencies or []))

    @router.get("", response_model=None, responses={200: {"model": FileList}})
    def list_files(prefix: Prefix = "") -> dict[str, Any]:
        """The files whose keys start with ``prefix`` (all without one), sorted by key."""
        with _http_errors(store.root):
            found = store.list_files(prefix)
        return {"files": [{"key": f.key, "size": f.size} for f in found]}

    @router.put(
        "/{key:anypath}", response_model=None, responses={200: {"model": StoredBlob}, **_CLASH}
    )
    async def put_file(key: Key, request: Request) -> dict[str, Any]:
        """Store the raw request body at ``key``; answers its size and sha256."""
        digest = hashlib.sha256()
        size = 0
        with _http_errors(store.root), store.writer(key) as fh:
            async for chunk in request.stream():
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        return {"key": key, "size": size, "sha256": digest.hexdigest()}

    @router.get("/{key:anypath}", response_class=Response, responses={**_BLOB, **_NO_FILE})
    def get_file(key: Key) -> FileResponse:
        """The blob at ``key``, streamed."""
        with _http_errors(store.root):
            return FileResponse(store.file_for(key), media_type=_OCTET_STREAM)

    @router.head("/{key:anypath}", response_class=Response, responses={**_BLOB, **_NO_FILE})
    def head_file(key: Key) -> Response:
        """200 with the blob's length, or 404."""
        with _http_errors(store.root):
            size = store.file_for(key).stat().st_size
        return Response(headers={"content-length": str(size)}, media_type=_OCTET_STREAM)

    @router.delete("/{key:anypath}", status_code=204, responses=_NO_FILE)
    def delete_file(key: Key) -> Response:
        """Remove the blob at ``key``; 404 when there is none."""
        with _http_errors(store.root):
            store.file_for(key).unlink(missing_ok=True)
        return Response(status_code=204)

    return router


@contextlib.contextmanager
def _http_errors(root: Path) -> Iterator[None]:
    """Turn AgentErrors (unsafe key, missing file, clash) into HTTP errors.

    The store's directory is left out of the messages: clients need not know it.
    """
    try:
        yield
    except AgentError as exc:
        detail = str(exc).replace(str(root), "the server's files")
        raise HTTPException(exc.http_status, detail=detail) from exc
