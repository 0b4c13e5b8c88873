"""PgPool: SqlBackend's raw psycopg connections on a real PostgreSQL.

What a pool of long-lived connections must survive: the server dropping a connection
while it sits idle, and a fork.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from agent.core.models import Task
from agent.store import pg as pg_module
from agent.store import statements as q
from agent.store import wakeups
from agent.store.sql import SqlBackend
from agent.store.tx import AlchemyTx

pytestmark = pytest.mark.postgres


@pytest.fixture
def backend(pg_store: SqlBackend) -> SqlBackend:
    return pg_store


def _idle_backend_pids(store: SqlBackend) -> list[int]:
    return [conn.info.backend_pid for conn, _ in store._pg._threads.idle]


def _terminate(store: SqlBackend, pids: list[int]) -> None:
    with psycopg.connect(store._pg.conninfo, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_connection_dropped_while_idle_is_replaced_unnoticed(backend, monkeypatch) -> None:
    task = backend.create_task(Task(name="a", project="p"))
    pids = _idle_backend_pids(backend)
    assert pids
    _terminate(backend, pids)
    monkeypatch.setattr(pg_module, "PING_AFTER_IDLE_S", 0.0)  # as if idle a while
    assert backend.get_task(task.id).name == "a"
    assert not set(_idle_backend_pids(backend)) & set(pids)


def test_a_connection_dropped_just_after_use_is_replaced_unnoticed(backend) -> None:
    # Not pinged (used a moment ago): the first statement finds it gone and runs again.
    task = backend.create_task(Task(name="a", project="p"))
    pids = _idle_backend_pids(backend)
    _terminate(backend, pids)
    assert backend.get_task(task.id).name == "a"
    backend.set_status(task.id, "queued")
    assert not set(_idle_backend_pids(backend)) & set(pids)


def test_other_database_errors_keep_the_connection(backend) -> None:
    task = backend.create_task(Task(name="a", project="p"))
    pids = _idle_backend_pids(backend)
    for conn, _ in backend._pg._threads.idle:  # wait a moment for a row lock, then fail
        conn.execute("SET lock_timeout = '100ms'")
        conn.commit()
    with psycopg.connect(backend._pg.conninfo) as holder:
        holder.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (task.id,))
        with pytest.raises(psycopg.errors.LockNotAvailable):  # an OperationalError
            backend.update_task(task.id, runtime={"k": 1})
    assert _idle_backend_pids(backend) == pids
    assert backend.get_task(task.id).runtime == {}  # rolled back


def test_threads_starting_at_once_share_one_pool(backend, monkeypatch) -> None:
    task = backend.create_task(Task(name="a", project="p"))
    fresh = SqlBackend(backend.url)
    made = []
    original = pg_module.PgPool.__init__

    def counting(self, *args, **kwargs):
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(pg_module.PgPool, "__init__", counting)
    barrier = threading.Barrier(8)

    def read() -> str:
        barrier.wait()
        return fresh.get_task(task.id).name

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda _: read(), range(8))) == ["a"] * 8
    assert len(made) == 1
    fresh.close()


def test_rows_read_raw_are_the_rows_sqlalchemy_reads(backend) -> None:
    task = backend.create_task(
        Task(
            name="j",
            project="p",
            hyperparams={"Args": {"x": 1.5, "s": "text", "n": None, "l": [1, {"a": 2}]}},
            runtime={"str": "just a string", "none": None},
        )
    )
    raw = backend.get_task(task.id)
    with backend.engine.connect() as conn:
        through_alchemy = AlchemyTx(conn, q.named("postgresql")).first("TASK", {"task_id": task.id})
    assert raw.hyperparams == through_alchemy["hyperparams"] == task.hyperparams
    assert raw.runtime == through_alchemy["runtime"] == {"str": "just a string", "none": None}
    assert raw.created == through_alchemy["created"] and isinstance(raw.created, float)


def test_a_forked_child_opens_its_own_connections(backend) -> None:
    task = backend.create_task(Task(name="a", project="p"))
    parent_pids = _idle_backend_pids(backend)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's verdict is its exit code
        try:
            child = backend.create_task(Task(name="child", project="p"))
            fresh = not set(_idle_backend_pids(backend)) & set(parent_pids)
            os._exit(0 if fresh and backend.get_task(child.id).name == "child" else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert backend.get_task(task.id).name == "a"
    assert _idle_backend_pids(backend) == parent_pids


def test_an_enqueue_by_another_process_wakes_a_waiting_claim(backend, monkeypatch) -> None:
    """Another store object has connections of its own (other backend pids): its enqueue
    reaches this one's claim as a notification, not by polling (slowed to an hour)."""
    monkeypatch.setattr(wakeups, "LISTENING_POLL_S", 3600.0)
    other = SqlBackend(backend.url)
    backend.hears_enqueues()  # starts the listener
    while not backend.hears_enqueues():
        time.sleep(0.01)
    got: list[Task | None] = []
    claimer = threading.Thread(target=lambda: got.append(backend.claim(["notified"], "w", 30)))
    claimer.start()
    time.sleep(0.3)  # let the claim wait (the test holds either way)
    task = other.create_task(Task(name="n", project="p"), queue="notified")
    claimer.join(timeout=40)
    assert got and got[0] is not None and got[0].id == task.id
    other.close()


