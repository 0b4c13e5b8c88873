"""Whole folders for StorageManager: upload a local tree, list a remote prefix, download it.

A folder URL is a local folder (a path or ``file://``), ``s3://bucket/prefix`` or a file
URL of an agent server (``{api_url}/api/v1/files/prefix``). As in ClearML, S3 and server
prefixes are plain string prefixes (``s3://b/data`` also finds ``s3://b/data2/x``; end
it with ``/`` for one folder) and their files are named by their key in the bucket (or
on the server); a local folder's files are named by their path inside it. A download
puts each file at ``{local folder}/{name}``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from agent.core.errors import AgentError, Conflict, InvalidInput, NotFound
from agent.files.base import (
    FILES_API_PATH,
    FileStore,
    StorageError,
    StoredFile,
    file_url_to_path,
    is_local_url,
    safe_key,
    safe_prefix,
)
from agent.files.progress import Progress

_log = logging.getLogger(__name__)

#: Files moved at once when the caller does not say (transfers wait on the network).
DEFAULT_WORKERS = 8

#: Failures named in the error of a folder transfer; the rest are counted.
SHOWN_FAILURES = 3


@dataclass(frozen=True)
class RemoteFolder:
    """Where a folder URL points: the store, the key prefix in it, and its kind."""

    url: str
    store: FileStore
    prefix: str
    kind: str  # "local", "s3" or "server"

    def key_for(self, relative: str) -> str:
        """The key a file at ``relative`` inside the folder is stored under."""
        if not self.prefix:
            return relative
        return f"{self.prefix.rstrip('/')}/{relative}"

    def full_url(self, key: str) -> str:
        """The URL of the file at ``key``, in the form the folder URL was given."""
        if self.kind == "local":
            return f"{self.url.rstrip('/')}/{key}"
        if self.kind == "s3":
            return f"{self.store.url}/{key}"
        return self.store.uri(key)

    def relative(self, key: str) -> str:
        """``key`` below the folder URL: ``sub/f`` of ``data/sub/f`` for ``data`` or ``data/``
        (but ``data2/f`` for ``data``, whose prefix only matched part of a name)."""
        rest = key[len(self.prefix) :]
        if not self.prefix or self.prefix.endswith("/") or rest.startswith("/"):
            return rest.lstrip("/")
        return key[self.prefix.rfind("/") + 1 :]

    def list_files(self, action: str = "list") -> list[StoredFile]:
        """The folder's files, sorted by key; ``action`` is for the error message.

        Raises:
            NotFound: a local folder that does not exist, or a missing bucket.
        """
        if self.kind == "local":
            root = file_url_to_path(self.url)
            if not root.is_dir():
                problem = "it is a file (use get_local_copy)" if root.exists() else "no such folder"
                raise NotFound(f"cannot {action} {self.url!r}: {problem}")
        return self.store.list_files(self.prefix)


def remote_folder(url: str) -> RemoteFolder:
    """The store and prefix a folder URL names.

    Raises:
        InvalidInput: a scheme no store handles, a web URL that is not an agent
            server's file URL, or a prefix that leads outside its store.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "s3":
        from agent.files.s3 import S3FileStore, split_s3_url

        bucket, prefix = split_s3_url(url)
        return RemoteFolder(url, S3FileStore(f"s3://{bucket}"), safe_prefix(prefix), "s3")
    if scheme in ("http", "https"):
        return _server_folder(url)
    if is_local_url(url):
        from agent.files.local import LocalFileStore

        return RemoteFolder(url, LocalFileStore(file_url_to_path(url)), "", "local")
    raise InvalidInput(
        f"cannot use {url!r} as a folder: scheme {scheme!r} is not supported "
        f"(use a local folder, file://, s3://bucket/prefix or the agent server's "
        f"{FILES_API_PATH}/ URLs)"
    )


def _server_folder(url: str) -> RemoteFolder:
    from agent.files.server import ServerFileStore, is_our_server_url

    base, sep, rest = url.partition(FILES_API_PATH)
    if not sep or (rest and not rest.startswith("/")):
        raise InvalidInput(
            f"cannot use {url!r} as a folder: over http(s) only the agent server's "
            f"{FILES_API_PATH}/ URLs hold folders (a plain web server cannot list its files)"
        )
    # Our token goes to the configured server only, as for get_local_copy.
    token = None if is_our_server_url(f"{base}{FILES_API_PATH}/") else ""
    prefix = safe_prefix(unquote(rest.removeprefix("/")))
    return RemoteFolder(url, ServerFileStore(base, token=token), prefix, "server")


def matches(pattern: str | None, *candidates: str) -> bool:
    """Whether ``pattern`` (fnmatch: ``*`` crosses ``/``) matches any candidate; None: all."""
    return pattern is None or any(fnmatch.fnmatch(c, pattern) for c in candidates)


def upload_folder(
    local_folder: str | os.PathLike[str],
    remote_url: str,
    match_wildcard: str | None = None,
    retries: int | None = None,
) -> str:
    """Upload the files of ``local_folder`` (recursively) below ``remote_url``.

    See :meth:`agent.files.storage_manager.StorageManager.upload_folder`.
    """
    src = Path(local_folder).expanduser()
    if not src.is_dir():
        problem = "it is a file (use upload_file)" if src.exists() else "no such local folder"
        raise NotFound(f"cannot upload folder {str(local_folder)!r}: {problem}")
    folder = remote_folder(remote_url)
    files = []
    for path in sorted(src.rglob("*")):
        relative = path.relative_to(src).as_posix()
        if path.is_file() and matches(match_wildcard, relative, path.name):
            files.append((path, relative))
    sizes = {relative: path.stat().st_size for path, relative in files}
    progress = Progress(
        f"uploading to {remote_url}", len(files), sum(sizes.values()), len(files) > 1
    )

    def upload_one(item: tuple[Path, str]) -> None:
        path, relative = item
        _attempts(lambda: folder.store.put_file(path, folder.key_for(relative)), retries)
        progress.advance(sizes[relative])

    failures = _run_all(upload_one, files, [rel for _, rel in files], DEFAULT_WORKERS)
    if failures:
        raise _failed(f"uploading {len(failures)} of {len(files)} files from {src}", failures)
    return remote_url


