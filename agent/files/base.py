"""File storage for artifact blobs: local dir, S3, or the server itself.

Contract (every store passes ``tests/files/test_contract.py``):

- ``put_file(local_path, key) -> uri`` / ``put_bytes(data, key) -> uri``
- ``get_file(uri, dest_path) -> Path`` downloads (or links/copies) to dest
- ``exists(uri) -> bool``, ``delete(uri)``
- ``local_path(uri) -> Path | None``: a path readable in place (local store only),
  so large outputs load without a copy.
- ``list_files(prefix) -> list[StoredFile]``: the blobs whose keys start with ``prefix``
  (a plain string prefix, as in S3: ``"data/"`` is a folder, ``"data"`` also finds
  ``"data2/x"``), sorted by key.

Keys are relative POSIX paths; :func:`safe_key` refuses ``..``, absolute paths and
empty parts. :func:`agent.files.factory.store_for_url` picks the implementation: a
directory path or ``file://`` -> LocalFileStore, ``s3://bucket/prefix`` -> S3FileStore,
``http(s)://`` (the server) -> ServerFileStore.

Wherever the contract takes a ``uri``, a store also accepts a bare key; a URI that
belongs to another store is refused with :class:`~agent.core.errors.InvalidInput`.
:func:`agent.files.factory.open_uri` goes the other way: from any URI a store returned
to the store that can read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from agent.core.errors import AgentError, InvalidInput, NotFound

#: Path of the server's file endpoints, below its API URL.
FILES_API_PATH = "/api/v1/files"

#: Read and write files in chunks of this many bytes.
CHUNK_SIZE = 1024 * 1024


class StorageError(AgentError):
    """The storage behind a store (S3, the server, a disk) failed or cannot be reached."""

    http_status = 502


@dataclass(frozen=True)
class StoredFile:
    """One blob of a listing: its key in the store and its size in bytes."""

    key: str
    size: int


@runtime_checkable
class FileStore(Protocol):
    """Where artifact blobs live. Keys are checked with :func:`safe_key`."""

    #: The URL this store was made for (a directory, ``s3://bucket/prefix``, the API URL).
    url: str

    def uri(self, key: str) -> str:
        """The URI under which ``key`` is (or would be) stored."""

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> str:
        """Store a local file at ``key`` (replacing it whole) and return its URI."""

    def put_bytes(self, data: bytes, key: str) -> str:
        """Store ``data`` at ``key`` (replacing it whole) and return its URI."""

    def get_file(self, uri: str, dest_path: str | os.PathLike[str]) -> Path:
        """Copy the blob to ``dest_path`` (atomically) and return that path.

        Raises:
            NotFound: nothing is stored at ``uri``.
        """

    def exists(self, uri: str) -> bool:
        """Whether a blob is stored at ``uri``."""

    def delete(self, uri: str) -> None:
        """Remove the blob at ``uri``; a missing blob is not an error."""

    def local_path(self, uri: str) -> Path | None:
        """A path to read the blob in place, or None where the store is not local.

        Raises:
            NotFound: (local stores) nothing is stored at ``uri``.
        """

    def list_files(self, prefix: str = "") -> list[StoredFile]:
        """The blobs whose keys start with ``prefix`` (checked with :func:`safe_prefix`),
        sorted by key; none is an empty list, not an error."""


def safe_key(key: str) -> str:
    """Check that ``key`` is a relative POSIX path that stays inside a store.

    Args:
        key: a storage key such as ``tasks/3f2a/artifacts/model/model.pkl``.

    Returns:
        The key, unchanged.

    Raises:
        InvalidInput: the key is empty, absolute, contains a backslash or a control
            character, has an empty, ``.`` or ``..`` part, or is too long (over
            :data:`MAX_KEY_BYTES`, or a part over :data:`MAX_KEY_PART_BYTES`).
    """
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"storage key {key!r} is empty: give a relative path such as 'dir/file'")
    problem = _key_problem(key)
    if problem:
        raise InvalidInput(
            f"unsafe storage key {key!r}: {problem}; use a relative path like 'dir/file'"
        )
    return key


def safe_prefix(prefix: str) -> str:
    """Check a listing prefix: ``""``, or a key that may end in ``/`` or in part of a name.

    Raises:
        InvalidInput: the prefix would lead outside the store (``..``, absolute, ...).
    """
    if prefix:
        safe_key(prefix.removesuffix("/"))
    return prefix


#: Longest key, and longest part of one, in bytes (filesystems refuse a name over 255).
MAX_KEY_BYTES = 1024
MAX_KEY_PART_BYTES = 255

_KEY_CHAR = r"[^/\\\x00-\x1f\x7f]"  # no slash, backslash or control character
_KEY_PART = (
    rf"(?:[^/\\\x00-\x1f\x7f.]{_KEY_CHAR}*"  # a part that does not start with '.',
    rf"|\.[^/\\\x00-\x1f\x7f.]{_KEY_CHAR}*"  # or '.' then another character,
    rf"|\.\.{_KEY_CHAR}+)"  # or '..' then more: never '.' or '..' alone
)
#: :func:`safe_key`'s rules as a regular expression (for the HTTP API's schema), the
#: byte lengths aside: no regular expression counts UTF-8 bytes.
KEY_PATTERN = rf"^{_KEY_PART}(?:/{_KEY_PART})*$"
#: :func:`safe_prefix`'s rules likewise: empty, or a key with or without a trailing '/'.
PREFIX_PATTERN = rf"^(?:{_KEY_PART}(?:/{_KEY_PART})*/?)?$"


def _key_problem(key: str) -> str | None:
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid Unicode (a lone surrogate)"
    if size > MAX_KEY_BYTES:
        return f"it is {size} bytes long, over the {MAX_KEY_BYTES} a key may have"
    if key.startswith("/"):
        return "it is an absolute path"
    if "\\" in key:
        return "it contains a backslash"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        return "it contains a control character"
    for part in key.split("/"):
        if part == "":
            return "it has an empty part ('//' or a trailing '/')"
        if part in (".", ".."):
            return f"it has a '{part}' part"
        if len(part.encode("utf-8")) > MAX_KEY_PART_BYTES:
            return f"a part of it is over {MAX_KEY_PART_BYTES} bytes long ({part[:20]}...)"
    return None


def safe_name(name: str, what: str = "name") -> str:
    """Check that ``name`` is a single safe path component (no ``/`` at all).

    Args:
        name: the name to check, e.g. an artifact name or a file name.
        what: what the name is, for the error message ("artifact name").

    Raises:
        InvalidInput: ``name`` is empty, ``.``/``..``, has a ``/``, a backslash or a
            control character.
    """
    if not isinstance(name, str) or not name:
        problem: str | None = "it is empty"
    else:
        problem = _key_problem(name) or ("it contains '/'" if "/" in name else None)
    if problem:
        raise InvalidInput(f"invalid {what} {name!r}: {problem}; use a plain name such as 'model'")
    return name


def sha256_file(path: str | os.PathLike[str], chunk_size: int = CHUNK_SIZE) -> str:
    """Hex sha256 of a file, read in chunks so that large files fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_writer(dest: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Write a file that appears at ``dest`` whole or not at all.

    Yields a binary file open on a temp file next to ``dest``; on a clean exit it is
    synced and renamed over ``dest`` (``os.replace``), on an error it is removed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
    # os.open with 0o666 (not mkstemp's 0o600) so that the umask decides, as for any file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def source_file(local_path: str | os.PathLike[str]) -> Path:
    """``local_path`` as a Path, checked to be an existing regular file.

    Raises:
        NotFound: there is no such file.
        InvalidInput: it is a directory or something else than a regular file.
    """
    path = Path(local_path)
    if not path.exists():
        raise NotFound(f"cannot store {str(path)!r}: no such file")
    if not path.is_file():
        kind = "a directory (archive it first)" if path.is_dir() else "not a regular file"
        raise InvalidInput(f"cannot store {str(path)!r}: it is {kind}")
    return path


def copy_file_atomic(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Copy ``src`` to ``dest`` through :func:`atomic_writer`; returns ``dest``."""
    with open(src, "rb") as fin, atomic_writer(dest) as fout:
        while chunk := fin.read(CHUNK_SIZE):
            fout.write(chunk)
    return Path(dest)


def _url2pathname(path: str) -> str:
    """``urllib.request.url2pathname`` without importing urllib.request (~13 ms)."""
    if os.name == "nt":
        from nturl2path import url2pathname

        return url2pathname(path)
    return unquote(path)


def file_url_to_path(url: str) -> Path:
    """The local path of a ``file://`` URL or a plain path (``~`` expanded)."""
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise InvalidInput(
                f"file URL {url!r} names host {parts.netloc!r}: only local files work"
            )
        return Path(_url2pathname(parts.path))
    return Path(url).expanduser()


def is_local_url(url: str) -> bool:
    """Whether ``url`` is a local path or ``file://`` URL (a Windows drive letter included)."""
    scheme = urlsplit(url).scheme.lower()
    return scheme in ("", "file") or (len(scheme) == 1 and url[1:2] == ":")
