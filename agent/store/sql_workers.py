"""Workers of :class:`~agent.store.sql.SqlBackend`: register, heartbeat (which extends
the leases of the worker's running tasks), unregister and list them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.core.errors import InvalidInput, NotFound
from agent.core.lazy import LazyModule
from agent.core.models import TaskStatus, Worker, now
from agent.core.values import without_non_finite
from agent.store.base import DEFAULT_LEASE_S, WORKER_STATS_KEPT

sa = LazyModule("sqlalchemy")
t = LazyModule("agent.store.schema")


class SqlWorkers:
    """Mixed into SqlBackend: the workers table (SQLAlchemy Core)."""

    def register_worker(
        self,
        worker_id: str,
        queues: Sequence[str],
        name: str = "",
        stats: dict[str, Any] | None = None,
    ) -> Worker:
        if not worker_id or len(worker_id) > 255:
            raise InvalidInput("worker id must be 1 to 255 characters")
        stamp = now()
        values = {
            "name": name or worker_id,
            "queues": list(queues),
            "last_heartbeat": stamp,
            "stats": without_non_finite(stats or {}),
        }
        with self._tx_write() as tx:
            row = tx.first("UPDATE_WORKER", {**values, "worker_id": worker_id})
            if row is None:
                row = {**values, "id": worker_id, "registered": stamp}
                tx.run("INSERT_WORKER", row)
            if stats:
                _add_stats_sample(tx, worker_id, stamp, values["stats"])
            running = [r["id"] for r in tx.all("RUNNING_UNDER", {"worker_id": worker_id})]
        return _worker_of_row(row, running)

    def heartbeat(
        self, worker_id: str, stats: dict[str, Any] | None = None, lease_s: float = DEFAULT_LEASE_S
    ) -> Worker:
        # Named statements on the busy path, and an answer about this worker only: a
        # fleet's heartbeats must not each read every worker and every running task.
        stamp = now()
        params: dict[str, Any] = {"worker_id": worker_id, "last_heartbeat": stamp}
        if stats is not None:
            params["stats"] = without_non_finite(stats)
        if not self.is_sqlite:
            return self._heartbeat_in_one(params, stamp + lease_s)
        with self._tx_write() as tx:
            row = tx.first("BEAT_WITH_STATS" if stats is not None else "BEAT", params)
            if row is None:
                raise NotFound(f"no worker '{worker_id}' (register it first)")
            if stats:
                _add_stats_sample(tx, worker_id, stamp, params["stats"])
            renew = {"worker_id": worker_id, "lease_expires": stamp + lease_s}
            running = [r["id"] for r in tx.all("RENEW_LEASES", renew)]
        return _worker_of_row(row, running)

    def _heartbeat_in_one(self, params: dict[str, Any], lease_expires: float) -> Worker:
        """PostgreSQL: the heartbeat, its stats sample and the lease renewals in one
        statement (``statements.HEARTBEAT``)."""
        one = {
            "worker_id": params["worker_id"],
            "beat_at": params["last_heartbeat"],
            "lease_expires": lease_expires,
        }
        name = "HEARTBEAT"
        if "stats" in params:
            name = "HEARTBEAT_WITH_STATS"
            # The statement's trim sees the samples before this one: keep one fewer.
            one.update(new_stats=params["stats"], sample=bool(params["stats"]))
            one["skip"] = WORKER_STATS_KEPT - 2
        with self._pg_pool().autocommit() as tx:
            row = tx.first(name, one)
        if row is None:
            raise NotFound(f"no worker '{params['worker_id']}' (register it first)")
        return _worker_of_row(row, sorted(row["running"] or ()))

    def unregister_worker(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(t.worker_stats).where(t.worker_stats.c.worker_id == worker_id))
            conn.execute(sa.delete(t.workers).where(t.workers.c.id == worker_id))

    def get_worker_stats(self, after: float = 0.0) -> dict[str, list[tuple[float, dict[str, Any]]]]:
        samples = t.worker_stats
        query = (
            sa.select(samples.c.worker_id, samples.c.ts, samples.c.stats)
            .where(samples.c.ts > float(after))
            .order_by(samples.c.worker_id, samples.c.ts)
        )
        history: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        with self._read() as conn:
            for worker_id, ts, stats in conn.execute(query):
                history.setdefault(worker_id, []).append((ts, dict(stats or {})))
        return history

    def _worker(self, worker_id: str) -> Worker:
        with self._tx_read() as tx:
            row = tx.first("WORKER", {"worker_id": worker_id})
            if row is None:
                raise NotFound(f"no worker '{worker_id}'")
            running = [r["id"] for r in tx.all("RUNNING_UNDER", {"worker_id": worker_id})]
        return _worker_of_row(row, running)

    def list_workers(self, alive_within: float | None = None) -> list[Worker]:
        self._reap_on_read()
        query = sa.select(t.workers).order_by(t.workers.c.id)
        if alive_within is not None:
            query = query.where(t.workers.c.last_heartbeat >= now() - alive_within)
        running = sa.select(t.tasks.c.id, t.tasks.c.worker).where(
            t.tasks.c.status == TaskStatus.in_progress.value
        )
        with self._read() as conn:
            by_worker: dict[str, list[str]] = {}
            for task_id, worker in conn.execute(running):
                by_worker.setdefault(worker, []).append(task_id)
            return [
                _worker_of_row(r, by_worker.get(r["id"], []))
                for r in conn.execute(query).mappings()
            ]


def _add_stats_sample(tx: Any, worker_id: str, stamp: float, stats: dict[str, Any]) -> None:
    """Keep ``stats`` as the worker's newest sample, and only the newest
    :data:`WORKER_STATS_KEPT`: one insert and one indexed delete per heartbeat."""
    tx.run("INSERT_STATS_SAMPLE", {"worker_id": worker_id, "ts": stamp, "stats": stats})
    tx.run("TRIM_STATS_SAMPLES", {"worker_id": worker_id, "skip": WORKER_STATS_KEPT - 1})


def _worker_of_row(row: Any, tasks: list[str]) -> Worker:
    return Worker(
        id=row["id"],
        name=row["name"],
        queues=list(row["queues"]),
        last_heartbeat=row["last_heartbeat"],
        registered=row["registered"],
        stats=dict(row["stats"] or {}),
        tasks=tasks,
    )
