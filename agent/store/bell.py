"""Cross-process wake-ups for the processes sharing one SQLite store file.

On the embedded store every agent, controller and CLI is its own process on one
database file, and SQLite has no way to tell a process that another one wrote. Without
help, a waiting claim finds a new task by polling (every 5 to 50 ms) and a pipeline
finds that its step ended the same way, which puts tens of milliseconds on every step
of a remote pipeline.

The :class:`Bell` is that help. A process waiting for another one's change listens on
a Unix datagram socket (Linux's abstract namespace: no path-length limit, nothing to
clean up on disk but one empty registry file per listener in ``<db>.bell/``). A process
that enqueues a task or changes a status rings: one byte to every listener. A listener
that wakes looks at the database again; a ring nobody hears costs nothing, and a
listener whose process died is dropped from the registry by the next ring. The
polling stays, at its slower pace, so a lost ring costs latency, never correctness.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager

_counter = itertools.count()


class Listener:
    """One listening socket; :meth:`wait` returns when a ring (or :meth:`poke`) came."""

    def __init__(self, sock: socket.socket, address: bytes, name: str):
        self.sock = sock
        self.address = address
        self.name = name  #: its entry in the bell's directory

    def wait(self, timeout: float) -> bool:
        """Sleep until a ring or ``timeout`` seconds; True if rung (all rings drained)."""
        readable, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not readable:
            return False
        while True:
            try:
                self.sock.recv(64, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return True

    def poke(self) -> None:
        """Ring this listener only (a wake-up from its own process)."""
        try:
            self.sock.sendto(b"!", socket.MSG_DONTWAIT, self.address)
        except OSError:
            pass  # its buffer is full: it will wake anyway


class Bell:
    """The bell of the store file ``database`` (see the module doc)."""

    def __init__(self, database: str):
        path = os.path.realpath(database)
        self.directory = path + ".bell"
        self._prefix = "pipeline-agent-" + hashlib.sha256(path.encode()).hexdigest()[:16]
        os.makedirs(self.directory, exist_ok=True)

    @contextmanager
    def listening(self) -> Iterator[Listener]:
        """A listener registered for the duration of the block."""
        name = f"{os.getpid()}-{next(_counter)}"
        address = f"\0{self._prefix}-{name}".encode()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        entry = os.path.join(self.directory, name)
        try:
            sock.bind(address)
            sock.setblocking(False)
            os.close(os.open(entry, os.O_WRONLY | os.O_CREAT, 0o600))
            yield Listener(sock, address, name)
        finally:
            sock.close()
            try:
                os.unlink(entry)
            except FileNotFoundError:
                pass

    def ring(self) -> None:
        """Wake every listener (each looks at the database again)."""
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    address = f"\0{self._prefix}-{entry.name}".encode()
                    try:
                        sender.sendto(b"!", socket.MSG_DONTWAIT, address)
                    except OSError as exc:
                        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                            _forget(entry.path)  # its process is gone
                        # EAGAIN: its buffer is full, so it is awake already
        except FileNotFoundError:
            pass  # the directory went away with the store
        finally:
            sender.close()


def _forget(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
