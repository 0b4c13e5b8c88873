"""What a dataset version holds: its file entries, and how it differs from its parents."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from agent.core.errors import InvalidInput
from agent.files.base import sha256_file
from agent.files.progress import Progress

#: Format of the ``state`` artifact.
STATE_FORMAT = 1


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset version: its path in the dataset, content hash, size and
    where its blob is ("" until uploaded)."""

    path: str
    sha256: str
    size: int
    uri: str = ""

    def to_list(self) -> list:
        return [self.sha256, self.size, self.uri]

    @classmethod
    def from_list(cls, path: str, value: Sequence) -> FileEntry:
        sha256, size, uri = value
        return cls(path, str(sha256), int(size), str(uri))


@dataclass(frozen=True)
class Changes:
    """How a version differs from the merge of its parents."""

    added: list[str]
    modified: list[str]
    removed: list[str]


def diff(parent: dict[str, FileEntry], files: dict[str, FileEntry]) -> Changes:
    added = sorted(p for p in files if p not in parent)
    modified = sorted(p for p in files if p in parent and parent[p].sha256 != files[p].sha256)
    removed = sorted(p for p in parent if p not in files)
    return Changes(added, modified, removed)


def dataset_path_of(path: str | os.PathLike[str], what: str = "dataset path") -> str:
    """A normalized relative POSIX path inside a dataset ("" for its root).

    Raises:
        InvalidInput: the path is absolute or leaves the dataset (``..``).
    """
    text = str(path).replace("\\", "/").strip()
    if text.startswith("/"):
        raise InvalidInput(f"{what} {str(path)!r} is absolute: give a path inside the dataset")
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput(f"{what} {str(path)!r} leaves the dataset ('..')")
    return "/".join(parts)


def collect(
    source: Path, wildcard: str | Sequence[str] | None, recursive: bool, base: Path | None
) -> list[tuple[Path, str]]:
    """The files of ``source`` (a file or a folder) as (local path, path relative to the
    base folder), filtered by ``wildcard`` on the file name or relative path."""
    if not source.exists():
        raise InvalidInput(f"cannot add {str(source)!r}: no such file or folder")
    if source.is_file():
        root = base or source.parent
        candidates: Iterable[Path] = [source]
    else:
        root = base or source
        candidates = source.rglob("*") if recursive else source.glob("*")
    patterns = [wildcard] if isinstance(wildcard, str) else list(wildcard or [])
    out = []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            relative = path.relative_to(root).as_posix()
        except ValueError as exc:
            raise InvalidInput(
                f"{str(path)!r} is not inside local_base_folder {str(root)!r}"
            ) from exc
        if patterns and not any(
            fnmatch.fnmatch(path.name, p) or fnmatch.fnmatch(relative, p) for p in patterns
        ):
            continue
        out.append((path, relative))
    return sorted(out, key=lambda item: item[1])


def hash_files(
    paths: Sequence[Path], workers: int | None, progress: Progress | None = None
) -> list[str]:
    """sha256 of each file, several at a time (hashlib works outside the GIL)."""
    workers = max(1, workers or min(8, (os.cpu_count() or 1) * 2))

    def one(path: Path) -> str:
        digest = sha256_file(path)
        if progress is not None:
            progress.advance(path.stat().st_size)
        return digest

    if len(paths) < 16 or workers == 1:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(workers, thread_name_prefix="dataset-hash") as pool:
        return list(pool.map(one, paths))


def matching(paths: Iterable[str], pattern: str | None, recursive: bool = True) -> Iterator[str]:
    """Dataset paths that ``pattern`` selects: a folder (its files), or a wildcard on the
    whole path (``*`` crosses folders unless ``recursive`` is False)."""
    if not pattern:
        yield from paths
        return
    pattern = pattern.replace("\\", "/").lstrip("/")
    if not any(ch in pattern for ch in "*?["):
        folder = pattern.rstrip("/")
        for path in paths:
            if path == folder:
                yield path
            elif path.startswith(folder + "/") and (
                recursive or path.count("/") == folder.count("/") + 1
            ):
                yield path
        return
    depth = pattern.count("/")
    for path in paths:
        if fnmatch.fnmatchcase(path, pattern) and (recursive or path.count("/") == depth):
            yield path
