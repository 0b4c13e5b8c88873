"""Keep-alive JSON requests to ``agent server`` over the standard library's http.client.

HttpBackend sends many small requests (claims, status changes, log batches) to one
server. A requests Session spends about 0.4 ms of CPU on each and urllib3 about 0.25 ms,
against 0.12 ms for http.client: on a 2-core machine running the server and its
clients, that is the difference between 350 and 500 task cycles a second. So the API
calls use this small pool of http.client connections; requests still serves file
transfers and StorageManager, and tenacity the retries (see :mod:`agent.store.http`).

What the pool must get right, and does:

- a request that may have reached the server is told apart from one that cannot have
  (:attr:`TransportError.sent`), so a caller never repeats a create or a claim that
  may have been applied;
- an idle connection the server has closed (uvicorn closes them after 5 s) is noticed
  before it is used, as urllib3 does, so no request is written into a dead socket;
- an idle connection older than the server's keep-alive time is not reused either:
  the server could close it just as a request goes out, and a request that may have
  been applied is not repeated;
- connections are per process: a forked child never shares its parent's sockets;
- TLS verifies against the CA bundle requests would use; an ``http://`` proxy from the
  environment (``HTTPS_PROXY``, ``NO_PROXY``, ...) is honoured, other proxy kinds are
  refused with a clear error.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import select
import socket
import ssl
import threading
import time
from typing import Any, NamedTuple
from urllib.parse import SplitResult, unquote, urlsplit

from agent.core.children import call_in_forked_children
from agent.core.errors import InvalidInput

#: Idle connections kept per server: daemons, controllers and log streamers share one.
POOL_SIZE = 32
#: Seconds an idle connection is reused for: under uvicorn's keep-alive (5 s).
MAX_IDLE_S = 4.0


#: Sockets a forked child inherited: never used, never closed there.
_INHERITED: list[http.client.HTTPConnection] = []


class Answer(NamedTuple):
    status: int
    data: bytes
    reason: str

    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class TransportError(Exception):
    """No answer came. ``sent`` is False when the request cannot have reached the
    server (the connection was never made) and True when it may have been applied;
    ``interrupted`` when :meth:`JsonTransport.interrupt` ended it."""

    def __init__(self, reason: str, sent: bool, timed_out: bool = False, interrupted: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.sent = sent
        self.timed_out = timed_out
        self.interrupted = interrupted


class JsonTransport:
    """A thread-safe pool of keep-alive connections to one ``http(s)://host:port``.

    Args:
        url: the server's base URL (its path is ignored: requests give whole paths).
        headers: sent with every request.
        connect_timeout: seconds to wait for a connection.
        ca_bundle: file or directory of CA certificates for https; None = don't verify.
        proxy: ``http://[user:pass@]host:port`` to go through, or None.
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        connect_timeout: float,
        ca_bundle: str | None = None,
        proxy: str | None = None,
    ):
        target = urlsplit(url)
        if target.scheme not in ("http", "https") or not target.hostname:
            raise InvalidInput(f"not an http(s) URL: {url!r}")
        self.https = target.scheme == "https"
        self.host = target.hostname
        self.port = target.port or (443 if self.https else 80)
        self.headers = dict(headers)
        self.connect_timeout = connect_timeout
        self._context = _tls_context(ca_bundle) if self.https else None
        self._proxy = _proxy(proxy) if proxy else None
        #: Through a plain-http proxy a request names the whole URL.
        self._prefix = ""
        if self._proxy is not None and not self.https:
            self._prefix = f"http://{self.host}:{self.port}"
            self.headers.update(_proxy_auth(self._proxy))
        #: Idle connections, each with when it was last used.
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        #: Connections of interruptible requests waiting for their answers, and how
        #: many times :meth:`interrupt` was called.
        self._polling: set[http.client.HTTPConnection] = set()
        self.interrupts = 0
        self._lock = threading.Lock()
        call_in_forked_children(self, "_forget")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        read_timeout: float,
        interrupts: int | None = None,
    ) -> Answer:
        """Send one request on a pooled connection and read the whole answer.

        ``interrupts``: for a long poll, the value of :attr:`interrupts` its caller saw
        when it chose to wait. An :meth:`interrupt` since then ends the request with a
        TransportError (``interrupted``): before it is sent, or by shutting its
        connection down, which the server hears as the client leaving."""
        conn = self._take()
        try:
            if conn.sock is None:
                self._connect(conn)
            conn.sock.settimeout(read_timeout)
            if interrupts is not None:
                with self._lock:
                    if interrupts != self.interrupts:
                        self._give_back_locked(conn)
                        raise TransportError("interrupted", sent=False, interrupted=True)
                    self._polling.add(conn)
            try:
                conn.request(method, self._prefix + path, body=body, headers=self.headers)
                response = conn.getresponse()
                data = response.read()
            finally:
                if interrupts is not None:
                    with self._lock:
                        self._polling.discard(conn)
        except TimeoutError as exc:
            conn.close()
            raise TransportError("no answer in time", sent=True, timed_out=True) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            interrupted = interrupts is not None and interrupts != self.interrupts
            reason = "interrupted" if interrupted else f"connection lost ({exc.__class__.__name__})"
            raise TransportError(reason, sent=True, interrupted=interrupted) from exc
        if response.will_close:
            conn.close()
        else:
            self._give_back(conn)
        return Answer(response.status, data, response.reason or "")

    def interrupt(self) -> None:
        """End the interruptible requests waiting for their answers now (any thread)."""
        with self._lock:
            self.interrupts += 1
            polling = list(self._polling)
        for conn in polling:
            with contextlib.suppress(OSError, AttributeError):  # it may close meanwhile
                conn.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def _forget(self) -> None:
        """In a forked child: the sockets are the parent's (kept open, never used), and
        the lock may have been held by a thread that is not here."""
        _INHERITED.extend(conn for conn, _ in self._idle)
        self._idle = []
        self._polling = set()
        self._lock = threading.Lock()

    # -- the pool ---------------------------------------------------------------------
    def _take(self) -> http.client.HTTPConnection:
        stale = time.monotonic() - MAX_IDLE_S
        with self._lock:
            while self._idle:
                conn, used = self._idle.pop()
                if used > stale and not _dropped(conn.sock):
                    return conn
                conn.close()
        return self._new()

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._give_back_locked(conn)

    def _give_back_locked(self, conn: http.client.HTTPConnection) -> None:
        if len(self._idle) < POOL_SIZE:
            self._idle.append((conn, time.monotonic()))
            return
        conn.close()

    def _new(self) -> http.client.HTTPConnection:
        host, port = self.host, self.port
        if self._proxy is not None:
            host, port = self._proxy.hostname or "", self._proxy.port or 80
        if self.https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=self.connect_timeout, context=self._context
            )
            if self._proxy is not None:
                conn.set_tunnel(self.host, self.port, headers=_proxy_auth(self._proxy))
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        return conn

    def _connect(self, conn: http.client.HTTPConnection) -> None:
        """Open the connection; nothing has been sent if this fails."""
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise TransportError("timed out", sent=False, timed_out=True) from exc
        except ConnectionRefusedError as exc:
            conn.close()
            raise TransportError("connection refused", sent=False) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TransportError(f"cannot connect ({exc})", sent=False) from exc


def _dropped(sock: socket.socket | None) -> bool:
    """True when an idle connection is unusable: closed by the server (readable at EOF)
    or holding bytes nobody asked for. poll, not select: any descriptor number."""
    if sock is None:
        return True
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _proxy(url: str) -> SplitResult:
    """An ``http://`` proxy URL from the environment (a bare ``host:port`` is one)."""
    if "://" not in url:
        url = f"http://{url}"
    proxy = urlsplit(url)
    if proxy.scheme != "http" or not proxy.hostname:
        raise InvalidInput(
            f"proxy {url!r} is not supported for the agent server's API (only http:// "
            "proxies are); add the server's host to NO_PROXY to reach it directly"
        )
    return proxy


def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    if ca_bundle is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if os.path.isdir(ca_bundle):
        return ssl.create_default_context(capath=ca_bundle)
    return ssl.create_default_context(cafile=ca_bundle)


def _proxy_auth(proxy: Any) -> dict[str, str]:
    if not proxy.username:
        return {}
    user = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
    return {"Proxy-Authorization": "Basic " + base64.b64encode(user.encode()).decode()}
