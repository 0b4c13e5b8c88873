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
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse

from agent.core.errors import AgentError
from agent.files.base import FILES_API_PATH
from agent.files.local import LocalFileStore

_OCTET_STREAM = "application/octet-stream"


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

    @router.get("")
    def list_files(prefix: str = "") -> dict[str, Any]:
        """The files whose keys start with ``prefix`` (all without one), sorted by key."""
        with _http_errors(store.root):
            found = store.list_files(prefix)
        return {"files": [{"key": f.key, "size": f.size} for f in found]}

    @router.put("/{key:path}")
    async def put_file(key: str, request: Request) -> dict[str, Any]:
        """Store the raw request body at ``key``; answers its size and sha256."""
        digest = hashlib.sha256()
        size = 0
        with _http_errors(store.root), store.writer(key) as fh:
            async for chunk in request.stream():
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        return {"key": key, "size": size, "sha256": digest.hexdigest()}

    @router.get("/{key:path}", response_class=FileResponse)
    def get_file(key: str) -> FileResponse:
        """The blob at ``key``, streamed."""
        with _http_errors(store.root):
            return FileResponse(store.file_for(key), media_type=_OCTET_STREAM)

    @router.head("/{key:path}")
    def head_file(key: str) -> Response:
        """200 with the blob's length, or 404."""
        with _http_errors(store.root):
            size = store.file_for(key).stat().st_size
        return Response(headers={"content-length": str(size)}, media_type=_OCTET_STREAM)

    @router.delete("/{key:path}", status_code=204)
    def delete_file(key: str) -> Response:
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
