"""StorageManager: ClearML's helper to fetch any URL into a local cache, upload a file,
and move whole folders (:mod:`agent.files.folders`).

``get_local_copy`` downloads ``http(s)://`` (streamed), ``s3://`` (boto3) and the
agent server's file URLs into ``$AGENT_HOME/cache/storage/[{cache_context}/]{hash of
url}/{file name}`` and reuses them on later calls. Local files (``file://`` or a
plain path) are returned in place, as ClearML does: there is nothing to download.
Unlike ClearML, failures raise an :class:`~agent.core.errors.AgentError` that says
what went wrong instead of returning None.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from agent.config import agent_home, load_settings
from agent.core.errors import InvalidInput, NotFound
from agent.files.base import (
    CHUNK_SIZE,
    FILES_API_PATH,
    StorageError,
    atomic_writer,
    copy_file_atomic,
    file_url_to_path,
    is_local_url,
    safe_name,
)
from agent.files.factory import open_uri
from agent.files.server import is_our_server_url

#: (connect, read) timeouts in seconds of plain HTTP downloads.
HTTP_TIMEOUT = (10.0, 300.0)

#: File name used when the URL does not end in a usable one.
DEFAULT_FILE_NAME = "download"


class StorageManager:
    """Fetch remote files into a local cache, upload local files (ClearML's API)."""

    @classmethod
    def get_local_copy(
        cls,
        remote_url: str,
        cache_context: str | None = None,
        extract_archive: bool = False,
        force_download: bool = False,
    ) -> str:
        """A local path with the content of ``remote_url``.

        Args:
            remote_url: ``http(s)://...``, ``s3://bucket/key``, ``file:///path`` or a path.
            cache_context: a name to keep this download apart from others in the cache.
            extract_archive: when the file is a zip or tar archive, extract it (once)
                and return the directory instead.
            force_download: download again even when the cache has the file.

        Returns:
            The path of the cached file (or of the local file itself, or of the
            extracted directory).

        Raises:
            NotFound: nothing at ``remote_url``.
            InvalidInput: a URL scheme that is not supported, or a bad ``cache_context``.
            StorageError: the download failed.
        """
        if is_local_url(remote_url):
            local = file_url_to_path(remote_url)
            if not local.exists():
                raise NotFound(f"cannot get a local copy of {remote_url!r}: no such file")
            entry = _cache_entry(_local_cache_id(local), cache_context)
        else:
            entry = _cache_entry(remote_url, cache_context)
            local = entry / _file_name(remote_url)
            if force_download or not local.is_file():
                _download(remote_url, local)
                shutil.rmtree(_extract_dir(entry, local), ignore_errors=True)
        if extract_archive and local.is_file() and _is_archive(local):
            return str(_extract_once(local, _extract_dir(entry, local)))
        return str(local)

    @classmethod
    def get_files_server(cls) -> str:
        """The URL of the default files store (ClearML's files server), to build
        :meth:`upload_file` destinations that every node can read.

        Returns:
            ``AGENT_FILES_URL`` as configured (``s3://bucket/prefix``, a ``file://`` URL for a
            directory), the server's ``{url}/api/v1/files`` when files go to the server, or
            ``$AGENT_HOME/files`` as a ``file://`` URL without a server; never a trailing
            ``/``.
        """
        url = load_settings().default_files_url.rstrip("/")
        if is_local_url(url):
            return file_url_to_path(url).absolute().as_uri()
        if urlsplit(url).scheme.lower() in ("http", "https"):
            return url.removesuffix(FILES_API_PATH) + FILES_API_PATH
        return url

    @classmethod
    def upload_file(cls, local_file: str | os.PathLike[str], remote_url: str) -> str:
        """Upload ``local_file`` to ``remote_url`` (the full destination, file name included).

        Args:
            local_file: the file to upload.
            remote_url: ``s3://bucket/key``, the server's ``{api_url}/api/v1/files/{key}``,
                or a local path / ``file://`` URL (an existing directory gets the file's name).

        Returns:
            The URL of the uploaded file.

        Raises:
            InvalidInput: a destination that cannot take uploads (a plain web URL, ...).
            NotFound: ``local_file`` does not exist.
        """
        if is_local_url(remote_url):
            return _copy_local(Path(local_file), remote_url)
        scheme = urlsplit(remote_url).scheme.lower()
        if scheme in ("http", "https") and FILES_API_PATH + "/" not in remote_url:
            raise InvalidInput(
                f"cannot upload to {remote_url!r}: http(s) uploads go to the agent server's "
                f"{FILES_API_PATH}/ URLs only"
            )
        store, key = open_uri(remote_url)
        return store.put_file(local_file, key)

    @classmethod
    def upload_folder(
        cls,
        local_folder: str | os.PathLike[str],
        remote_url: str,
        match_wildcard: str | None = None,
        retries: int | None = None,
    ) -> str:
        """Upload the files of ``local_folder``, recursively, keeping the sub-folders.

        ``~/folder/sub/file.ext`` uploaded to ``s3://bucket/data`` becomes
        ``s3://bucket/data/sub/file.ext``. Existing remote files are replaced.

        Args:
            local_folder: the folder to upload.
            remote_url: ``s3://bucket/prefix``, the server's ``{api_url}/api/v1/files/prefix``,
                or a local folder / ``file://`` URL.
            match_wildcard: upload only files whose name or path in the folder matches
                this fnmatch pattern (``*.json``, ``sub/*``).
            retries: how many times to try a file again when the storage fails.

        Returns:
            ``remote_url``.

        Raises:
            NotFound: ``local_folder`` is not a folder.
            InvalidInput: a destination that cannot take folders (a plain web URL, ...).
            StorageError: some files failed; the error names them.
        """
        from agent.files import folders

        return folders.upload_folder(local_folder, remote_url, match_wildcard, retries)

    @classmethod
    def download_folder(
        cls,
        remote_url: str,
        local_folder: str | os.PathLike[str] | None = None,
        match_wildcard: str | None = None,
        overwrite: bool = False,
        skip_zero_size_check: bool = False,
        silence_errors: bool = False,
        max_workers: int | None = None,
    ) -> str:
        """Download the files under ``remote_url``, keeping the sub-folders.

        Each file lands at ``{local_folder}/{name}``, its name as :meth:`list` gives it:
        the key in the bucket for S3 (``s3://bucket/data/sub/f.ext`` ->
        ``{local_folder}/data/sub/f.ext``, as in ClearML), the key on the server for the
        server, the path inside the folder for a local folder.

        Args:
            remote_url: ``s3://bucket/prefix`` (a string prefix: end it with ``/`` for
                one folder), the server's ``{api_url}/api/v1/files/prefix``, or a local
                folder / ``file://`` URL.
            local_folder: where to put the files; default a folder for ``remote_url``
                in the storage cache.
            match_wildcard: download only files whose name, path below the folder or
                full URL matches this fnmatch pattern.
            overwrite: download files that exist locally (non-empty) again.
            skip_zero_size_check: download empty files too; by default they are left
                out with a warning (ClearML counts them as broken downloads).
            silence_errors: log failures instead of raising, and return the (maybe
                empty) folder when nothing is stored under ``remote_url``.
            max_workers: files downloaded at once (default 8).

        Returns:
            The local folder.

        Raises:
            NotFound: nothing is stored under ``remote_url`` (a missing local folder or
                bucket, an empty prefix).
            InvalidInput: a URL that cannot hold folders (a plain web URL, ...).
            StorageError: some files failed; the error names them.
        """
        from agent.files import folders

        target = Path(local_folder).expanduser() if local_folder else _folder_cache(remote_url)
        return str(
            folders.download_folder(
                remote_url,
                target,
                match_wildcard=match_wildcard,
                overwrite=overwrite,
                skip_zero_size_check=skip_zero_size_check,
                silence_errors=silence_errors,
                max_workers=max_workers,
            )
        )

    @classmethod
    def list(
        cls, remote_url: str, return_full_path: bool = False, with_metadata: bool = False
    ) -> list[str] | list[dict[str, Any]]:
        """The files under ``remote_url``, sorted.

        Names are keys in the bucket for ``s3://bucket/prefix`` (a string prefix, as in
        ClearML: ``s3://bucket/folder_`` lists ``folder_*/*``) and keys on the server
        for its file URLs; for a local folder they are paths inside it.

        Args:
            remote_url: ``s3://bucket/prefix``, the server's ``{api_url}/api/v1/files/prefix``,
                or a local folder / ``file://`` URL.
            return_full_path: full URLs instead of names.
            with_metadata: ``{"name": ..., "size": ...}`` dicts instead of names.

        Raises:
            NotFound: a local folder that does not exist, or a missing bucket.
            InvalidInput: a URL that cannot be listed (a plain web URL, ...).
        """
        from agent.files import folders

        return folders.list_folder(remote_url, return_full_path, with_metadata)


def _local_cache_id(path: Path) -> str:
    """Identity of a local file's cache entry: a changed file gets a fresh entry."""
    stat = path.stat()
    return f"{path.resolve().as_uri()}?size={stat.st_size}&mtime_ns={stat.st_mtime_ns}"


def storage_cache_dir() -> Path:
    """``$AGENT_HOME/cache/storage``."""
    return agent_home() / "cache" / "storage"


def _folder_cache(remote_url: str) -> Path:
    """Where :meth:`StorageManager.download_folder` puts a folder by default."""
    return _cache_entry(f"folder:{remote_url}", "folders")


def _cache_entry(url: str, cache_context: str | None) -> Path:
    base = storage_cache_dir()
    if cache_context is not None:
        base = base / safe_name(cache_context, "cache context")
    return base / hashlib.sha256(url.encode()).hexdigest()[:32]


def _file_name(url: str) -> str:
    """The URL's last path segment, when it makes a safe file name."""
    path = url.split("://", 1)[1] if url.lower().startswith("s3://") else urlsplit(url).path
    name = unquote(PurePosixPath(path).name)
    try:
        return safe_name(name, "file name")
    except InvalidInput:
        return DEFAULT_FILE_NAME


def _download(url: str, dest: Path) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "s3" or is_our_server_url(url):
        store, key = open_uri(url)
        store.get_file(key, dest)
    elif scheme in ("http", "https"):
        _http_download(url, dest)
    else:
        raise InvalidInput(
            f"cannot get a local copy of {url!r}: scheme {scheme!r} is not supported "
            "(use http(s)://, s3://, file:// or a path)"
        )


def _http_download(url: str, dest: Path) -> None:
    try:
        with requests.get(url, stream=True, timeout=HTTP_TIMEOUT) as response:
            if response.status_code == 404:
                raise NotFound(f"cannot download {url}: not found (404)")
            if not response.ok:
                raise StorageError(
                    f"cannot download {url}: the server answered {response.status_code} "
                    f"{response.reason}"
                )
            with atomic_writer(dest) as fh:
                for chunk in response.iter_content(CHUNK_SIZE):
                    fh.write(chunk)
    except requests.RequestException as exc:
        raise StorageError(f"cannot download {url}: {exc}") from exc


def _copy_local(src: Path, remote_url: str) -> str:
    if not src.is_file():
        raise NotFound(f"cannot upload {str(src)!r}: no such file")
    dest = file_url_to_path(remote_url)
    if dest.is_dir():
        dest = dest / src.name
    copy_file_atomic(src, dest)
    return dest.absolute().as_uri() if remote_url.startswith("file://") else str(dest)


def _extract_dir(entry: Path, archive: Path) -> Path:
    return entry / f"{archive.name}_extracted"


def _is_archive(path: Path) -> bool:
    return zipfile.is_zipfile(path) or tarfile.is_tarfile(path)


def _extract_once(archive: Path, target: Path) -> Path:
    """Extract ``archive`` into ``target`` unless done before; refuses members that escape."""
    if target.is_dir():
        return target
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _extract(archive, tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not target.is_dir():  # else another process extracted it meanwhile
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _extract(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                _check_member(archive, dest, member)
            zf.extractall(dest)
        return
    with tarfile.open(archive) as tf:
        try:
            tf.extractall(dest, filter="data")
        except tarfile.FilterError as exc:
            raise InvalidInput(f"refusing to extract {archive}: {exc}") from exc


def _check_member(archive: Path, dest: Path, member: str) -> None:
    target = (dest / member).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise InvalidInput(f"refusing to extract {archive}: member {member!r} leads outside")
