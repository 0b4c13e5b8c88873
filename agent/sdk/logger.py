"""Logger: scalars, text and plots of a task, batched and sent in the background.

Reports go into in-memory buffers; a daemon thread sends them every
:data:`FLUSH_INTERVAL_S` seconds (sooner once a buffer holds :data:`BATCH_SIZE`
items), so a tight training loop calling ``report_scalar`` costs a list append.
:meth:`Logger.flush` sends everything now; every logger is flushed at interpreter
exit and when its task closes. A forked child starts with empty buffers (the
parent sends what it had) and starts its own sender on its first report.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.sdk import capture, media, plots

if TYPE_CHECKING:
    from agent.files.base import FileStore
    from agent.store.base import Backend

#: Seconds between background sends.
FLUSH_INTERVAL_S = 2.0
#: A buffer this long wakes the sender before the interval is up.
BATCH_SIZE = 2000
#: Items kept while the store cannot be reached; older ones are dropped past this.
MAX_PENDING = 200_000

_log = logging.getLogger("agent.sdk")
_live: weakref.WeakSet[Logger] = weakref.WeakSet()
_atexit_registered = False
_registry_lock = threading.Lock()
#: What non-finite scalars are reported as, once set_reporting_*_value chose it.
_stand_ins: dict[str, float] = {}


class Logger:
    """Reports of one task (ClearML's ``Logger``); get it with ``task.get_logger()``."""

    def __init__(
        self,
        task_id: str,
        backend: Backend,
        flush_interval: float = FLUSH_INTERVAL_S,
        file_store: Callable[[], FileStore] | None = None,
    ) -> None:
        self.task_id = task_id
        self._backend = backend
        self._file_store = file_store
        self._samples_store: FileStore | None = None  # made on the first sample, then kept
        self._interval = flush_interval
        self._lock = threading.Lock()  # guards the buffers
        self._send_lock = threading.Lock()  # one send at a time keeps report order
        self._lines: list[tuple[float, str, str]] = []
        self._scalars: list[tuple[str, str, int, float]] = []
        self._plots: list[tuple[str, str, int, dict[str, Any]]] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def current_logger(cls) -> Logger | None:
        """The logger of :meth:`Task.current_task`, or None without a current task."""
        from agent.sdk.task import Task

        task = Task.current_task()
        return task.get_logger() if task is not None else None

    # -- reports ------------------------------------------------------------------
    def report_scalar(self, title: str, series: str, value: float, iteration: int) -> None:
        """Record ``value`` of ``title``/``series`` at ``iteration``.

        NaN and infinities are recorded as they are (a diverging loss shows as NaN), unless
        :meth:`set_reporting_nan_value` / :meth:`set_reporting_inf_value` chose a stand-in.
        """
        number = float(value)
        if not math.isfinite(number):
            number = self._stand_in(number)
        self._add(self._scalars, (str(title), str(series), int(iteration), number))

    @classmethod
    def set_reporting_nan_value(cls, value: float, warn_period: int = 1000) -> None:
        """Report NaN scalars as ``value`` (ClearML's switch; by default NaN is kept)."""
        _stand_ins["nan"] = float(value)

    @classmethod
    def set_reporting_inf_value(cls, value: float, warn_period: int = 1000) -> None:
        """Report infinite scalars as ``value`` (by default they are kept)."""
        _stand_ins["inf"] = float(value)

    @staticmethod
    def _stand_in(number: float) -> float:
        return _stand_ins.get("nan" if math.isnan(number) else "inf", number)

    def report_single_value(self, name: str, value: float) -> None:
        """A one-off metric (accuracy of the final model, ...): title ``Summary``, iteration 0."""
        self.report_scalar("Summary", name, value, 0)

    def report_text(
        self, msg: Any, level: int | str = logging.INFO, print_console: bool = True, *_: Any
    ) -> None:
        """Add a line to the task's log (and print it, unless ``print_console=False``)."""
        text = str(msg)
        if print_console:
            print(text, file=capture.console())
        lines = text.split("\n")
        self.add_lines(_level_name(level), lines)

    def add_lines(self, level: str, lines: Sequence[str]) -> None:
        """Append log lines as they are (used by the output capture)."""
        stamp = time.time()
        with self._lock:
            self._lines.extend((stamp, level, line) for line in lines)
            full = len(self._lines) >= BATCH_SIZE
        self._after_add(full)

    def report_table(
        self,
        title: str,
        series: str,
        iteration: int | None = None,
        table_plot: Any = None,
        csv: str | None = None,
        url: str | None = None,
        extra_layout: dict[str, Any] | None = None,
    ) -> None:
        """A table from a DataFrame, a list of rows (header first) or a CSV file/URL."""
        if url is not None and csv is None:
            from agent.files.storage_manager import StorageManager

            csv = StorageManager.get_local_copy(url)
        figure = plots.table_figure(title, table_plot, csv, extra_layout)
        self.report_plotly(title, series, figure, iteration)

    def report_scatter2d(
        self,
        title: str,
        series: str,
        scatter: Any,
        iteration: int | None = None,
        xaxis: str | None = None,
        yaxis: str | None = None,
        labels: Sequence[str] | None = None,
        mode: str = "lines",
        extra_layout: dict[str, Any] | None = None,
    ) -> None:
        """A 2-D scatter/line from (x, y) pairs."""
        figure = plots.scatter_figure(
            title, series, scatter, xaxis, yaxis, labels, mode, extra_layout
        )
        self.report_plotly(title, series, figure, iteration)

    def report_histogram(
        self,
        title: str,
        series: str,
        values: Any,
        iteration: int | None = None,
        labels: Sequence[str] | None = None,
        xaxis: str | None = None,
        yaxis: str | None = None,
        mode: str | None = None,
        extra_layout: dict[str, Any] | None = None,
        xlabels: Sequence[str] | None = None,
    ) -> None:
        """A bar chart of ``values``."""
        figure = plots.histogram_figure(
            title, series, values, labels, xlabels, xaxis, yaxis, mode, extra_layout
        )
        self.report_plotly(title, series, figure, iteration)

    def report_line_plot(
        self,
        title: str,
        series: Iterable[Any],
        xaxis: str | None = None,
        yaxis: str | None = None,
        mode: str = "lines",
        iteration: int | None = None,
        reverse_xaxis: bool = False,
        extra_layout: dict[str, Any] | None = None,
    ) -> None:
        """Several lines in one plot; each series has a name and (x, y) data."""
        figure = plots.line_figure(title, series, xaxis, yaxis, mode, reverse_xaxis, extra_layout)
        self.report_plotly(title, "", figure, iteration)

    def report_plotly(
        self, title: str, series: str, figure: Any, iteration: int | None = None
    ) -> None:
        """A plotly figure (object or JSON dict) as it is."""
        item = (str(title), str(series), int(iteration or 0), plots.plotly_figure(figure))
        self._add(self._plots, item)

    def report_confusion_matrix(
        self,
        title: str,
        series: str,
        matrix: Any,
        iteration: int | None = None,
        xaxis: str | None = None,
        yaxis: str | None = None,
        xlabels: Sequence[str] | None = None,
        ylabels: Sequence[str] | None = None,
        yaxis_reversed: bool = False,
        comment: str | None = None,
        extra_layout: dict[str, Any] | None = None,
    ) -> None:
        """A heatmap of a 2-D matrix (a confusion matrix: rows true, columns predicted)."""
        figure = plots.confusion_matrix_figure(
            title, series, matrix, xaxis, yaxis, xlabels, ylabels, yaxis_reversed, comment,
            extra_layout,
        )  # fmt: skip
        self.report_plotly(title, series, figure, iteration)

    def report_matrix(
        self, title: str, series: str, matrix: Any, iteration: int, **kw: Any
    ) -> None:
        """ClearML's older name of :meth:`report_confusion_matrix`."""
        self.report_confusion_matrix(title, series, matrix, iteration, **kw)

    def report_surface(
        self,
        title: str,
        series: str,
        matrix: Any,
        iteration: int | None = None,
        xaxis: str | None = None,
        yaxis: str | None = None,
        zaxis: str | None = None,
        xlabels: Sequence[str] | None = None,
        ylabels: Sequence[str] | None = None,
        camera: Sequence[float] | None = None,
        comment: str | None = None,
        extra_layout: dict[str, Any] | None = None,
    ) -> None:
        """A 3-D surface of a 2-D matrix of heights."""
        figure = plots.surface_figure(
            title, series, matrix, xaxis, yaxis, zaxis, xlabels, ylabels, camera, comment,
            extra_layout,
        )  # fmt: skip
        self.report_plotly(title, series, figure, iteration)

    def report_scatter3d(
        self,
        title: str,
        series: str,
        scatter: Any,
        iteration: int | None = None,
        xaxis: str | None = None,
        yaxis: str | None = None,
        zaxis: str | None = None,
        labels: Sequence[str] | None = None,
        mode: str = "markers",
        fill: bool = False,
        comment: str | None = None,
        extra_layout: dict[str, Any] | None = None,
    ) -> None:
        """A 3-D scatter from (x, y, z) triples."""
        figure = plots.scatter3d_figure(
            title, series, scatter, xaxis, yaxis, zaxis, labels, mode, fill, comment,
            extra_layout,
        )  # fmt: skip
        self.report_plotly(title, series, figure, iteration)

    def report_image(
        self,
        title: str,
        series: str,
        iteration: int | None = None,
        local_path: str | os.PathLike[str] | None = None,
        image: Any = None,
        matrix: Any = None,
        max_image_history: int | None = None,
        delete_after_upload: bool = False,
        url: str | None = None,
    ) -> None:
        """An image (a debug sample): a file at ``local_path``, a numpy array or PIL image
        as ``image`` (``matrix`` is ClearML's older name), or an ``url`` recorded as it is.

        The file is stored in the task's file store when this is called (so a file that
        is overwritten next iteration is sampled as it was); ``max_image_history`` is
        accepted for ClearML's signature, and every sample is kept.
        """
        picture = image if image is not None else matrix
        data = media.image_bytes(picture) if picture is not None else None
        extension = ".png" if data is not None else None
        self._report_sample(title, series, iteration, local_path, data, url, extension)
        if delete_after_upload and local_path is not None:
            Path(local_path).unlink(missing_ok=True)

    def report_media(
        self,
        title: str,
        series: str,
        iteration: int | None = None,
        local_path: str | os.PathLike[str] | None = None,
        stream: Any = None,
        file_extension: str | None = None,
        max_history: int | None = None,
        delete_after_upload: bool = False,
        url: str | None = None,
    ) -> None:
        """Audio, video, HTML or any file as a debug sample: ``local_path``, a binary or
        text ``stream`` (its type from ``file_extension``), or an ``url``."""
        data = None
        if stream is not None:
            content = stream.read()
            data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        self._report_sample(title, series, iteration, local_path, data, url, file_extension)
        if delete_after_upload and local_path is not None:
            Path(local_path).unlink(missing_ok=True)

    def report_matplotlib_figure(
        self,
        title: str,
        series: str,
        figure: Any,
        iteration: int | None = None,
        report_image: bool = False,
        report_interactive: bool = True,
    ) -> None:
        """A matplotlib figure (or ``pyplot`` itself, for its current figure), rendered to a
        PNG: a plot, or a debug sample with ``report_image=True``."""
        kind = media.DEBUG_SAMPLE if report_image else media.PLOT_IMAGE
        data = media.figure_png(figure)
        self._report_sample(title, series, iteration, None, data, None, ".png", kind)

    def _report_sample(
        self,
        title: str,
        series: str,
        iteration: int | None,
        local_path: str | os.PathLike[str] | None,
        data: bytes | None,
        url: str | None,
        extension: str | None,
        kind: str = media.DEBUG_SAMPLE,
    ) -> None:
        store = self._samples_store
        if store is None:  # an S3 store builds a client: once per logger, not per sample
            store = self._file_store() if self._file_store is not None else _default_store()
            self._samples_store = store
        record = media.store_sample(
            store, str(title), kind=kind, local_path=local_path, data=data, url=url,
            file_extension=extension,
        )  # fmt: skip
        self._add(self._plots, (str(title), str(series), int(iteration or 0), record))

    # -- sending ------------------------------------------------------------------
    def flush(self) -> None:
        """Send everything reported so far, now."""
        with self._send_lock:
            with self._lock:
                lines, self._lines = self._lines, []
                scalars, self._scalars = self._scalars, []
                figures, self._plots = self._plots, []
            if not (lines or scalars or figures):
                return
            try:
                self._send(lines, scalars, figures)
            except Exception:
                self._requeue(lines, scalars, figures)
                raise

    def close(self) -> None:
        """Stop the background sender and send what is left."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        self.flush()

    def _send(self, lines: list, scalars: list, figures: list) -> None:
        if lines:
            self._backend.append_logs(self.task_id, lines)
            lines.clear()  # sent: not to be re-queued if a later part fails
        if scalars:
            self._backend.report_scalars(self.task_id, scalars)
            scalars.clear()
        while figures:
            title, series, iteration, figure = figures[0]
            self._backend.report_plot(self.task_id, title, series, iteration, figure)
            figures.pop(0)

    def _requeue(self, lines: list, scalars: list, figures: list) -> None:
        with self._lock:
            self._lines[:0] = lines
            self._scalars[:0] = scalars
            self._plots[:0] = figures
            for buffer in (self._lines, self._scalars, self._plots):
                if len(buffer) > MAX_PENDING:
                    del buffer[: len(buffer) - MAX_PENDING]

    def _add(self, buffer: list, item: tuple) -> None:
        with self._lock:
            buffer.append(item)
            full = len(buffer) >= BATCH_SIZE
        self._after_add(full)

    def _after_add(self, full: bool) -> None:
        if self._thread is None:
            self._start()
        if full:
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name=f"agent-logger-{self.task_id[:8]}", daemon=True
            )
        _register(self)
        self._thread.start()

    def _reset_after_fork(self) -> None:
        # The child has no sender thread, and the parent sends what was buffered.
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._lines, self._scalars, self._plots = [], [], []
        self._wake = threading.Event()
        self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # the loop's boundary: keep reporting, retry next time
                _log.warning("cannot send reports of task %s (will retry): %s", self.task_id, exc)


def _default_store() -> FileStore:
    from agent.sdk.model import default_file_store

    return default_file_store()


def _level_name(level: int | str) -> str:
    if isinstance(level, int):
        return logging.getLevelName(level).lower()
    return str(level).lower()


def _register(logger: Logger) -> None:
    global _atexit_registered
    with _registry_lock:
        _live.add(logger)
        if not _atexit_registered:
            atexit.register(flush_all)
            _atexit_registered = True


def _after_fork_in_child() -> None:
    for logger in list(_live):
        logger._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def flush_all() -> None:
    """Flush every live logger (runs at interpreter exit)."""
    for logger in list(_live):
        try:
            logger.close()
        except Exception as exc:  # at exit: report and go on with the other loggers
            _log.warning("lost reports of task %s: %s", logger.task_id, exc)
