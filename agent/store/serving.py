"""Who serves a queue: the live workers that listen on it, the warning given where a task
is enqueued and none does, and the line that says what a queued task waits for.

A worker is live while its last heartbeat is younger than :data:`MISSED_BEATS` of its
own heartbeat intervals (the daemon reports its interval in its stats as
``heartbeat_s``), or than the default lease for a claimer that does not report one.
A daemon stopped cleanly unregisters at once; one killed stops being live that long
after its last beat.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from agent.core.models import TaskStatus
from agent.store.base import DEFAULT_LEASE_S

if TYPE_CHECKING:
    from agent.core.models import Task, Worker
    from agent.store.base import Backend

#: Heartbeats a worker may miss before it no longer counts as serving its queues.
MISSED_BEATS = 3
#: The queue of pipeline controllers, served by agents in services mode.
SERVICES_QUEUE = "services"


def is_live(worker: Worker, at: float | None = None) -> bool:
    """Whether the worker beat recently enough to be running (see the module's notes)."""
    interval = worker.stats.get("heartbeat_s")
    within = MISSED_BEATS * float(interval) if interval else DEFAULT_LEASE_S
    return (time.time() if at is None else at) - worker.last_heartbeat <= within


def serving_workers(backend: Backend, queue: str) -> list[Worker]:
    """The live workers listening on ``queue``."""
    at = time.time()
    return [w for w in backend.list_workers() if queue in w.queues and is_live(w, at)]


def start_hint(queue: str) -> str:
    """The command that starts an agent for ``queue`` (services mode for controllers)."""
    services = " --services-mode" if queue == SERVICES_QUEUE else ""
    return f"agent daemon --queue {queue}{services}"


def unserved_warning(backend: Backend, queue: str) -> str | None:
    """The warning to give when no live worker listens on ``queue``; None when one does."""
    if serving_workers(backend, queue):
        return None
    return f"warning: no agent serves queue '{queue}' (start one: {start_hint(queue)})"


def warn_if_unserved(backend: Backend, queue: str, stream: TextIO | None = None) -> str | None:
    """Say on stderr (or ``stream``) that nobody serves ``queue``, when nobody does:
    what ``agent enqueue``, ``agent run``, ``agent clone``, ``Task.enqueue`` and a remote
    pipeline launch print after enqueueing. Returns the warning given, if any."""
    warning = unserved_warning(backend, queue)
    if warning is not None:
        print(warning, file=stream or sys.stderr, flush=True)
    return warning


def queue_wait_line(backend: Backend, task: Task) -> str | None:
    """What a queued task waits for: "queued on 'default', position 3, 2 agents serve
    it"; None when the task is not queued."""
    if task.status != TaskStatus.queued.value or not task.queue:
        return None
    line = f"queued on '{task.queue}'"
    entries = backend.queue_entries(task.queue)
    if task.id in entries:
        line += f", position {entries.index(task.id) + 1}"
    serving = len(serving_workers(backend, task.queue))
    if serving == 0:
        return f"{line}, no agent serves it (start one: {start_hint(task.queue)})"
    agents = "1 agent serves" if serving == 1 else f"{serving} agents serve"
    return f"{line}, {agents} it"
