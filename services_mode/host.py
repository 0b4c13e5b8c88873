"""Services mode: host up to N long-running service tasks (pipeline controllers) at once.

A :class:`ServicesHost` is a :class:`~agent.daemon.loop.Daemon` with ``max_running``
slots: each claimed task gets a runner thread of the host, and that runner starts the
task as a process of its own (forked from a warm zygote of its environment, else
launched), so the host goes on claiming while fewer than ``max_running`` run. A task
whose process dies (a crash, even a SIGKILL) ends ``failed`` with why ("killed by signal
SIGKILL ...") and only that task is lost. Warm stop: claim no more and wait for every
service; cold stop: mark them all stopped and kill their processes. A ``kill -9`` of the
host takes the services with it (the zygotes' and the tasks' parent-death signals and
watchdogs).

Earlier the host spawned a child process per task to run its runner in, which then
launched the task cold: two interpreter starts per service (~0.8 s of a remote
pipeline run) for an isolation the task's own process already gives.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from agent.daemon.loop import Daemon
from agent.store.base import Backend

log = logging.getLogger(__name__)

#: Default number of service tasks one host runs at once.
DEFAULT_MAX_RUNNING = 8


class ServicesHost(Daemon):
    """A daemon that runs up to ``max_running`` service tasks at once, claiming meanwhile.

    Args:
        store: the control plane.
        queues: the queues of service tasks (usually ``services``).
        max_running: how many service tasks run at once (the daemon's slots).
        daemon_args: the rest of :class:`~agent.daemon.loop.Daemon`'s arguments
            (``runner_factory`` is required; ``slots`` is ``max_running``).
    """

    def __init__(
        self,
        store: Backend,
        queues: Sequence[str],
        max_running: int = DEFAULT_MAX_RUNNING,
        **daemon_args: Any,
    ):
        if max_running < 1:
            raise ValueError("max_running must be at least 1")
        if "slots" in daemon_args:
            raise TypeError("a services host takes max_running, not slots")
        super().__init__(store, queues, slots=max_running, **daemon_args)

    @property
    def max_running(self) -> int:
        """How many service tasks run at once."""
        return self.slots

    def run_task(self, task_id: str) -> None:
        """Start the service in a runner thread; return once a slot is free again."""
        log.info("service task %s starting (%d running)", task_id, len(self.task_threads) + 1)
        super().run_task(task_id)

    def collect_finished(self) -> list[str]:
        """Forget the services that ended (each has recorded its own final status)."""
        done = super().collect_finished()
        for task_id in done:
            log.info("service task %s ended (%d running)", task_id, len(self.task_threads))
        return done
