"""Process-wide state of the SDK: the current task and how the process ends.

``Task.init`` makes its task current and installs, once per process, three hooks
that let the task be closed with the right status at exit:

- ``sys.excepthook`` (chained) records an uncaught exception -> ``failed``
  (``KeyboardInterrupt`` -> ``stopped``);
- ``sys.exit`` (wrapped, as ClearML does) records a non-zero exit code -> ``failed``;
- ``atexit`` closes the current task with what was recorded.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.sdk.task import Task

_log = logging.getLogger("agent.sdk")
_lock = threading.RLock()
_current: Task | None = None
_owner_pid = 0  # the process that made _current current (a forked child must not close it)
_installed = False


@dataclass
class ExitInfo:
    """How the process is ending, as far as the hooks saw."""

    exception: BaseException | None = None
    exit_code: Any = None

    @property
    def failed(self) -> bool:
        return self.exception is not None or self.exit_code not in (None, 0)


_exit = ExitInfo()


def lock() -> threading.RLock:
    """Held while a task is made current (so two threads cannot both create one)."""
    return _lock


def current() -> Task | None:
    return _current


def set_current(task: Task) -> None:
    global _current, _owner_pid
    with _lock:
        _current, _owner_pid = task, os.getpid()


def clear_current(task: Task) -> None:
    global _current
    with _lock:
        if _current is task:
            _current = None


def swap_current(task: Task) -> Task | None:
    """Make ``task`` current; returns the one it replaces (for :func:`restore_current`)."""
    global _current, _owner_pid
    with _lock:
        previous, _current, _owner_pid = _current, task, os.getpid()
    return previous


def restore_current(task: Task, previous: Task | None) -> None:
    """Undo :func:`swap_current` (only while ``task`` is still current)."""
    global _current
    with _lock:
        if _current is task:
            _current = previous


def install_hooks() -> None:
    """Install the exit hooks (once per process)."""
    global _installed
    with _lock:
        if _installed:
            return
        previous_hook = sys.excepthook
        previous_exit = sys.exit

        def excepthook(
            exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
        ) -> None:
            _exit.exception = exc
            previous_hook(exc_type, exc, tb)

        def exit_(status: Any = None) -> None:
            _exit.exit_code = status
            previous_exit(status)

        sys.excepthook = excepthook
        sys.exit = exit_
        atexit.register(_at_exit)
        _installed = True


def exit_info() -> ExitInfo:
    return _exit


def _at_exit() -> None:
    task = _current
    if task is None or os.getpid() != _owner_pid:
        return  # nothing to close, or a forked child leaving its parent's task alone
    try:
        task._finish(_exit)
    except Exception as exc:  # at exit nothing can be retried: say what was lost
        _log.warning("could not close task %s at exit: %s", task.id, exc)
