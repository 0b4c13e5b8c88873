"""What a pipeline publishes on its own task: the DAG, and monitored step outputs.

:class:`DagReporter` keeps ``runtime["pipeline"]`` of the pipeline task up to date
(``merge_runtime``, so other runtime properties stay): every change marks the
report dirty, a writer thread writes the latest state at most every ``interval``
seconds, and ``close`` writes the final one. Coalescing keeps a 50-way fan-out
from writing the whole DAG 150 times while steps compete for the same store.

``monitor_metrics`` / ``monitor_artifacts`` / ``monitor_models`` copy a finished
step's scalars, artifact records and models onto the pipeline task.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.store.base import Backend

logger = logging.getLogger(__name__)

#: Runtime property of the pipeline task holding its DAG.
DAG_KEY = "pipeline"


class DagReporter:
    """Writes ``runtime["pipeline"]`` of the pipeline task when the DAG changes."""

    def __init__(
        self,
        backend: Backend,
        task_id: str,
        snapshot: Callable[[], dict[str, Any]],
        interval: float = 0.05,
    ):
        self.backend = backend
        self.task_id = task_id
        self.snapshot = snapshot
        self.interval = interval
        self._dirty = threading.Event()
        self._closed = False
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def mark_dirty(self) -> None:
        self._dirty.set()
        if self._thread is None and not self._closed:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name="dag-reporter", daemon=True
                    )
                    self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            self._dirty.wait()
            if self._closed:
                return
            self._dirty.clear()
            started = time.monotonic()
            self.flush()
            # Coalesce the changes of the next interval; a big DAG (slow to write) waits
            # longer, so that reporting never takes more than a tenth of the store's time.
            self._stop.wait(max(self.interval, 10 * (time.monotonic() - started)))

    def flush(self) -> None:
        """Write the current DAG now."""
        with self._write_lock:
            try:
                self.backend.merge_runtime(self.task_id, {DAG_KEY: self.snapshot()})
            except Exception:  # the report is for people; the run goes on without it
                logger.exception("cannot report the DAG on pipeline task %s", self.task_id)

    def close(self) -> None:
        """Stop the writer and write the final DAG."""
        self._closed = True
        self._stop.set()
        self._dirty.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self.flush()


# -- monitors -------------------------------------------------------------------------------
def _pairs(spec: Any) -> list[tuple[Any, Any]]:
    """Normalize ``[a, (a, b), ...]`` to ``[(a, a), (a, b), ...]``."""
    pairs = []
    for item in spec or []:
        if isinstance(item, (list, tuple)) and len(item) == 2 and not isinstance(item[0], str):
            pairs.append((tuple(item[0]), tuple(item[1])))  # ((title, series), (title, series))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            pairs.append((item[0], item[1]))
        else:
            pairs.append((item, item))
    return pairs


def copy_metrics(backend: Backend, step_task_id: str, pipeline_id: str, spec: Any) -> None:
    """``monitor_metrics``: [(title, series)] or [((title, series), (new_title, new_series))]."""
    scalars = backend.get_scalars(step_task_id)
    points: list[tuple[str, str, int, float]] = []
    for item in spec or []:
        if len(item) == 2 and all(isinstance(x, (list, tuple)) for x in item):
            (title, series), (to_title, to_series) = item
        else:
            title, series = item
            to_title, to_series = title, series
        for iteration, value in scalars.get(title, {}).get(series, []):
            points.append((to_title, to_series, iteration, value))
    if points:
        backend.report_scalars(pipeline_id, points)


def copy_artifacts(backend: Backend, step_task_id: str, pipeline_id: str, spec: Any) -> None:
    """``monitor_artifacts``: [name] or [(name, new_name)]; the pipeline shares the blobs."""
    import dataclasses

    artifacts = backend.get_artifacts(step_task_id)
    for source, target in _pairs(spec):
        artifact = artifacts.get(source)
        if artifact is not None:
            backend.add_artifact(pipeline_id, dataclasses.replace(artifact, name=target))


def copy_models(backend: Backend, step_task_id: str, pipeline_id: str, spec: Any) -> None:
    """``monitor_models``: [name], [(name, new_name)], ``"model_*"`` (the lexicographically
    last match) or ``"*"`` (the last linked model): the step's output models become
    output models of the pipeline task (links to the same models, nothing copied)."""
    from agent.sdk.model import link_model, model_links

    models = model_links(backend.get_task(step_task_id).runtime, "output")
    for source, target in _pairs(spec):
        if source == "*":
            names = list(models)[-1:]
        elif any(ch in source for ch in "*?["):
            names = sorted(n for n in models if fnmatch.fnmatchcase(n, source))[-1:]
        else:
            names = [source] if source in models else []
        if not names:
            logger.warning("monitor_models: step %s has no output model %r", step_task_id, source)
            continue
        name = names[0] if target == source and any(ch in source for ch in "*?[") else target
        link_model(backend, pipeline_id, "output", name, models[names[0]])
