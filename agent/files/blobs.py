"""Content-addressed blobs: the weights of models and the files of datasets.

A blob is stored once per file store under ``blobs/sha256/{aa}/{sha256}``, whatever the
file was called and whichever model or dataset version holds it: the same weights
registered twice, or a file unchanged between two dataset versions, cost no new bytes.
Records keep the blob's URI, sha256, size and the file's name.

Reading a blob gives a verified local path: a local store's file is read in place, a
remote one is downloaded once per machine into ``$AGENT_HOME/cache/blobs``. Either is
checked against its sha256 the first time it is used, and a corrupt or missing blob is an
error that names what it belongs to (``what``: "model 'resnet' file 'model.pt'"). Blobs
are read-only on disk: nothing may change content that others share.

A check is remembered, as git's index remembers a file's stat: in this process, and in
``$AGENT_HOME/cache/verified`` with the file's device, inode, size and mtime (writing to
the file moves its mtime; the ctime is left out, as git's ``core.trustctime=false`` does,
because the hard links of every local copy move it). A new process on the same machine trusts a checked blob
whose stat is unchanged instead of reading it again, so a local copy of a gigabyte
dataset costs links, not a second hashing of every byte.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.config import agent_home
from agent.core.errors import NotFound
from agent.files.base import (
    CHUNK_SIZE,
    FileStore,
    StorageError,
    atomic_writer,
    sha256_file,
    source_file,
)
from agent.files.factory import open_uri

#: Key prefix of blobs in a file store.
BLOB_PREFIX = "blobs/sha256"

_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_verified: set[tuple[str, str]] = set()  # (path, sha256) checked by this process
_verified_lock = threading.Lock()


@dataclass(frozen=True)
class StoredBlob:
    """A blob in a file store: where it is, its hash and size, and whether this call
    wrote it (False: the store had it already)."""

    uri: str
    sha256: str
    size: int
    written: bool


def blob_key(sha256: str) -> str:
    """The key of the blob with that content hash."""
    return f"{BLOB_PREFIX}/{sha256[:2]}/{sha256}"


def put_blob(
    store: FileStore,
    local_path: str | os.PathLike[str],
    sha256: str | None = None,
    known: bool = False,
) -> StoredBlob:
    """Store a file's content once: nothing is written when the store has it already.

    Args:
        store: where the blob goes.
        local_path: the file.
        sha256: its hash when known already (saves reading it twice).
        known: the caller knows the store holds this hash (a parent dataset's file):
            skip the existence check.

    Raises:
        NotFound: there is no such file.
        InvalidInput: it is not a regular file.
    """
    src = source_file(local_path)
    digest = sha256 or sha256_file(src)
    size = src.stat().st_size
    key = blob_key(digest)
    if known or store.exists(key):
        return StoredBlob(store.uri(key), digest, size, written=False)
    uri = store.put_file(src, key)
    in_place = store.local_path(key)
    if in_place is not None:
        _make_read_only(in_place)
    return StoredBlob(uri, digest, size, written=True)


def blob_path(uri: str, sha256: str, size: int, what: str, token: str | None = None) -> Path:
    """A local, verified, read-only path holding the blob's content.

    Args:
        uri: the blob's URI (as :func:`put_blob` returned it).
        sha256: the content hash it must have.
        size: its size in bytes.
        what: what the blob is, for errors ("model 'resnet' file 'model.pt'").
        token: bearer token for the server's files; default ``AGENT_API_TOKEN``.

    Raises:
        NotFound: the blob is gone from its store.
        StorageError: its content does not match ``sha256``, or the store failed.
    """
    store, key = open_uri(uri, token=token)
    try:
        in_place = store.local_path(key)
    except NotFound as exc:
        raise _missing(what, uri) from exc
    if in_place is not None:
        _verify(in_place, sha256, size, what, uri)
        return in_place
    cached = blobs_cache_dir() / sha256[:2] / sha256
    if cached.is_file() and cached.stat().st_size == size:
        return cached  # verified when it was downloaded, and read-only since
    try:
        store.get_file(key, cached)
    except NotFound as exc:
        raise _missing(what, uri) from exc
    try:
        _verify(cached, sha256, size, what, uri)
    except StorageError:
        cached.unlink(missing_ok=True)
        raise
    _make_read_only(cached)
    return cached


def link_or_copy(src: Path, dest: Path) -> None:
    """Put ``src``'s content at ``dest``: a hard link where the file system allows it
    (blobs are read-only, so sharing the inode is safe), else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        with open(src, "rb") as fin, atomic_writer(dest) as fout:
            shutil.copyfileobj(fin, fout, CHUNK_SIZE)
        _make_read_only(dest)


def blobs_cache_dir() -> Path:
    """``$AGENT_HOME/cache/blobs``: blobs downloaded from remote stores."""
    return agent_home() / "cache" / "blobs"


def _verify(path: Path, sha256: str, size: int, what: str, uri: str) -> None:
    token = (str(path), sha256)
    with _verified_lock:
        if token in _verified:
            return
    info = path.stat()
    stamp = _stamp(path, info)
    if info.st_size == size and _checked_before(sha256, stamp):
        with _verified_lock:
            _verified.add(token)
        return
    actual = sha256_file(path) if info.st_size == size else ""
    if actual != sha256:
        found = f"sha256 {actual}" if actual else f"{info.st_size} bytes instead of {size}"
        raise StorageError(
            f"{what} is corrupt: its blob {uri} has {found}, the record says sha256 {sha256}; "
            "upload it again (or restore the blob from a backup)"
        )
    with _verified_lock:
        _verified.add(token)
    _remember_checked(sha256, stamp)


def verified_dir() -> Path:
    """``$AGENT_HOME/cache/verified``: the stat of each blob file checked on this machine."""
    return agent_home() / "cache" / "verified"


def _stamp(path: Path, info: os.stat_result) -> str:
    return f"{info.st_dev}:{info.st_ino} {info.st_size} {info.st_mtime_ns} {path}"


def _record_of(sha256: str) -> Path:
    return verified_dir() / sha256[:2] / sha256


def _checked_before(sha256: str, stamp: str) -> bool:
    try:
        return stamp in _record_of(sha256).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False


def _remember_checked(sha256: str, stamp: str) -> None:
    """Add ``stamp`` to the blob's record (best effort: a lost line costs a re-check)."""
    record = _record_of(sha256)
    try:
        lines = record.read_text(encoding="utf-8").splitlines() if record.exists() else []
        lines = [line for line in lines if not line.endswith(stamp.split(" ", 3)[-1])][-7:]
        record.parent.mkdir(parents=True, exist_ok=True)
        temp = record.with_name(f"{record.name}.{os.getpid()}.{threading.get_ident()}")
        temp.write_text("\n".join([*lines, stamp]) + "\n", encoding="utf-8")
        os.replace(temp, record)  # a cache: no fsync, a lost record costs one re-check
    except OSError:
        pass


def _missing(what: str, uri: str) -> NotFound:
    return NotFound(
        f"{what} is missing: its blob {uri} is gone from the file store; upload it again"
    )


def _make_read_only(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.chmod(path, _READ_ONLY)