def list_folder(
    remote_url: str, return_full_path: bool = False, with_metadata: bool = False
) -> list[str] | list[dict[str, Any]]:
    """The files under ``remote_url``: names, or ``{"name", "size"}`` dicts.

    See :meth:`agent.files.storage_manager.StorageManager.list`.
    """
    folder = remote_folder(remote_url)
    found = folder.list_files()
    names = [folder.full_url(f.key) if return_full_path else f.key for f in found]
    if with_metadata:
        return [{"name": name, "size": f.size} for name, f in zip(names, found, strict=True)]
    return names


def download_folder(
    remote_url: str,
    target: Path,
    match_wildcard: str | None = None,
    overwrite: bool = False,
    skip_zero_size_check: bool = False,
    silence_errors: bool = False,
    max_workers: int | None = None,
) -> Path:
    """Download the files under ``remote_url`` to ``target/{name}``; returns ``target``.

    See :meth:`agent.files.storage_manager.StorageManager.download_folder`.
    """
    folder = remote_folder(remote_url)
    try:
        target.mkdir(parents=True, exist_ok=True)
        found = folder.list_files("download folder")
        if not found:
            raise NotFound(f"cannot download folder {remote_url!r}: nothing is stored under it")
    except NotFound:
        if silence_errors:
            return target
        raise
    except OSError as exc:
        raise StorageError(f"cannot create local folder {str(target)!r}: {exc.strerror}") from exc
    chosen = [
        f
        for f in found
        if matches(
            match_wildcard,
            folder.relative(f.key),
            PurePosixPath(f.key).name,
            folder.full_url(f.key),
        )
    ]
    if not chosen:
        _log.warning("no file under %s matches %r: nothing downloaded", remote_url, match_wildcard)
        return target
    empty = [f.key for f in chosen if f.size == 0]
    if empty and not skip_zero_size_check:
        # ClearML's rule: a zero-size file counts as a broken download unless allowed.
        _log.warning(
            "left out %d empty file(s) under %s (%s); pass skip_zero_size_check=True to "
            "download them",
            len(empty),
            remote_url,
            ", ".join(empty[:SHOWN_FAILURES]),
        )
        chosen = [f for f in chosen if f.size != 0]
    progress = Progress(
        f"downloading {remote_url}", len(chosen), sum(f.size for f in chosen), len(chosen) > 1
    )

    def download_one(entry: StoredFile) -> None:
        dest = _inside(target, entry.key)
        if overwrite or not dest.is_file() or dest.stat().st_size == 0:
            got = folder.store.get_file(entry.key, dest)
            if got.stat().st_size != entry.size:
                raise StorageError(
                    f"download of {folder.full_url(entry.key)} was cut short: got "
                    f"{got.stat().st_size} of {entry.size} bytes"
                )
        progress.advance(entry.size)

    failures = _run_all(download_one, chosen, [f.key for f in chosen], max_workers)
    if failures and not silence_errors:
        raise _failed(
            f"downloading {len(failures)} of {len(chosen)} files of {remote_url}", failures
        )
    for name, exc in failures:
        _log.warning("did not download %s: %s", name, exc)
    return target


def _inside(target: Path, name: str) -> Path:
    """``target/name``, refusing names that lead outside ``target``."""
    dest = target / safe_key(name)
    if not dest.resolve().is_relative_to(target.resolve()):
        raise InvalidInput(f"refusing to download {name!r}: it leads outside {target}")
    return dest


def _attempts(call: Callable[[], object], retries: int | None) -> None:
    """``call()``, again up to ``retries`` times while the storage fails."""
    for attempt in range((retries or 0) + 1):
        try:
            call()
            return
        except StorageError as exc:
            if attempt == (retries or 0):
                raise
            _log.warning("upload failed (%s); retrying", exc)


def _run_all(
    work: Callable[[Any], None], items: Sequence[Any], names: Sequence[str], workers: int | None
) -> list[tuple[str, Exception]]:
    """Run ``work`` on every item, several at a time; the (name, error) of those that failed."""

    def guarded(index: int) -> tuple[str, Exception] | None:
        try:
            work(items[index])
        except (AgentError, OSError) as exc:
            return names[index], exc
        return None

    with ThreadPoolExecutor(max(1, workers or DEFAULT_WORKERS)) as pool:
        results = list(pool.map(guarded, range(len(items))))
    return [r for r in results if r is not None]


def _failed(what: str, failures: list[tuple[str, Exception]]) -> AgentError:
    """One error for a folder transfer: the first failures by name, the others counted."""
    shown = "; ".join(f"{name}: {exc}" for name, exc in failures[:SHOWN_FAILURES])
    more = len(failures) - SHOWN_FAILURES
    message = f"failed {what}: {shown}" + (f" (and {more} more)" if more > 0 else "")
    kinds = {type(exc) for _, exc in failures}
    kind = kinds.pop() if len(kinds) == 1 else StorageError
    return kind(message) if kind in (NotFound, InvalidInput, Conflict) else StorageError(message)
