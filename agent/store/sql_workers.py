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
        with self._write() as conn:
            exists = conn.execute(
                sa.select(t.workers.c.id).where(t.workers.c.id == worker_id)
            ).first()
            values = dict(
                name=name or worker_id,
                queues=list(queues),
                last_heartbeat=stamp,
                stats=without_non_finite(stats or {}),
            )
            if exists:
                conn.execute(
                    sa.update(t.workers).where(t.workers.c.id == worker_id).values(**values)
                )
            else:
                conn.execute(sa.insert(t.workers).values(id=worker_id, registered=stamp, **values))
            if stats:
                _add_stats_sample(conn, worker_id, stamp, values["stats"])
        return self._worker(worker_id)

    def heartbeat(
        self, worker_id: str, stats: dict[str, Any] | None = None, lease_s: float = DEFAULT_LEASE_S
    ) -> Worker:
        stamp = now()
        with self._write() as conn:
            values: dict[str, Any] = {"last_heartbeat": stamp}
            if stats is not None:
                values["stats"] = without_non_finite(stats)
            result = conn.execute(
                sa.update(t.workers).where(t.workers.c.id == worker_id).values(**values)
            )
            if result.rowcount == 0:
                raise NotFound(f"no worker '{worker_id}' (register it first)")
            if stats:
                _add_stats_sample(conn, worker_id, stamp, values["stats"])
            conn.execute(
                sa.update(t.tasks)
                .where(
                    sa.and_(
                        t.tasks.c.worker == worker_id,
                        t.tasks.c.status == TaskStatus.in_progress.value,
                    )
                )
                .values(lease_expires=stamp + lease_s)
            )
        return self._worker(worker_id)

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
        for worker in self.list_workers():
            if worker.id == worker_id:
                return worker
        raise NotFound(f"no worker '{worker_id}'")

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
                Worker(
                    id=r["id"],
                    name=r["name"],
                    queues=list(r["queues"]),
                    last_heartbeat=r["last_heartbeat"],
                    registered=r["registered"],
                    stats=dict(r["stats"] or {}),
                    tasks=by_worker.get(r["id"], []),
                )
                for r in conn.execute(query).mappings()
            ]


def _add_stats_sample(conn: Any, worker_id: str, stamp: float, stats: dict[str, Any]) -> None:
    """Keep ``stats`` as the worker's newest sample, and only the newest
    :data:`WORKER_STATS_KEPT`: one insert and one indexed delete per heartbeat."""
    samples = t.worker_stats
    conn.execute(sa.insert(samples).values(worker_id=worker_id, ts=stamp, stats=stats))
    oldest_kept = (
        sa.select(samples.c.ts)
        .where(samples.c.worker_id == worker_id)
        .order_by(samples.c.ts.desc())
        .offset(WORKER_STATS_KEPT - 1)
        .limit(1)
        .scalar_subquery()
    )
    conn.execute(
        sa.delete(samples).where(samples.c.worker_id == worker_id, samples.c.ts < oldest_kept)
    )
