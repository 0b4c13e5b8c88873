"""Reaping forked children, for the two zygotes (local-mode steps, agent warm starts)."""

from __future__ import annotations

import os
from collections.abc import Iterator


def reap_exited(children: set[int]) -> Iterator[tuple[int, int]]:
    """``(pid, exit code)`` of each child in ``children`` that has exited, without
    waiting; each is removed from the set. A negative code is the killing signal."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # none left (reaped elsewhere)
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        yield pid, os.waitstatus_to_exitcode(status)
