"""Advisory file locks (``fcntl.flock``) shared by the repo and env caches.

Several daemons on one machine share ``vcs-cache`` and ``venvs``; a lock file next
to each mirror or environment serialises the work on it across processes.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class FileLock:
    """An exclusive or shared ``flock`` on ``path`` (created on demand)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, shared: bool = False, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False when someone else holds it."""
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(self._fd, mode if blocking else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            return False
        return True

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.release()


@contextmanager
def file_lock(path: str | os.PathLike[str], shared: bool = False) -> Iterator[FileLock]:
    """Hold a blocking lock on ``path`` for the duration of the ``with`` block."""
    lock = FileLock(path)
    lock.acquire(shared=shared)
    try:
        yield lock
    finally:
        lock.release()
