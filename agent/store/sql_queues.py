"""Queues, claims and leases of :class:`~agent.store.sql.SqlBackend`: enqueue and
dequeue, claim a queue's head (long-polling), and fail the tasks whose lease lapsed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from agent.core.errors import Conflict, InvalidInput, NotFound
from agent.core.lazy import LazyModule
from agent.core.models import Queue, Task, TaskStatus, new_id, now
from agent.store.base import DEFAULT_LEASE_S, WORKER_LOST
from agent.store.stops import MAX_STOP_IDS, Stopped
from agent.store.tx import Tx
from agent.store.wakeups import ClaimWaiter, PollBackoff

sa = LazyModule("sqlalchemy")
t = LazyModule("agent.store.schema")

#: Seconds between two reaps of lapsed leases that reads of tasks, queues and workers
#: make in one process (see ``SqlBackend._reap_on_read``).
REAP_ON_READ_S = 1.0

log = logging.getLogger("agent.store")


class SqlQueues:
    """Mixed into SqlBackend: queues, claims and lapsed leases."""

    def create_queue(self, name: str) -> Queue:
        _validate_queue_name(name)
        with self._tx_write() as tx:
            queue_id = self._ensure_queue(tx, name)
        self._known_queues[name] = queue_id
        return self.get_queue(name)

    def _ensure_queue(self, tx: Tx, name: str) -> str:
        """The queue's id, creating the queue if need be. Callers remember the id in
        ``_known_queues`` once their transaction has committed."""
        if name in self._known_queues:
            return self._known_queues[name]
        tx.run("INSERT_QUEUE", {"id": new_id(), "name": name, "created": now()})
        return tx.scalar("QUEUE_ID", {"name": name})

    def _insert_entry(self, tx: Tx, queue_id: str, task_id: str, priority: int) -> None:
        entry = {"queue_id": queue_id, "task_id": task_id, "priority": int(priority)}
        tx.run("INSERT_ENTRY", {**entry, "enqueued": now()})

    def get_queue(self, name: str) -> Queue:
        for queue in self.list_queues():
            if queue.name == name:
                return queue
        raise NotFound(f"no queue named '{name}'")

    def list_queues(self) -> list[Queue]:
        self._reap_on_read()
        counts = (
            sa.select(t.queue_entries.c.queue_id, sa.func.count().label("n"))
            .group_by(t.queue_entries.c.queue_id)
            .subquery()
        )
        query = (
            sa.select(t.queues, sa.func.coalesce(counts.c.n, 0).label("length"))
            .select_from(t.queues.outerjoin(counts, counts.c.queue_id == t.queues.c.id))
            .order_by(t.queues.c.name)
        )
        with self._read() as conn:
            return [
                Queue(id=r["id"], name=r["name"], created=r["created"], length=int(r["length"]))
                for r in conn.execute(query).mappings()
            ]

    def enqueue(self, task_id: str, queue: str, priority: int = 0) -> Task:
        _validate_queue_name(queue)
        with self._tx_write() as tx:
            row = self._require(tx, task_id, lock=True)
            row = self._set_status(
                tx, row, TaskStatus.queued.value, "", None,
                queue=queue, worker=None, started=None, completed=None,
            )  # fmt: skip
            queue_id = self._ensure_queue(tx, queue)
            self._insert_entry(tx, queue_id, task_id, priority)
            task = self._with_artifacts(tx, row)
        self._known_queues[queue] = queue_id
        self.claim_signals.notify(queue)
        self.task_stops.changed({task_id: task.status})
        self._ring()
        return task

    def dequeue(self, task_id: str) -> Task:
        return self.set_status(
            task_id, TaskStatus.created.value, "dequeued", expected=[TaskStatus.queued.value]
        )

    def queue_entries(self, queue: str) -> list[str]:
        self._reap_on_read()
        query = (
            sa.select(t.queue_entries.c.task_id)
            .select_from(
                t.queue_entries.join(t.queues, t.queues.c.id == t.queue_entries.c.queue_id)
            )
            .where(t.queues.c.name == queue)
            .order_by(t.queue_entries.c.priority.desc(), t.queue_entries.c.id)
        )
        with self._read() as conn:
            return [r[0] for r in conn.execute(query)]

    def move_queue_entry(self, task_id: str, position: int) -> list[str]:
        entries = t.queue_entries
        with self._write() as conn:
            mine = conn.execute(
                sa.select(entries.c.queue_id).where(entries.c.task_id == task_id)
            ).first()
            if mine is None:
                self.get_task(task_id)  # NotFound for an unknown task
                raise Conflict(f"task {task_id} is not queued: only a queued task can be moved")
            rows = [
                dict(r)
                for r in conn.execute(
                    sa.select(entries.c.task_id, entries.c.priority, entries.c.enqueued)
                    .where(entries.c.queue_id == mine.queue_id)
                    .order_by(entries.c.priority.desc(), entries.c.id)
                    .with_for_update()
                ).mappings()
            ]
            old = next(i for i, r in enumerate(rows) if r["task_id"] == task_id)
            new = max(0, min(int(position), len(rows) - 1))
            moved = rows.pop(old)
            rows.insert(new, moved)
            # Keep the order a claim reads (priority desc, then id): between its new
            # neighbours' priorities, and the entries from the first that changed place
            # inserted again, so their new ids follow the new order.
            priority = moved["priority"]
            if new > 0:
                priority = min(priority, rows[new - 1]["priority"])
            if new + 1 < len(rows):
                priority = max(priority, rows[new + 1]["priority"])
            moved["priority"] = priority
            changed = rows[min(old, new) :]
            ids = [r["task_id"] for r in changed]
            conn.execute(sa.delete(entries).where(entries.c.task_id.in_(ids)))
            for r in changed:
                conn.execute(sa.insert(entries).values(queue_id=mine.queue_id, **r))
        return [r["task_id"] for r in rows]

    def claim(
        self,
        queues: Sequence[str],
        worker_id: str,
        timeout: float = 0.0,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> Task | None:
        queues = [queues] if isinstance(queues, str) else list(queues)
        if not queues:
            raise InvalidInput("claim needs at least one queue")
        if timeout <= 0:
            if not self._any_waiting(queues):
                return None
            return self._claim_once(queues, worker_id, lease_s)
        return self._wait_and_claim(queues, worker_id, time.monotonic() + float(timeout), lease_s)

    def _wait_and_claim(
        self, queues: list[str], worker_id: str, deadline: float, lease_s: float
    ) -> Task | None:
        backoff = PollBackoff(deadline, listening=self.hears_enqueues())
        interrupts = self.claims_interrupted
        with (
            self.listen_for_changes() as listener,
            self.claim_signals.waiting(queues, listener) as waiter,
        ):
            while (task := self.claim_step(queues, worker_id, lease_s, waiter)) is None:
                pause = backoff.next_pause()
                if pause is None or self.claims_interrupted != interrupts:
                    return None
                waiter.wait(pause)
                if self.claims_interrupted != interrupts:
                    return None
            return task

    def interrupt_claims(self) -> None:
        """End the claims waiting through this backend now: they return None (a daemon
        that is asked to stop while it long-polls). A claim already taking a task still
        returns it."""
        self.claims_interrupted += 1
        self.claim_signals.wake_all()

    def claim_step(
        self, queues: list[str], worker_id: str, lease_s: float, waiter: ClaimWaiter
    ) -> Task | None:
        """One look at the queues for a claim waiting with ``waiter``
        (:meth:`ClaimSignals.waiting <agent.store.wakeups.ClaimSignals.waiting>`): the
        task it takes, or None. Between two steps the claim waits for a wake-up."""
        task, unused = self.claim_look(queues, worker_id, lease_s, waiter.take())
        waiter.hand_on(unused)  # for tasks on its other queues: other claimers
        return task

    def claim_look(
        self, queues: list[str], worker_id: str, lease_s: float, wakeups: list[str]
    ) -> tuple[Task | None, list[str]]:
        """The look of :meth:`claim_step`, given the wake-ups taken from its waiter: the
        task it takes (or None) and the wake-ups it did not use."""
        # A wake-up means a task was enqueued here: claim without the read first.
        if not wakeups and not self._any_waiting(queues):
            return None, []
        task = self._claim_once(queues, worker_id, lease_s)
        if task is None:
            return None, []  # another claimer took what the wake-ups were for
        if task.queue in wakeups:
            wakeups.remove(task.queue)
        return task, wakeups

    def _any_waiting(self, queues: list[str]) -> bool:
        """Whether a claim should look: a cheap read first on SQLite, so idle claimers
        polling an empty queue never take its write lock. PostgreSQL's claim takes no
        lock when there is nothing to take, so it looks at once (one round trip less)."""
        if not self.is_sqlite:
            return True
        with self._tx_read() as tx:
            return tx.first("ANY_ENTRY", {"queues": queues}) is not None

    def _claim_once(self, queues: list[str], worker_id: str, lease_s: float) -> Task | None:
        with self._tx_claim() as tx:
            stamp = now()
            values = dict(
                status=TaskStatus.in_progress.value,
                worker=worker_id,
                started=stamp,
                completed=None,
                last_update=stamp,
                lease_expires=stamp + lease_s,
                status_message="",
            )
            for name in queues:
                row = self._claim_head(tx, name, values)
                if row is not None:
                    return self._with_artifacts(tx, row)
        return None

    # -- running tasks ------------------------------------------------------
    def wait_for_stop(self, task_ids: Sequence[str], timeout: float = 0.0) -> Stopped:
        task_ids = check_stop_ids(task_ids)
        if timeout <= 0 or not task_ids:
            return self.stopped_tasks(task_ids)
        with self.task_stops.waiting(task_ids) as waiter:
            stopped = self.stopped_tasks(task_ids)
            if not stopped:
                waiter.wait(float(timeout))
                stopped = dict(waiter.stopped)
        return stopped

    def stopped_tasks(self, task_ids: Sequence[str]) -> Stopped:
        """Those of ``task_ids`` that are not in progress, with their status (None: no
        such task): on PostgreSQL in one query (``statements.STOPPED_AMONG``), on SQLite
        in one per thousand ids."""
        if not self.is_sqlite:
            with self._pg_pool().autocommit() as tx:
                rows = tx.all("STOPPED_AMONG", {"task_ids": list(task_ids)})
            stopped = {row["id"]: row["status"] for row in rows}
            return {i: stopped[i] for i in task_ids if i in stopped}
        statuses: dict[str, str] = {}
        with self._tx_read() as tx:
            for start in range(0, len(task_ids), MAX_STOP_IDS):
                chunk = list(task_ids[start : start + MAX_STOP_IDS])
                for row in tx.all("TASK_STATUSES", {"task_ids": chunk}):
                    statuses[row["id"]] = row["status"]
        running = TaskStatus.in_progress.value
        return {i: statuses.get(i) for i in task_ids if statuses.get(i) != running}

    def _claim_head(self, tx: Tx, queue: str, values: dict) -> dict | None:
        """Take the head of ``queue`` and claim its task: the task's row, or None."""
        if not self.is_sqlite:  # one statement; past a top priority all locked if need be
            return tx.first("CLAIM_HEAD", {"queue": queue, **values})
        task_id = tx.scalar("TAKE_HEAD", {"queue": queue})
        if task_id is None:
            return None
        row = tx.first("CLAIM_TASK", {"task_id": task_id, **values})
        assert row is not None, task_id  # the entry's task: the foreign key holds it
        return row

    # -- leases -------------------------------------------------------------
    def reap_expired(self) -> list[str]:
        with self._tx_write() as tx:
            lapsed = tx.all("LAPSED_TASKS", {"now": now()})
            for row in lapsed:
                self._set_status(tx, row, TaskStatus.failed.value, WORKER_LOST, None)
        if lapsed:
            self.task_stops.changed({row["id"]: TaskStatus.failed.value for row in lapsed})
            self._ring()
        return [row["id"] for row in lapsed]

    def _reap_on_read(self) -> None:
        """Fail the tasks whose lease lapsed, at most once per :data:`REAP_ON_READ_S` in
        this process: every reader of the store (the CLI, the SDK, the UI) sees a vanished
        worker's task as lost, though no daemon or server runs to reap it. A cheap read
        first, so readers take no write lock while every lease holds."""
        clock = time.monotonic()
        if clock < self._next_reap_on_read:
            return
        self._next_reap_on_read = clock + REAP_ON_READ_S
        try:
            with self._tx_read() as tx:
                if tx.first("ANY_LAPSED", {"now": now()}) is None:
                    return
            lost = self.reap_expired()
        except Exception:  # the read itself must not fail for a reap it did not ask for
            log.warning("reaping lapsed leases on read failed", exc_info=True)
            return
        log.info("worker lost: failed %d task(s) whose lease lapsed: %s", len(lost), lost)


def check_stop_ids(task_ids: Sequence[str]) -> list[str]:
    """The distinct ids of a ``wait_for_stop``; InvalidInput for too many or a non-id."""
    if isinstance(task_ids, str):
        raise InvalidInput("wait_for_stop takes a list of task ids, not one id")
    ids = list(dict.fromkeys(task_ids))
    if len(ids) > MAX_STOP_IDS:
        raise InvalidInput(f"wait_for_stop takes at most {MAX_STOP_IDS} task ids at once")
    if not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
        raise InvalidInput("task ids are 1 to 64 characters")
    return ids


def _validate_queue_name(name: str) -> None:
    if not name or len(name) > 255 or not isinstance(name, str):
        raise InvalidInput("queue name must be 1 to 255 characters")
