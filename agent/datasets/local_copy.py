"""A dataset version's files on this machine: a read-only cached folder per version.

The folder is assembled next to its final place and renamed into it whole, so a copy is
either complete or absent; two processes assembling the same version at once both end
with the same folder. Each file comes from its verified blob (:func:`agent.files.blobs.
blob_path`), hard-linked where possible: a second version sharing most files costs only
links, and a cached version is found again without reading a file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent.config import agent_home
from agent.datasets.state import FileEntry, Progress
from agent.files import blobs

#: Marker written last into a complete copy.
_COMPLETE = ".agent-dataset-complete"


def cache_dir() -> Path:
    return agent_home() / "cache" / "datasets"


def cached_copy(
    entries: Sequence[FileEntry], key: str, what: str, max_workers: int | None = None
) -> Path:
    """The folder ``cache/datasets/{key}`` holding ``entries`` (assembled on first use).

    Raises:
        NotFound / StorageError: a blob is missing or corrupt; nothing is left behind.
    """
    final = cache_dir() / key
    if (final / _COMPLETE).is_file():
        return final
    work = cache_dir() / f".{key}.{secrets.token_hex(4)}.partial"
    work.mkdir(parents=True)
    try:
        _assemble(entries, work, what, max_workers)
        (work / _COMPLETE).write_text(f"{len(entries)} files\n")
        try:
            os.rename(work, final)
        except OSError:
            if not (final / _COMPLETE).is_file():  # a broken leftover, not a finished twin
                shutil.rmtree(final, ignore_errors=True)
                os.rename(work, final)
    finally:
        if work.exists():
            _remove_tree(work)
    return final


def _assemble(entries: Sequence[FileEntry], root: Path, what: str, workers: int | None) -> None:
    total = sum(e.size for e in entries)
    progress = Progress(f"{what}: fetching", len(entries), total, show=len(entries) > 1)

    def one(entry: FileEntry) -> None:
        file_what = f"{what} file {entry.path!r}"
        source = blobs.blob_path(entry.uri, entry.sha256, entry.size, file_what)
        blobs.link_or_copy(source, root / entry.path)
        progress.advance(entry.size)

    if len(entries) < 16:
        for entry in entries:
            one(entry)
        return
    with ThreadPoolExecutor(max(1, workers or 8), thread_name_prefix="dataset-fetch") as pool:
        list(pool.map(one, entries))


def copy_tree(source: Path, target: Path) -> None:
    """Writable copies of a cached folder's files (not links: the user may change them)."""
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.name != _COMPLETE:
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)


def _remove_tree(path: Path) -> None:
    # read-only files in a writable folder can be unlinked; the folders stay writable
    with contextlib.suppress(OSError):
        shutil.rmtree(path)
