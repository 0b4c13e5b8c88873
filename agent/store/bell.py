"""Cross-process wake-ups for the processes sharing one SQLite store file.

On the embedded store every agent, controller and CLI is its own process on one
database file, and SQLite has no way to tell a process that another one wrote. Without
help, a waiting claim finds a new task by polling (every 5 to 50 ms) and a pipeline
finds that its step ended the same way, which puts tens of milliseconds on every step
of a remote pipeline.

The :class:`Bell` is that help. A process waiting for another one's change listens on
a Unix datagram socket in Linux's abstract namespace (no path-length limit, nothing on
disk) under a random name, registered as an empty file of that name in ``<db>.bell/``.
A process that enqueues a task or changes a status rings: one byte to every registered
listener. A listener that wakes looks at the database again.

The bell is only ever a shortcut: polling stays, at its slower pace. So everything here
is best effort: a bell that cannot be set up (a read-only directory, a system without
abstract sockets) gives no listener and rings nothing, and a ring that fails never
makes the committed change that rang it look failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("agent.store")

_ADDRESS = "\0pipeline-agent-bell-{}"


class Listener:
    """One listening socket; :meth:`wait` returns when a ring (or :meth:`poke`) came."""

    def __init__(self, sock: socket.socket, name: str):
        self.sock = sock
        self.name = name  #: its entry in the bell's directory
        self.address = _ADDRESS.format(name).encode()
        self._poll = select.poll()  # poll, not select: any descriptor number
        self._poll.register(sock, select.POLLIN)

    def wait(self, timeout: float) -> bool:
        """Sleep until a ring or ``timeout`` seconds; True if rung (all rings drained)."""
        if not self._poll.poll(max(0, int(timeout * 1000))):
            return False
        self.drain()
        return True

    def drain(self) -> None:
        """Forget the rings received so far."""
        while True:
            try:
                self.sock.recv(64, socket.MSG_DONTWAIT)
            except OSError:  # nothing left (or the socket is closed)
                return

    def poke(self) -> None:
        """Ring this listener only (a wake-up from its own process)."""
        with contextlib.suppress(OSError):  # a full buffer wakes it anyway; closed: over
            self.sock.sendto(b"!", socket.MSG_DONTWAIT, self.address)


class Bell:
    """The bell of the store file ``database`` (see the module doc)."""

    def __init__(self, database: str):
        self.directory = os.path.realpath(database) + ".bell"
        os.makedirs(self.directory, exist_ok=True)
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._lock = threading.Lock()
        self._listing: tuple[int, list[str]] = (-1, [])  # (directory mtime, entries)

    @classmethod
    def for_store(cls, database: str) -> Bell | None:
        """The store's bell, or None where it cannot be: waiting processes then poll."""
        try:
            return cls(database)
        except OSError as exc:
            log.debug("no bell for %s (%s): waits poll", database, exc)
            return None

    @contextmanager
    def listening(self) -> Iterator[Listener | None]:
        """A listener registered for the duration of the block; None if it cannot be."""
        try:
            listener = self._listen()
        except OSError as exc:
            log.debug("cannot listen on the bell in %s (%s): polling", self.directory, exc)
            yield None
            return
        try:
            yield listener
        finally:
            listener.sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, listener.name))

    def _listen(self) -> Listener:
        # A random name: unique across processes, pid namespaces and forks.
        name = f"{os.getpid()}-{secrets.token_hex(8)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(_ADDRESS.format(name).encode())
            sock.setblocking(False)
            os.makedirs(self.directory, exist_ok=True)  # removed since the store opened
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            os.close(os.open(os.path.join(self.directory, name), flags, 0o600))
        except OSError:
            sock.close()
            raise
        return Listener(sock, name)

    def ring(self) -> None:
        """Wake every listener (each looks at the database again). Never raises."""
        try:
            for name in self._entries():
                self._send(name)
        except Exception as exc:  # noqa: BLE001 - a shortcut only; polling remains
            log.debug("ringing the bell in %s failed: %s", self.directory, exc)

    def _entries(self) -> list[str]:
        """The registered listeners: the directory is read again only when it changed."""
        mtime = os.stat(self.directory).st_mtime_ns
        with self._lock:
            if self._listing[0] == mtime:
                return self._listing[1]
        names = os.listdir(self.directory)
        with self._lock:
            self._listing = (mtime, names)
        return names

    def _send(self, name: str) -> None:
        try:
            self._sender.sendto(b"!", socket.MSG_DONTWAIT, _ADDRESS.format(name).encode())
        except (ConnectionRefusedError, FileNotFoundError):
            _forget_if_dead(os.path.join(self.directory, name), name)
        except BlockingIOError:
            pass  # its buffer is full: it is awake already


def _forget_if_dead(path: str, name: str) -> None:
    """Drop the entry of a listener whose socket is gone, if its process is gone too (a
    process of another pid or network namespace may share the directory)."""
    pid = int(name.split("-", 1)[0]) if name.split("-", 1)[0].isdigit() else 0
    try:
        if pid > 0:
            os.kill(pid, 0)
            return  # alive: maybe a listener we cannot reach, not ours to drop
    except ProcessLookupError:
        pass
    except PermissionError:
        return  # alive, another user's
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
