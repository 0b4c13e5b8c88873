"""The Backend contract: everything talks to the control plane through it.

Three implementations pass one contract suite (``tests/store/test_contract.py``):
``SqlBackend`` on SQLite, ``SqlBackend`` on PostgreSQL, and ``HttpBackend`` (the
client of ``agent server``, itself a thin shell over ``SqlBackend``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from agent.core.models import Artifact, LogLine, Model, Queue, Task, Worker

#: Seconds a claim's lease lasts unless the worker's heartbeat renews it.
DEFAULT_LEASE_S = 60.0
#: Status message of a task failed because its lease lapsed (its worker vanished).
WORKER_LOST = "worker lost"
#: Stats samples the store keeps per worker (the newest; one comes with each heartbeat).
WORKER_STATS_KEPT = 120

#: Fields of a task that ``update_task`` may change directly (status has its own call).
UPDATABLE_FIELDS = frozenset(
    {
        "name", "project", "type", "parent", "tags", "comment", "script", "hyperparams",
        "configuration", "container", "runtime", "output_uri", "status_message",
    }
)  # fmt: skip


@runtime_checkable
class Backend(Protocol):
    """Projects, tasks, queues, workers, logs, metrics and artifact metadata."""

    # -- projects ---------------------------------------------------------
    def list_projects(self) -> list[str]:
        """Names of the projects that hold at least one task (or were created)."""

    def create_project(self, name: str) -> str:
        """Create (idempotent) and return the project name."""

    # -- tasks ------------------------------------------------------------
    def create_task(self, task: Task, queue: str | None = None, priority: int = 0) -> Task:
        """Store a new task (status ``created``); timestamps are set by the store.

        With ``queue``, the task is also enqueued there in the same transaction, as
        :meth:`enqueue` would (status ``queued``): one call instead of two.
        Raises Conflict for an id already taken, InvalidInput for a bad task or queue name.
        """

    def get_task(self, task_id: str) -> Task:
        """The task with its artifacts. Raises NotFound."""

    def update_task(self, task_id: str, **fields: Any) -> Task:
        """Change fields of :data:`UPDATABLE_FIELDS`; dict fields replace whole.

        Raises InvalidInput for other fields, NotFound for an unknown id.
        """

    def merge_runtime(self, task_id: str, values: dict[str, Any]) -> Task:
        """Merge ``values`` into the task's runtime properties (atomic)."""

    def set_status(
        self,
        task_id: str,
        status: str,
        message: str | None = None,
        expected: Sequence[str] | None = None,
    ) -> Task:
        """Move the task through ``transition()``; sets started/completed times.

        ``expected``: only move when the current status is one of these, else Conflict.
        Leaving ``queued`` removes the queue entry; leaving ``in_progress`` frees the lease.
        """

    def clone_task(
        self,
        task_id: str,
        name: str | None = None,
        parent: str | None = None,
        project: str | None = None,
    ) -> Task:
        """A new ``created`` task with the source's definition (not its results)."""

    def query_tasks(
        self,
        project: str | None = None,
        name: str | None = None,
        status: str | Sequence[str] | None = None,
        tag: str | None = None,
        type: str | None = None,
        parent: str | None = None,
        runtime: dict[str, Any] | None = None,
        limit: int = 1000,
        id_prefix: str | None = None,
        offset: int = 0,
        text: str | None = None,
    ) -> list[Task]:
        """Tasks matching every given filter, newest first (without artifacts).

        ``id_prefix``: only tasks whose id starts with it (case-sensitive), to resolve
        the short ids people type; InvalidInput past 64 characters (an id's most).
        ``offset``: skip that many of the matches first (a page: ``offset=n * limit``).
        ``text``: only tasks with it in their id, name, project, comment or a tag
        (ignoring ASCII case; ``%`` and ``_`` are no wildcards).
        """

    def delete_task(self, task_id: str) -> None:
        """Remove a task and everything it owns."""

    # -- queues -----------------------------------------------------------
    def create_queue(self, name: str) -> Queue:
        """Create (idempotent) and return the queue."""

    def get_queue(self, name: str) -> Queue:
        """Raises NotFound."""

    def list_queues(self) -> list[Queue]:
        """All queues with their current length."""

    def enqueue(self, task_id: str, queue: str, priority: int = 0) -> Task:
        """Put the task on the queue (created on demand); status -> queued.

        A claim waiting on that queue in the store's process is woken at once: one
        claim per task enqueued, not every waiting claim.
        """

    def dequeue(self, task_id: str) -> Task:
        """Take a queued task off its queue; status -> created."""

    def queue_entries(self, queue: str) -> list[str]:
        """Task ids waiting on the queue, in claim order."""

    def move_queue_entry(self, task_id: str, position: int) -> list[str]:
        """Move a queued task to ``position`` in its queue's claim order (0 = next; past
        either end = that end). To pass entries of another priority it takes theirs.

        Returns:
            The queue's task ids in their new order.

        Raises:
            NotFound: no such task. Conflict: the task is not queued.
        """

    def claim(
        self,
        queues: Sequence[str],
        worker_id: str,
        timeout: float = 0.0,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> Task | None:
        """Atomically take the next task: queues in the given order, then highest
        priority, then FIFO. The task moves to ``in_progress`` with a lease held by
        ``worker_id``. Waits up to ``timeout`` seconds for one to arrive."""

    def interrupt_claims(self) -> None:
        """End the claims waiting through this backend object now, from any thread: they
        return None at once (the daemon's stop, while it long-polls an empty queue). A
        claim that is already taking a task returns it."""

    def wait_for_stop(self, task_ids: Sequence[str], timeout: float = 0.0) -> dict[str, str | None]:
        """Those of ``task_ids`` that are no longer in progress, by id, with their status
        (None: no such task); waits up to ``timeout`` seconds for one to leave
        ``in_progress`` when none has yet ({} if none did).

        What a process running tasks asks, once for all of them, to notice an abort (see
        :mod:`agent.store.stops`): a change through the same store wakes the wait at once,
        one from another process within about a quarter of a second. InvalidInput for
        more than 1,000 ids.
        """

    # -- workers ----------------------------------------------------------
    def register_worker(
        self,
        worker_id: str,
        queues: Sequence[str],
        name: str = "",
        stats: dict[str, Any] | None = None,
    ) -> Worker:
        """Create or refresh a worker record."""

    def heartbeat(
        self, worker_id: str, stats: dict[str, Any] | None = None, lease_s: float = DEFAULT_LEASE_S
    ) -> Worker:
        """Mark the worker alive and renew the leases of its in-progress tasks."""

    def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker (its running tasks keep their leases until they lapse)."""

    def list_workers(self, alive_within: float | None = None) -> list[Worker]:
        """Workers, with the tasks they run; optionally only recently seen ones."""

    def get_worker_stats(self, after: float = 0.0) -> dict[str, list[tuple[float, dict[str, Any]]]]:
        """The stats samples of registered workers reported after ``after`` (a timestamp):
        ``{worker_id: [(ts, stats), ...]}``, oldest first, at most
        :data:`WORKER_STATS_KEPT` per worker; a worker without new samples is left out.

        Each :meth:`register_worker` or :meth:`heartbeat` that carries stats adds one."""

    def reap_expired(self) -> list[str]:
        """Fail every in-progress task whose lease lapsed (:data:`WORKER_LOST`); return ids.

        The SQL store also does it, at most once a second per process, when tasks,
        queues or workers are read: no daemon or server needs to run for a lapsed lease
        to show as a lost worker."""

    # -- logs and metrics -------------------------------------------------
    def append_logs(self, task_id: str, lines: Iterable[str | tuple[float, str, str]]) -> int:
        """Append lines (text, or (ts, level, text)); return the last seq."""

    def get_logs(
        self,
        task_id: str,
        after: int = 0,
        limit: int = 10000,
        before: int | None = None,
        newest: bool = False,
        contains: str | None = None,
    ) -> list[LogLine]:
        """Lines with seq > ``after`` (and < ``before``), oldest first: the first ``limit``
        of them, or with ``newest`` the last ``limit`` (a log's tail, the page before a
        line). With ``contains``, only the lines holding that text (any case)."""

    def report_scalars(self, task_id: str, points: Iterable[tuple[str, str, int, float]]) -> None:
        """Store (title, series, iteration, value) points."""

    def get_scalars(self, task_id: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
        """{title: {series: [(iteration, value), ...]}} ordered by iteration."""

    def report_plot(
        self, task_id: str, title: str, series: str, iteration: int, figure: dict[str, Any]
    ) -> None:
        """Store a plot (JSON figure); the same (title, series, iteration) replaces."""

    def get_plots(self, task_id: str) -> list[dict[str, Any]]:
        """[{title, series, iteration, figure}] in report order."""

    # -- artifacts --------------------------------------------------------
    def add_artifact(self, task_id: str, artifact: Artifact) -> Artifact:
        """Record (or replace) an artifact of the task."""

    def get_artifacts(self, task_id: str) -> dict[str, Artifact]:
        """The task's artifacts by name."""

    def find_artifact_by_hash(self, sha256: str) -> Artifact | None:
        """Any artifact with that content hash (dedup of blobs)."""

    # -- models -----------------------------------------------------------
    def create_model(self, model: Model) -> Model:
        """Register a model (its id is the caller's); stamps ``created``/``last_update``."""

    def get_model(self, model_id: str) -> Model:
        """The model with that id. Raises NotFound."""

    def update_model(self, model_id: str, **fields: Any) -> Model:
        """Change fields of :data:`~agent.core.models.MODEL_UPDATABLE_FIELDS`."""

    def query_models(
        self,
        project: str | None = None,
        name: str | None = None,
        task: str | None = None,
        ids: Sequence[str] | None = None,
        sha256: str | None = None,
        only_published: bool = False,
        include_archived: bool = False,
        limit: int | None = None,
    ) -> list[Model]:
        """Models matching every filter given, the last updated first."""

    def delete_model(self, model_id: str) -> None:
        """Forget a model (its blob stays: other models may share it)."""

    def close(self) -> None:
        """Release connections."""