def test_own_enqueues_are_not_heard_twice(backend) -> None:
    heard: list[str] = []
    listener = backend.enqueue_listener()
    listener.on_enqueue = heard.append
    listener.connect()
    other = SqlBackend(backend.url)
    backend.create_task(Task(name="mine", project="p"), queue="own")  # woke its claims already
    other.create_task(Task(name="theirs", project="p"), queue="theirs")
    for _ in range(1000):  # notifications come in commit order: "mine" first, if at all
        listener.read()
        if heard:
            break
        time.sleep(0.01)
    assert heard == ["theirs"]
    other.close()


# -- the one-statement writes (statements.CREATE_TASK, FINISH_RUNNING, HEARTBEAT,
# APPEND_LOGS, CLAIM_HEAD) -------------------------------------------------------------------
def _statements_run(store: SqlBackend, monkeypatch) -> list[str]:
    """The names of the statements ``store`` runs from now on, in order."""
    names: list[str] = []
    original = pg_module.PgTx._execute

    def execute(self, name, params):
        names.append(name)
        return original(self, name, params)

    monkeypatch.setattr(pg_module.PgTx, "_execute", execute)
    return names


def _lease(store: SqlBackend, task_id: str) -> float | None:
    with psycopg.connect(store._pg_pool().conninfo) as conn:
        return conn.execute("SELECT lease_expires FROM tasks WHERE id = %s", (task_id,)).fetchone()[
            0
        ]


def test_busy_writes_are_one_statement_each(backend, monkeypatch) -> None:
    backend.create_task(Task(name="first", project="p"), queue="one")  # project, queue known
    backend.register_worker("w", ["one"])
    names = _statements_run(backend, monkeypatch)
    task = Task(name="t", project="p", tags=["b", "a"], runtime={"cache_key": "k1", "n": 2})
    backend.create_task(task, queue="one")
    assert names == ["CREATE_QUEUED_TASK"]
    names.clear()
    backend.claim(["one"], "w")  # the first task
    claimed = backend.claim(["one"], "w")
    assert claimed is not None and claimed.id == task.id and claimed.tags == ["b", "a"]
    backend.heartbeat("w", {"cpu_pct": 5.0})
    backend.append_logs(task.id, ["one", "two"])
    done = backend.set_status(task.id, "completed", "all good")
    assert names == [
        "CLAIM_HEAD",
        "CLAIM_HEAD",
        "HEARTBEAT_WITH_STATS",
        "APPEND_LOGS",
        "FINISH_RUNNING",
    ]
    assert (done.status, done.status_message) == ("completed", "all good")
    assert _lease(backend, task.id) is None
    assert done.completed is not None and done.completed >= done.started
    # What the one statement wrote reads back as the transaction's would.
    assert [t.id for t in backend.query_tasks(tag="a")] == [task.id]
    assert [t.id for t in backend.query_tasks(runtime={"cache_key": "k1"})] == [task.id]
    assert [line.text for line in backend.get_logs(task.id)] == ["one", "two"]
    assert backend.get_task(task.id).to_dict() == done.to_dict()


def test_the_end_of_a_task_not_running_says_why(backend) -> None:
    task = backend.create_task(Task(name="t", project="p"))
    with pytest.raises(Exception, match="created"):
        backend.set_status(task.id, "completed")
    with pytest.raises(Exception, match="no task"):
        backend.set_status("no-such-task", "failed")


def test_a_heartbeat_of_an_unknown_worker_changes_nothing(backend) -> None:
    backend.register_worker("w", ["q"])
    backend.create_task(Task(name="t", project="p"), queue="q")
    task = backend.claim(["q"], "w", lease_s=30)
    lease = _lease(backend, task.id)
    with pytest.raises(Exception, match="no worker 'stranger'"):
        backend.heartbeat("stranger", {"cpu_pct": 1.0})
    assert _lease(backend, task.id) == lease
    assert "stranger" not in backend.get_worker_stats()


