"""Services mode: host up to N long-running service tasks (pipeline controllers) at once.

A :class:`ServicesHost` is a daemon whose tasks do not block its loop: each claimed task
runs in its own child process (``multiprocessing`` spawn, calling the runner there), and
the host keeps claiming while fewer than ``max_running`` run. A child that dies without
finishing its task (a crash, a kill) gets its task failed by the host; the other services
go on. Warm stop: claim no more and wait for every child; cold stop: abort them all.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.daemon.kill import TreeKill, tree_of
from agent.daemon.loop import AGENT_STOPPED, Daemon, RunnerFactory, fail_if_running, mark_stopped
from agent.store.base import Backend

log = logging.getLogger(__name__)

#: Default number of service tasks one host runs at once.
DEFAULT_MAX_RUNNING = 8

_PR_SET_PDEATHSIG = 1


@dataclass
class ServiceProcess:
    """One running service task and the child process that runs it."""

    task_id: str
    process: multiprocessing.process.BaseProcess
    abort: TreeKill | None = None


class ServicesHost(Daemon):
    """A daemon that runs each claimed task in its own child process, up to ``max_running``.

    ``runner_factory`` is called in the child, so it must be picklable (a module-level
    function, a ``functools.partial`` of one, or a picklable object with ``__call__``) and
    must build its own store connection there. Other arguments are :class:`Daemon`'s.
    """

    def __init__(
        self,
        store: Backend,
        queues: Sequence[str],
        max_running: int = DEFAULT_MAX_RUNNING,
        runner_factory: RunnerFactory | None = None,
        **daemon_args: Any,
    ):
        if max_running < 1:
            raise ValueError("max_running must be at least 1")
        super().__init__(store, queues, runner_factory=runner_factory, **daemon_args)
        self.max_running = max_running
        self.running: dict[str, ServiceProcess] = {}
        self._mp = multiprocessing.get_context("spawn")

    # -- one iteration --------------------------------------------------------------
    def loop_once(self, now: float | None = None) -> str | None:
        """Heartbeat/reap when due, reap finished children, claim one task if there is room."""
        now = self.clock() if now is None else now
        self.heartbeat.beat_if_due(now)
        self.reap_if_due(now)
        self.collect_finished()
        if self.signals.cold:
            self.abort_all()
        if self.signals.stopping:
            self.note_stop(", ".join(self.running) or None)
            return None
        if len(self.running) >= self.max_running:
            self.wait_for_exit(self.claim_timeout_s)
            return None
        task_id = self.claim_next()
        if task_id is not None:
            self.run_task(task_id)
        return task_id

    def run_task(self, task_id: str) -> None:
        """Start the task's child process and return at once."""
        process = self._mp.Process(
            target=_service_main,
            args=(self.runner_factory, task_id),
            name=f"service-{task_id[:8]}",
            daemon=False,
        )
        try:
            process.start()
        except Exception as exc:  # loop boundary: a failed spawn fails the task, not the host
            log.exception("could not start a process for task %s", task_id)
            fail_if_running(self.store, task_id, f"services host could not start it: {exc}")
            return
        self.running[task_id] = ServiceProcess(task_id, process)
        self.tasks_run += 1
        log.info(
            "service task %s runs in pid %s (%d running)", task_id, process.pid, len(self.running)
        )

    def collect_finished(self) -> list[str]:
        """Forget children that exited; fail the task of one that died without finishing it."""
        done = [s for s in self.running.values() if not s.process.is_alive()]
        for service in done:
            service.process.join()
            code = service.process.exitcode
            del self.running[service.task_id]
            if service.abort is not None:
                continue
            if fail_if_running(
                self.store, service.task_id, f"service process died (exit code {code})"
            ):
                log.error("service task %s: its process died (exit code %s)", service.task_id, code)
            else:
                log.info("service task %s finished (exit code %s)", service.task_id, code)
        return [s.task_id for s in done]

    def wait_for_exit(self, timeout: float) -> None:
        """Sleep until a child exits or ``timeout`` passes."""
        sentinels = [s.process.sentinel for s in self.running.values()]
        if sentinels:
            multiprocessing.connection.wait(sentinels, timeout=timeout)

    # -- stopping -------------------------------------------------------------------
    def drain(self) -> None:
        """Warm stop: wait for every service; escalate to an abort on a cold stop."""
        if self.running:
            log.info("waiting for %d running service task(s)", len(self.running))
        while self.running:
            self.note_stop(", ".join(self.running))
            if self.signals.cold:
                self.abort_all()
            self.wait_for_exit(0.1)
            self.collect_finished()

    def abort_all(self) -> None:
        """Mark every running service stopped ("agent stopped") and kill its process tree."""
        for service in self.running.values():
            if service.abort is None:
                log.warning("cold stop: aborting service task %s", service.task_id)
                try:
                    mark_stopped(self.store, service.task_id, AGENT_STOPPED)
                except Exception:  # loop boundary: kill it even when the store is away
                    log.exception("could not mark task %s stopped", service.task_id)
                pid = service.process.pid
                service.abort = TreeKill(
                    tree_of(pid) if pid else [], self.abort_grace_s, self.clock
                )
            service.abort.poll()


def _service_main(runner_factory: RunnerFactory, task_id: str) -> None:
    """Entry point of a service's child process."""
    # Own process group: a terminal's Ctrl-C reaches the host, which decides what to do.
    os.setpgrp()
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    runner_factory().run(task_id)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the host dies (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the host died before prctl took effect
        os._exit(1)
