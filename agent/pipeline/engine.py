"""The engine: one pipeline run, its nodes launched as soon as their parents succeed.

:class:`PipelineRun` owns the DAG of a run and the rules of ClearML pipelines:

- a node launches when all its parents ended in success (``completed`` or
  ``cached``); independent nodes run at the same time, each watched by a thread
  (in debug mode, ``synchronous``: right away in the caller's thread);
- a failed node's descendants are skipped; the pipeline fails unless the node has
  ``continue_on_fail``; with ``abort_on_failure`` the running nodes are stopped at once;
- a node with ``cache`` reuses an earlier identical step (:mod:`agent.pipeline.cache`);
- a failed node is retried per its :class:`~agent.pipeline.steps.RetryPolicy`;
- every change is published on the pipeline task (:class:`~agent.pipeline.report.DagReporter`).

Nodes may be added while the run goes on (the decorator adds one per component call).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.core.models import Task, TaskStatus, now
from agent.pipeline import cache as step_cache
from agent.pipeline.dag import Dag, Node, NodeState
from agent.pipeline.errors import log_hint
from agent.pipeline.launchers import Launcher, StepHandle
from agent.pipeline.report import DagReporter, copy_artifacts, copy_metrics, copy_models
from agent.pipeline.values import ArtifactIndex
from agent.store.base import Backend

logger = logging.getLogger(__name__)

_SUCCESS = {TaskStatus.completed.value, TaskStatus.cached.value, TaskStatus.published.value}


@dataclass
class RunOptions:
    """How a run behaves (the pipeline's settings)."""

    abort_on_failure: bool = False
    synchronous: bool = False
    force_rerun: bool = False
    add_pipeline_tags: bool = False
    step_project: str = ""
    default_queue: str | None = None
    step_task_created_callback: Callable[..., Any] | None = None
    step_task_completed_callback: Callable[..., Any] | None = None
    report_interval: float = 0.05
    max_parallel: int | None = None
    #: Default ``output_uri`` of the steps (the pipeline's).
    output_uri: str | None = None


class PipelineRun:
    """One run of a pipeline.

    Args:
        backend: the store.
        pipeline_id: the pipeline (controller) task; steps are its children.
        launcher: how steps run (in process, local processes, queues).
        options: the pipeline's settings.
        controller: handed to callbacks as their ``pipeline`` argument.
        args: the pipeline's arguments (``${pipeline.NAME}``).
    """

    def __init__(
        self,
        backend: Backend,
        pipeline_id: str,
        launcher: Launcher,
        options: RunOptions | None = None,
        controller: Any = None,
        args: dict[str, Any] | None = None,
    ):
        self.backend = backend
        self.pipeline_id = pipeline_id
        self.launcher = launcher
        self.options = options or RunOptions()
        self.controller = controller
        self.args = dict(args or {})
        self.dag = Dag()
        self.artifacts = ArtifactIndex(backend)
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._handles: dict[str, StepHandle] = {}
        limit = self.options.max_parallel
        self._slots = threading.BoundedSemaphore(limit) if limit and limit > 0 else None
        self._threads: list[threading.Thread] = []
        self.started = False
        self._closed = threading.Event()
        self.aborting = False
        self.stopped_by_user = False
        self.failed_steps: list[str] = []
        self.reporter = DagReporter(
            backend, pipeline_id, self._snapshot, interval=self.options.report_interval
        )
        bind = getattr(launcher, "bind_run", None)
        if bind is not None:
            bind(self)

    # -- building -------------------------------------------------------------------------
    def add(self, node: Node) -> Node:
        """Add a node; once the run started it launches as soon as its parents succeed."""
        with self.lock:
            self.dag.add(node)
            self.reporter.mark_dirty()
            verdict = self._verdict(node) if self.started else None
        self._act(node, verdict)
        return node

    def start(self) -> None:
        """Validate the DAG and launch every node whose parents are done.

        Raises:
            PipelineDefinitionError: unknown parents or a cycle (nothing launched).
        """
        with self.lock:
            self.dag.validate()
            self.started = True
            order = self.dag.topological()
        self.reporter.mark_dirty()
        threading.Thread(
            target=self._watch_pipeline_task, name="pipeline-watch", daemon=True
        ).start()
        for node in order:
            with self.lock:
                verdict = self._verdict(node)
            self._act(node, verdict)

    # -- scheduling -------------------------------------------------------------------------
    def _verdict(self, node: Node) -> tuple[str, str] | None:
        """('launch'|'skip', why) when the node can move on, else None. Lock held."""
        if node.state is not NodeState.pending:
            return None
        if self.aborting:
            node.state = NodeState.skipped
            return ("skip", "the pipeline was aborted")
        parents = [self.dag[p] for p in node.parents if p in self.dag]
        for parent in parents:
            if parent.state.is_done and not parent.state.is_success:
                node.state = NodeState.skipped
                return ("skip", f"parent step '{parent.name}' {parent.state.value}")
        if all(parent.state.is_success for parent in parents):
            node.state = NodeState.queued
            return ("launch", "")
        return None

    def _act(self, node: Node, verdict: tuple[str, str] | None) -> None:
        if verdict is None:
            return
        action, why = verdict
        if action == "skip":
            self._record_skip(node, why)
            return
        if self.options.synchronous:
            self._execute(node)
            return
        thread = threading.Thread(target=self._execute, args=(node,), name=f"step-{node.name}")
        thread.daemon = True
        with self.lock:
            self._threads.append(thread)
        thread.start()

    # -- one node ---------------------------------------------------------------------------
    def _execute(self, node: Node) -> None:
        try:
            state, message = self._run_node(node)
        except Exception as exc:  # the boundary of a step: it fails, the run goes on
            logger.debug("step %s: %s", node.name, traceback.format_exc())
            state, message = NodeState.failed, f"{type(exc).__name__}: {exc}"
            if node.task_id:
                self._fail_task(node.task_id, message)
        self._finish(node, state, message)

    def _run_node(self, node: Node) -> tuple[NodeState, str]:
        spec = node.spec
        if spec.pre_execute_callback is not None:
            # ClearML's contract: the overrides with their references resolved, which the
            # callback may change for this run of the step.
            params = spec.resolved_parameters(self, node)
            before = copy.deepcopy(params)
            if spec.pre_execute_callback(self.controller, node, params) is False:
                return NodeState.skipped, "pre_execute_callback returned False"
            node.parameter_changes = {
                k: v for k, v in params.items() if k not in before or before[k] != v
            }
        definition = spec.prepare(self, node)
        key = definition.runtime.get(step_cache.CACHE_KEY)
        if spec.cache and key and not self.options.force_rerun:
            hit = step_cache.find_cached(self.backend, key, outputs=spec.outputs)
            if hit is not None:
                task = step_cache.record_cached_step(self.backend, definition, hit)
                with self.lock:
                    node.task_id = task.id
                    node.cached = True
                    node.cached_from = task.runtime.get(step_cache.CACHED_FROM)
                    node.started = node.started or now()
                self._monitor(node)
                return NodeState.cached, f"reused {node.cached_from}"
        task = self.backend.create_task(definition)
        with self.lock:
            node.task_id = task.id
        self.reporter.mark_dirty()
        created_cb = self.options.step_task_created_callback
        if created_cb is not None and created_cb(self.controller, node, node.parameters) is False:
            self.backend.set_status(task.id, TaskStatus.skipped.value, "step_task_created_callback")
            return NodeState.skipped, "step_task_created_callback returned False"
        status, message = self._launch_with_retries(node, task)
        if status in _SUCCESS:
            self._monitor(node)
            return NodeState.completed, message
        state = NodeState.stopped if status == TaskStatus.stopped.value else NodeState.failed
        return state, message or self._status_message(node.task_id)

    def _launch_with_retries(self, node: Node, task: Task) -> tuple[str, str]:
        spec = node.spec
        while True:
            with self.lock:
                if self.aborting:
                    return TaskStatus.stopped.value, "the pipeline was aborted"
            status, message = self._launch_once(node, task)
            if message:
                return status, message
            with self.lock:
                self._handles.pop(node.name, None)
                aborting = self.aborting
            if status in _SUCCESS or aborting or status == TaskStatus.stopped.value:
                return status, message
            retry = spec.retry
            if retry is None or not retry.should_retry(self.controller, node, node.retries):
                return status, message
            delay = retry.delay_for(node.retries)
            node.retries += 1
            logger.info("step %s failed; retry %d in %.3g s", node.name, node.retries, delay)
            time.sleep(delay)
            self.backend.set_status(task.id, TaskStatus.created.value, f"retry {node.retries}")
            self.backend.merge_runtime(task.id, {"retries": node.retries})

    def _launch_once(self, node: Node, task: Task) -> tuple[str, str]:
        """Launch the step and wait for its end (within its time limit, in a free slot)."""
        if self._slots is not None:
            self._slots.acquire()
        try:
            with self.lock:
                if self.aborting:
                    return TaskStatus.stopped.value, "the pipeline was aborted"
            with self.lock:
                node.state = NodeState.in_progress
                node.started = node.started or now()
            handle = self.launcher.launch(task, node)
            with self.lock:
                self._handles[node.name] = handle
                if getattr(handle, "waiting_in_queue", False):  # an agent will start it
                    node.state = NodeState.queued
                    handle.on_running = lambda started: self._mark_running(node, started)
            self.reporter.mark_dirty()
            limit = node.spec.time_limit
            status = handle.wait(timeout=limit)
            if status is None:
                message = f"time limit of {limit:g} s exceeded"
                handle.stop(message)
                handle.wait(timeout=30)
                return TaskStatus.failed.value, message
            return status, ""
        finally:
            if self._slots is not None:
                self._slots.release()

    def _mark_running(self, node: Node, started: float | None) -> None:
        """An agent started a queued step."""
        with self.lock:
            if node.state is NodeState.queued:
                node.state = NodeState.in_progress
                node.started = started or now()
        self.reporter.mark_dirty()

    def _monitor(self, node: Node) -> None:
        spec = node.spec
        source = node.task_id
        if not source:
            return
        for copier, wanted in (
            (copy_metrics, spec.monitor_metrics),
            (copy_artifacts, spec.monitor_artifacts),
            (copy_models, spec.monitor_models),
        ):
            if wanted:
                try:
                    copier(self.backend, source, self.pipeline_id, wanted)
                except Exception:
                    logger.exception("step %s: cannot copy %s", node.name, copier.__name__)

    def _status_message(self, task_id: str | None) -> str:
        if not task_id:
            return ""
        try:
            return self.backend.get_task(task_id).status_message
        except Exception:
            return ""

    def _fail_task(self, task_id: str, message: str) -> None:
        try:
            status = self.backend.get_task(task_id).status
            if status in ("created", "queued", "in_progress"):
                if status != "in_progress":
                    self.backend.set_status(task_id, "stopped", message)
                else:
                    self.backend.set_status(task_id, "failed", message)
        except Exception:
            logger.exception("cannot mark task %s failed", task_id)

    # -- endings ----------------------------------------------------------------------------
    def _finish(self, node: Node, state: NodeState, message: str) -> None:
        spec = node.spec
        failed = state in (NodeState.failed, NodeState.stopped)
        to_skip: list[tuple[Node, str]] = []
        next_nodes: list[tuple[Node, tuple[str, str] | None]] = []
        abort = False
        with self.lock:
            node.state = state
            node.status_message = message
            node.completed = now()
            if failed and not spec.continue_on_fail and not (self.aborting and state == "stopped"):
                self.failed_steps.append(node.name)
                abort = self.options.abort_on_failure and not self.aborting
            if failed or state is NodeState.skipped:
                why = f"parent step '{node.name}' {state.value}"
                for child in self.dag.descendants(node.name):
                    if child.state is NodeState.pending:
                        child.state = NodeState.skipped
                        to_skip.append((child, why))
            if abort:
                self.aborting = True
            else:
                for child in self.dag.children(node.name):
                    next_nodes.append((child, self._verdict(child)))
            node.done.set()
            self._changed.notify_all()
        self.reporter.mark_dirty()
        if failed and not (self.stopped_by_user and state == NodeState.stopped):
            where = log_hint(message, node.task_id)
            logger.warning("pipeline step '%s' %s: %s%s", node.name, state.value, message, where)
        else:
            self._completed_callback(node)
        for child, why in to_skip:
            self._record_skip(child, why)
        if abort:
            self.abort(f"step '{node.name}' failed and abort_on_failure is set")
        for child, verdict in next_nodes:
            self._act(child, verdict)

    def _completed_callback(self, node: Node) -> None:
        for callback in (
            node.spec.post_execute_callback,
            self.options.step_task_completed_callback,
        ):
            if callback is None or node.state is NodeState.skipped:
                continue
            try:
                callback(self.controller, node)
            except Exception:
                logger.exception("step %s: completion callback failed", node.name)

    def _record_skip(self, node: Node, why: str) -> None:
        """A skipped node gets a task in status ``skipped`` (visible in listings)."""
        with self.lock:
            node.state = NodeState.skipped
            node.status_message = why
            node.completed = now()
        try:
            task = self.backend.create_task(
                Task(
                    name=node.name,
                    project=self.options.step_project,
                    type=getattr(node.spec, "task_type", None) or "custom",
                    parent=self.pipeline_id,
                    runtime={"pipeline_step": node.name},
                )
            )
            self.backend.set_status(task.id, TaskStatus.skipped.value, why)
            with self.lock:
                node.task_id = task.id
        except Exception:
            logger.exception("cannot record skipped step %s", node.name)
        with self.lock:
            node.done.set()
            self._changed.notify_all()
        self.reporter.mark_dirty()

    def abort(self, reason: str = "the pipeline was aborted") -> None:
        """Stop running steps now and skip the ones not started."""
        with self.lock:
            self.aborting = True
            handles = dict(self._handles)
            pending = [n for n in self.dag if n.state is NodeState.pending]
            for node in pending:
                node.state = NodeState.skipped
        for name, handle in handles.items():
            try:
                handle.stop(reason)
            except Exception:
                logger.exception("cannot stop step %s", name)
        for node in pending:
            self._record_skip(node, reason)

    def stop(self) -> None:
        """The user stops the pipeline: like an abort, and the run ends stopped."""
        self.stopped_by_user = True
        self.abort("the pipeline was stopped")

    #: Seconds between checks that nobody stopped the pipeline task (``agent abort``).
    WATCH_INTERVAL_S = 0.5

    def _watch_pipeline_task(self) -> None:
        """Stop the steps when the pipeline task is stopped from outside (``agent abort``)."""
        while not self._closed.wait(self.WATCH_INTERVAL_S):
            try:
                status = self.backend.get_task(self.pipeline_id).status
            except Exception:  # a store hiccup: look again next time
                continue
            if status in (TaskStatus.stopped.value, TaskStatus.failed.value):
                logger.warning(
                    "pipeline task %s is %s: stopping its steps", self.pipeline_id, status
                )
                self.stop()
                return

    # -- waiting --------------------------------------------------------------------------
    def wait_node(self, name: str, timeout: float | None = None) -> Node:
        node = self.dag[name]
        node.done.wait(timeout)
        return node

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every node ended; True when the pipeline succeeded."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while not all(n.state.is_done and n.done.is_set() for n in self.dag):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._changed.wait(remaining if remaining is not None else 1.0)
            return self.succeeded

    @property
    def finished(self) -> bool:
        with self.lock:
            return all(n.state.is_done and n.done.is_set() for n in self.dag)

    @property
    def succeeded(self) -> bool:
        with self.lock:
            return not self.failed_steps and not self.stopped_by_user and not self.aborting

    def close(self) -> None:
        """Join the step threads, write the final DAG, release the launcher."""
        self._closed.set()
        with self.lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=60)
        self.reporter.close()
        self.launcher.close()

    def _snapshot(self) -> dict[str, Any]:
        with self.lock:
            return self.dag.report()
