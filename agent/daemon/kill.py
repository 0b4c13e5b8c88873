"""Killing a process tree from a loop: SIGTERM now, SIGKILL after a grace period.

Never waits on (reaps) the processes itself: they are children of someone else's
``subprocess.Popen`` or ``multiprocessing.Process``, which must see their exit codes.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable

import psutil


def tree_of(pid: int, include_root: bool = True) -> list[psutil.Process]:
    """The process ``pid`` (unless ``include_root`` is False) and all its descendants."""
    try:
        root = psutil.Process(pid)
        children = root.children(recursive=True)
    except psutil.Error:
        return []
    return [root, *children] if include_root else children


def is_gone(proc: psutil.Process) -> bool:
    """Exited (a zombie counts: it waits only for its parent to read its status)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


class TreeKill:
    """An abort in progress: :meth:`poll` from the loop until it returns True."""

    def __init__(
        self,
        procs: Iterable[psutil.Process],
        grace_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.procs = list(procs)
        self.clock = clock
        self.deadline = clock() + grace_s
        self.killed = False
        _send(self.procs, signal.SIGTERM)

    def poll(self) -> bool:
        """True once every process is gone; SIGKILLs the rest when the grace ran out."""
        alive = [p for p in self.procs if not is_gone(p)]
        if alive and not self.killed and self.clock() >= self.deadline:
            self.killed = True
            _send(alive, signal.SIGKILL)
        return not alive


def _send(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass  # already gone
