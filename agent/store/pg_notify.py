"""Wake-ups of waiting claims across processes on PostgreSQL: LISTEN/NOTIFY.

Several ``agent server`` workers (``--workers N``), daemons on the store directly and
the CLI all enqueue into one database. A claim waiting in one process must hear of a
task another process enqueued without polling for it every few milliseconds: with a
fleet of idle daemons that polling is most of the database's work.

So the database tells. A trigger on ``queue_entries`` (:data:`TRIGGER_DDL`) notifies
channel :data:`CHANNEL` with the queue's name on every insert, delivered to listeners
when the enqueue commits, whatever process made it and at no extra round trip. An
:class:`EnqueueListener` holds one LISTEN connection per process and hands each
notification to the process's waiting claims (:class:`~agent.store.wakeups.ClaimSignals`),
as an enqueue made in the process itself does; its own enqueues (made on connections
whose backend pid it knows) are skipped, since they woke a claim already.

It runs in a thread of its own (:meth:`EnqueueListener.start_thread`, a daemon or
controller on the store directly) or on the server's event loop
(:meth:`EnqueueListener.serve`), reading its socket when it is readable either way.
Polling stays, at a slow pace while the listener listens (``wakeups.LISTENING_POLL_S``)
and at the usual one while it does not; after it (re)connects it wakes every waiting
claim, which covers the notifications sent while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import threading
from collections.abc import Callable, Container

import psycopg

log = logging.getLogger("agent.store")

#: The notification channel of enqueues; the payload is the queue's name.
CHANNEL = "agent_enqueued"
#: Seconds between two attempts to (re)connect the listener.
RECONNECT_S = 1.0
#: Key of the advisory lock under which processes starting together install the trigger.
_DDL_LOCK = 0x6167656E74  # "agent"

TRIGGER_DDL = (
    f"""
    CREATE OR REPLACE FUNCTION agent_notify_enqueued() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('{CHANNEL}', (SELECT name FROM queues WHERE id = NEW.queue_id));
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER agent_notify_enqueued AFTER INSERT ON queue_entries
    FOR EACH ROW EXECUTE FUNCTION agent_notify_enqueued()
    """,
)


def install_trigger(conn: psycopg.Connection) -> None:
    """Create the enqueue trigger where it is missing (in ``conn``'s transaction, which
    the caller commits), one process at a time."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
    found = conn.execute(
        "SELECT 1 FROM pg_trigger WHERE tgname = 'agent_notify_enqueued'"
    ).fetchone()
    if found is None:
        for ddl in TRIGGER_DDL:
            conn.execute(ddl)


class EnqueueListener:
    """One LISTEN connection to the store's database (see the module doc).

    Args:
        conninfo: a libpq URL.
        on_enqueue: called with a queue's name for each task another process enqueued.
        on_connect: called each time the listener starts listening (wake every waiter).
        own_pids: the backend pids of this process's own connections: their
            notifications are skipped.
    """

    def __init__(
        self,
        conninfo: str,
        on_enqueue: Callable[[str], None],
        on_connect: Callable[[], None],
        own_pids: Container[int],
    ):
        self.conninfo = conninfo
        self.on_enqueue = on_enqueue
        self.on_connect = on_connect
        self.own_pids = own_pids
        self._conn: psycopg.Connection | None = None
        self._stop = threading.Event()

    @property
    def listening(self) -> bool:
        """True while notifications reach this listener."""
        return self._conn is not None and not self._stop.is_set()

    def connect(self) -> None:
        """Connect and LISTEN (blocking); raises psycopg.Error when it cannot."""
        conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)
        try:
            conn.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self.on_connect()

    def read(self) -> bool:
        """Hand on the notifications received (never blocks); False once the connection
        is lost (it is then closed: connect again)."""
        conn = self._conn
        if conn is None:
            return False
        try:
            conn.pgconn.consume_input()
            while (note := conn.pgconn.notifies()) is not None:
                if note.be_pid not in self.own_pids:
                    self.on_enqueue(note.extra.decode("utf-8", "replace"))
        except psycopg.Error as exc:
            log.warning("enqueue listener lost its connection (%s): polling meanwhile", exc)
            self._drop()
            return False
        return True

    def fileno(self) -> int:
        assert self._conn is not None, "not connected"
        return self._conn.pgconn.socket

    def close(self) -> None:
        self._stop.set()
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                conn.close()

    # -- runners ----------------------------------------------------------------------
    def start_thread(self) -> threading.Thread:
        """Listen in a daemon thread until :meth:`close`."""
        thread = threading.Thread(target=self._run_thread, name="enqueue-listener", daemon=True)
        thread.start()
        return thread

    def _run_thread(self) -> None:
        while not self._stop.is_set():
            if not self._connect_or_wait(self._stop.wait):
                continue
            while not self._stop.is_set():
                try:
                    ready, _, _ = select.select([self.fileno()], [], [], RECONNECT_S)
                except (OSError, ValueError, AssertionError):  # closed meanwhile
                    break
                if ready and not self.read():
                    break

    async def serve(self) -> None:
        """Listen on the running event loop until cancelled (or :meth:`close`): the socket
        is read by the loop when readable; (re)connections run in a worker thread."""
        loop = asyncio.get_running_loop()
        try:
            while not self._stop.is_set():
                connected = await loop.run_in_executor(None, self._connect_or_wait, None)
                if not connected:
                    await asyncio.sleep(RECONNECT_S)
                    continue
                lost = loop.create_future()
                fd = self.fileno()

                def readable(lost: asyncio.Future = lost) -> None:
                    if not self.read() and not lost.done():
                        lost.set_result(None)

                loop.add_reader(fd, readable)
                try:
                    await lost
                finally:
                    loop.remove_reader(fd)
        finally:
            self.close()

    def _connect_or_wait(self, wait: Callable[[float], object] | None) -> bool:
        try:
            self.connect()
            return True
        except psycopg.Error as exc:
            log.warning("enqueue listener cannot connect (%s): polling meanwhile", exc)
            if wait is not None:
                wait(RECONNECT_S)
            return False