def test_appends_to_one_task_at_once_keep_every_line_in_order(backend) -> None:
    """Appenders of one task race for the same next seq: the one-statement append that
    loses takes the locked transaction, and no line is lost or numbered twice."""
    task = backend.create_task(Task(name="t", project="p"))
    writers, batches = 6, 40

    def write(n: int) -> None:
        for b in range(batches):
            backend.append_logs(task.id, [f"{n}:{b}:0", f"{n}:{b}:1"])

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(write, range(writers)))
    lines = backend.get_logs(task.id)
    assert [line.seq for line in lines] == list(range(1, writers * batches * 2 + 1))
    for n in range(writers):
        mine = [line.text for line in lines if line.text.startswith(f"{n}:")]
        assert mine == [f"{n}:{b}:{i}" for b in range(batches) for i in (0, 1)]


def test_a_claim_looks_past_a_top_priority_whose_heads_are_all_locked(backend) -> None:
    """A concurrent claim holds the only top-priority entry (locked, not yet deleted): the
    claim takes the next one in the same statement instead of coming back empty."""
    top = backend.create_task(Task(name="top", project="p"), queue="q", priority=5)
    low = backend.create_task(Task(name="low", project="p"), queue="q", priority=0)
    with psycopg.connect(backend._pg_pool().conninfo) as holder:
        holder.execute("SELECT id FROM queue_entries WHERE task_id = %s FOR UPDATE", (top.id,))
        got = backend.claim(["q"], "w")
        assert got is not None and got.id == low.id
    again = backend.claim(["q"], "w")
    assert again is not None and again.id == top.id


def test_the_stop_poller_asks_for_any_number_of_tasks_in_one_query(backend, monkeypatch) -> None:
    """The server's poller looks at every task its fleet watches, past a thousand: one
    query, answering only the tasks that are not running (or do not exist)."""
    backend.register_worker("w", ["q"])
    running = []
    for n in range(3):
        backend.create_task(Task(name=f"r{n}", project="p"), queue="q")
        running.append(backend.claim(["q"], "w").id)
    backend.set_status(running[1], "stopped", "aborted")
    missing = [f"gone-{n}" for n in range(1500)]
    names = _statements_run(backend, monkeypatch)
    assert backend.stopped_tasks([*running, *missing]) == {
        running[1]: "stopped",
        **dict.fromkeys(missing),
    }
    assert names == ["STOPPED_AMONG"]


def test_one_shot_writes_on_a_connection_dropped_while_idle_run_once(backend, monkeypatch) -> None:
    """The one-statement writes commit themselves, so they are never sent twice; a
    connection PostgreSQL dropped while it sat idle is found before one is sent."""
    task = backend.create_task(Task(name="a", project="p"), queue="q")  # project, queue known
    backend.register_worker("w", ["q"])
    backend.claim(["q"], "w")
    for write in (
        lambda: backend.create_task(Task(name="b", project="p"), queue="q"),
        lambda: backend.append_logs(task.id, ["one line"]),
        lambda: backend.set_status(task.id, "completed"),
    ):
        pids = _idle_backend_pids(backend)
        _terminate(backend, pids)
        time.sleep(0.2)  # the notice of the end reaches the client's socket
        names = _statements_run(backend, monkeypatch)
        write()
        assert names and names[0] in pg_module.ONE_SHOT
        assert not set(_idle_backend_pids(backend)) & set(pids)
    assert [t.name for t in backend.query_tasks(project="p")] == ["b", "a"]
    assert [line.text for line in backend.get_logs(task.id)] == ["one line"]
    assert backend.get_task(task.id).status == "completed"


def test_one_shot_writes_are_not_sent_again_on_a_lost_connection(backend, monkeypatch) -> None:
    """Lost while the statement was on its way: it may have been committed, so the
    caller hears of the failure instead of a second run."""
    task = backend.create_task(Task(name="a", project="p"))
    original = psycopg.Connection.execute
    sent: list[str] = []

    def execute(self, query, params=None, **kwargs):
        if "INSERT INTO logs" in str(query):
            sent.append(query)
            original(self, query, params, **kwargs)  # it ran, and then the link broke
            self.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return original(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", execute)
    with pytest.raises(psycopg.OperationalError):
        backend.append_logs(task.id, ["once"])
    monkeypatch.undo()
    assert len(sent) == 1
    assert [line.text for line in backend.get_logs(task.id)] == ["once"]


def test_a_log_cap_past_postgresql_integers_is_no_cap(backend) -> None:
    backend.max_log_lines = 2**40
    task = backend.create_task(Task(name="a", project="p"))
    assert backend.append_logs(task.id, ["x", "y"]) == 2
