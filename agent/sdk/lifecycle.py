"""Status of a task: the ``mark_*`` calls, and closing it when its run ends."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agent.core.errors import Conflict
from agent.core.models import TaskStatus
from agent.sdk import session

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from agent.core.models import Task as TaskRecord
    from agent.sdk.capture import OutputCapture
    from agent.sdk.logger import Logger
    from agent.sdk.session import ExitInfo
    from agent.store.base import Backend

_log = logging.getLogger("agent.sdk")


class LifecycleMixin:
    """``mark_*`` and ``close`` of :class:`agent.sdk.task.Task`."""

    # Provided by Task (with get_status, get_logger and wait_for_uploads).
    id: str
    _backend: Backend
    _record: TaskRecord
    _logger: Logger | None
    _capture: OutputCapture | None
    _uploader: ThreadPoolExecutor | None
    _owns_status: bool
    _closed: bool

    # -- status -------------------------------------------------------------------------
    def mark_started(self, force: bool = False) -> None:
        """Move the task to ``in_progress``."""
        self._mark(TaskStatus.in_progress, None, force=force)

    def mark_completed(
        self, status_message: str | None = None, ignore_errors: bool = False, force: bool = False
    ) -> None:
        """Move the task to ``completed``.

        Args:
            force: also from ``created``/``queued`` (through ``in_progress``).
            ignore_errors: log a refused move instead of raising it.

        Raises:
            IllegalTransition: the task's status does not allow it.
        """
        self._mark(TaskStatus.completed, status_message, ignore_errors, force)

    def mark_failed(
        self,
        status_reason: str | None = None,
        status_message: str | None = None,
        ignore_errors: bool = False,
        force: bool = False,
    ) -> None:
        """Move the task to ``failed`` with ``status_reason`` as its status message."""
        self._mark(TaskStatus.failed, status_reason or status_message, ignore_errors, force)

    def mark_stopped(
        self, force: bool = False, status_message: str | None = None, ignore_errors: bool = False
    ) -> None:
        """Move the task to ``stopped`` (aborted)."""
        self._mark(TaskStatus.stopped, status_message, ignore_errors, force)

    def _mark(
        self,
        status: TaskStatus,
        message: str | None,
        ignore_errors: bool = False,
        force: bool = False,
    ) -> None:
        if self._logger is not None:
            self._logger.flush()  # reports land before the status says "done"
        try:
            if force and status is not TaskStatus.in_progress:
                current = self.get_status()
                if current in (TaskStatus.created, TaskStatus.queued):
                    self._backend.set_status(self.id, TaskStatus.in_progress.value)
            self._record = self._backend.set_status(self.id, status.value, message)
        except Conflict:
            if not ignore_errors:
                raise
            _log.warning("task %s: could not mark it %s", self.id, status.value, exc_info=True)

    # -- closing ------------------------------------------------------------------------
    def close(self) -> None:
        """Flush reports and uploads; a task run by ``Task.init`` here is marked
        ``completed`` (unless its status was already set)."""
        self._finish(None)

    def _finish(self, exit_info: ExitInfo | None) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._record_connected_safely()
            self.wait_for_uploads(raise_on_error=False)
            if self._capture is not None:
                self._capture.stop()
                self._capture = None
            if self._logger is not None:
                self._logger.close()
            if self._owns_status:
                self._close_status(exit_info)
        finally:
            if self._uploader is not None:
                self._uploader.shutdown(wait=False)
            from agent.sdk import argparse_binding

            argparse_binding.disconnect(self)  # type: ignore[arg-type]
            session.clear_current(self)

    def _record_connected_safely(self) -> None:
        try:
            self._record_connected()  # type: ignore[attr-defined]
        except Exception:  # closing must go on: the values connected first are stored
            _log.warning("task %s: cannot record changed parameters", self.id, exc_info=True)
        try:
            self._upload_registered()  # type: ignore[attr-defined]
        except Exception:  # closing must go on: the last upload of each is stored
            _log.warning("task %s: cannot upload registered artifacts", self.id, exc_info=True)

    def _close_status(self, exit_info: ExitInfo | None) -> None:
        if self.get_status() != TaskStatus.in_progress:
            return  # the script (or someone) already decided
        if exit_info is None or not exit_info.failed:
            self._backend.set_status(self.id, TaskStatus.completed.value)
        elif isinstance(exit_info.exception, KeyboardInterrupt):
            self._backend.set_status(self.id, TaskStatus.stopped.value, "interrupted (Ctrl-C)")
        elif exit_info.exception is not None:
            exc = exit_info.exception
            message = f"uncaught {type(exc).__name__}: {exc}"[:1000]
            self._backend.set_status(self.id, TaskStatus.failed.value, message)
        else:
            message = f"exited with code {exit_info.exit_code}"
            self._backend.set_status(self.id, TaskStatus.failed.value, message)

    def _start_capture(self) -> None:
        from agent.sdk.capture import OutputCapture

        self._capture = OutputCapture(self.get_logger().add_lines)
        self._capture.start()
