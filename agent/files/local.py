"""LocalFileStore: blobs as plain files under a root directory.

Writes are atomic (a temp file in the target directory, then ``os.replace``), so a
reader sees the old blob or the new one, never half of one. URIs are ``file://``
URLs of the real files, which :meth:`LocalFileStore.local_path` hands out so that
large artifacts load in place, without a copy.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from agent.core.errors import Conflict, InvalidInput, NotFound
from agent.files.base import (
    StoredFile,
    atomic_writer,
    copy_file_atomic,
    file_url_to_path,
    safe_key,
    safe_prefix,
    source_file,
)


class LocalFileStore:
    """Blobs in a directory tree: key ``a/b.txt`` is the file ``{root}/a/b.txt``.

    Args:
        root: the directory; created on the first write, not here.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().absolute()
        self.url = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalFileStore({str(self.root)!r})"

    def uri(self, key: str) -> str:
        """The ``file://`` URL of ``key``."""
        return self.path_for(key).as_uri()

    def path_for(self, key: str) -> Path:
        """The file that holds ``key`` (it may not exist yet).

        Raises:
            InvalidInput: the key is unsafe, or leads out of the root through a symlink.
        """
        path = self.root / safe_key(key)
        real_root = self.root.resolve()
        if not path.resolve().is_relative_to(real_root):
            raise InvalidInput(f"storage key {key!r} leads out of {self.root} (through a symlink)")
        return path

    def key_of(self, uri: str) -> str:
        """The key of a URI (or path) inside this store; a bare key is returned checked.

        Raises:
            InvalidInput: the URI points outside this store's root.
        """
        if "://" in uri and not uri.startswith("file://"):
            raise InvalidInput(f"{uri!r} is not inside this store ({self.root})")
        if not uri.startswith("file://") and not os.path.isabs(uri):
            return safe_key(uri)
        path = file_url_to_path(uri).absolute()
        if not path.is_relative_to(self.root):
            raise InvalidInput(f"{uri!r} is not inside this store ({self.root})")
        return safe_key(path.relative_to(self.root).as_posix())

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> str:
        """Copy a local file to ``key``; returns its ``file://`` URI."""
        src = source_file(local_path)
        dest = self.path_for(key)
        with _clash_errors(key, self.root):
            copy_file_atomic(src, dest)
        return dest.as_uri()

    def put_bytes(self, data: bytes, key: str) -> str:
        """Write ``data`` to ``key``; returns its ``file://`` URI."""
        with self.writer(key) as fh:
            fh.write(data)
        return self.uri(key)

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """A binary file to write ``key`` through; it replaces the blob on a clean exit.

        Raises:
            InvalidInput: the key is unsafe.
            Conflict: a file stands where the key needs a directory, or the other way round.
        """
        dest = self.path_for(key)
        with _clash_errors(key, self.root), atomic_writer(dest) as fh:
            yield fh

    def get_file(self, uri: str, dest_path: str | os.PathLike[str]) -> Path:
        """Copy the blob to ``dest_path`` (an existing directory gets the blob's name)."""
        src = self._existing(uri)
        dest = Path(dest_path)
        if dest.is_dir():
            dest = dest / src.name
        return copy_file_atomic(src, dest)

    def exists(self, uri: str) -> bool:
        """Whether the blob's file exists."""
        return self.path_for(self.key_of(uri)).is_file()

    def delete(self, uri: str) -> None:
        """Remove the blob's file (and no directories); missing is fine."""
        with contextlib.suppress(FileNotFoundError):
            self.path_for(self.key_of(uri)).unlink()

    def local_path(self, uri: str) -> Path:
        """The blob's own file, to read in place.

        Raises:
            NotFound: nothing is stored at ``uri``.
        """
        return self._existing(uri)

    def list_files(self, prefix: str = "") -> list[StoredFile]:
        """The files whose keys start with ``prefix``, sorted by key (a missing root: none).

        Temp files of writes in progress (``.name.xxxx.part``) are left out.
        """
        safe_prefix(prefix)
        # Walk only the deepest folder the prefix names, not the whole root.
        folder, _, _ = prefix.rpartition("/")
        top = self.path_for(folder) if folder else self.root
        found = []
        for dirpath, _dirs, names in os.walk(top):
            for name in names:
                path = Path(dirpath, name)
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix) and not _is_partial(name) and path.is_file():
                    found.append(StoredFile(key, path.stat().st_size))
        return sorted(found, key=lambda f: f.key)

    def file_for(self, key: str) -> Path:
        """The existing file that holds ``key`` (a key, never a URI or a path).

        Raises:
            InvalidInput: the key is unsafe.
            NotFound: nothing is stored at ``key``.
        """
        path = self.path_for(key)
        if not path.is_file():
            raise NotFound(f"no file stored at {key!r} in {self.root}")
        return path

    def _existing(self, uri: str) -> Path:
        return self.file_for(self.key_of(uri))


def _is_partial(name: str) -> bool:
    """A temp file of :func:`~agent.files.base.atomic_writer`, not a blob."""
    return name.startswith(".") and name.endswith(".part")


@contextlib.contextmanager
def _clash_errors(key: str, root: Path) -> Iterator[None]:
    """Turn 'a/b' written where 'a' is a file (or 'a' where it is a directory) into Conflict."""
    try:
        yield
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        raise Conflict(
            f"cannot store {key!r} in {root}: a file and a directory would share a path "
            f"({exc.strerror}: {exc.filename})"
        ) from exc
