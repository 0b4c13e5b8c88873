"""Forked children: reaping them (the two zygotes), their exit codes, fork hooks."""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Iterator
from typing import Any


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


def exit_code(code: Any) -> int:
    """The exit status of ``SystemExit(code)``, as the interpreter makes it: None is 0,
    an int is itself, anything else is printed to stderr and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def call_in_forked_children(owner: object, method: str) -> None:
    """After every fork, call ``owner.<method>()`` in the child while ``owner`` lives
    (the hook holds no reference that would keep it alive)."""
    this = weakref.ref(owner)

    def hook() -> None:
        alive = this()
        if alive is not None:
            getattr(alive, method)()

    os.register_at_fork(after_in_child=hook)
