"""Keep-alive JSON requests to ``agent server``: HTTP/1.1 on the standard library's sockets.

HttpBackend sends many small requests (claims, status changes, log batches) to one
server. A requests Session spends about 0.4 ms of CPU on each and urllib3 about 0.25 ms;
http.client 0.15 ms, most of it parsing the answer's headers with the email package.
On a 2-core machine running the server and its clients, every tenth of a millisecond is
tens of task cycles a second. So the API calls use this small pool of connections:
http.client opens them (TLS, a proxy's tunnel), and the request and its answer are
written and read here (:func:`_exchange`), at about 0.06 ms. requests still serves file
transfers and StorageManager, and tenacity the retries (see :mod:`agent.store.http`).

The answers read are HTTP/1.1's: a ``Content-Length`` body, a chunked one, or one that
ends with the connection; informational (1xx) answers are skipped; the connection is
kept unless the answer says ``Connection: close``, is HTTP/1.0 without keep-alive, or
brings bytes nobody asked for.

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
import re
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


#: The longest status line plus headers of an answer read (bytes).
MAX_HEAD_BYTES = 64 * 1024
#: Bytes asked of the socket at a time.
_READ_BYTES = 64 * 1024
#: What a header cannot carry (it would end the line), and what a request path must
#: have quoted.
_UNSENDABLE = re.compile(r"[\r\n\x00]")
_UNQUOTED = re.compile(r"[\x00-\x20\x7f]")

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
        host = self.host.encode("idna").decode("ascii") if not self.host.isascii() else self.host
        host = f"[{host}]" if ":" in host else host  # IPv6
        #: Through a plain-http proxy a request names the whole URL.
        self._prefix = ""
        if self._proxy is not None and not self.https:
            self._prefix = f"http://{host}:{self.port}"
            self.headers.update(_proxy_auth(self._proxy))
        #: The header lines every request carries, Host first (as http.client writes it).
        if self.port != (443 if self.https else 80):
            host = f"{host}:{self.port}"
        lines = [f"Host: {host}", "Accept-Encoding: identity"]
        for name, value in self.headers.items():
            if _UNSENDABLE.search(f"{name}{value}") or not name.isascii():
                raise InvalidInput(f"header {name!r} has characters HTTP cannot carry")
            lines.append(f"{name}: {value}")
        self._header_block = ("\r\n".join(lines) + "\r\n").encode("latin-1")
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
        request = self._request(method, path, body)
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
                answer, keep = _exchange(conn.sock, request, method)
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
        if keep:
            self._give_back(conn)
        else:
            conn.close()
        return answer

    def _request(self, method: str, path: str, body: bytes | None) -> bytes:
        """The request's bytes: its line, the headers, the length of its body, the body."""
        if _UNQUOTED.search(path) or not path.isascii():
            raise InvalidInput(f"cannot send a request for {path!r}: quote its URL first")
        line = f"{method} {self._prefix}{path} HTTP/1.1\r\n".encode("ascii")
        if body is None and method not in ("POST", "PUT", "PATCH"):
            return line + self._header_block + b"\r\n"
        body = body or b""
        return b"".join((line, self._header_block, b"Content-Length: %d\r\n\r\n" % len(body), body))

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


def _exchange(sock: socket.socket, request: bytes, method: str) -> tuple[Answer, bool]:
    """Send ``request`` and read its answer: the answer, and whether the connection may
    carry another request. A broken or truncated answer raises http.client's errors."""
    sock.sendall(request)
    buffer = bytearray()
    while True:  # past informational answers (100 Continue, 103 Early Hints)
        status, reason, version, headers = _read_head(sock, buffer)
        if status >= 200:
            break
    keep = _keeps_alive(version, headers.get("connection", ""))
    if method == "HEAD" or status in (204, 304):
        data = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        data = _read_chunked(sock, buffer)
    elif "content-length" in headers:
        data = _read_exactly(sock, buffer, _content_length(headers["content-length"]))
    else:  # the body ends with the connection
        while chunk := sock.recv(_READ_BYTES):
            buffer += chunk
        data, keep = bytes(buffer), False
        buffer.clear()
    if buffer:  # bytes nobody asked for: this connection's answers can't be told apart
        keep = False
    return Answer(status, data, reason), keep


def _read_head(sock: socket.socket, buffer: bytearray) -> tuple[int, str, str, dict[str, str]]:
    """An answer's status line and headers (names in lower case), taken off ``buffer``.
    As http.client reads them: lines may end in a bare LF, a line starting with a space
    continues the one before (obsolete folding), a repeated header's values are joined."""
    while True:
        end, body = _head_end(buffer)
        if end >= 0 or len(buffer) > MAX_HEAD_BYTES:
            break
        chunk = sock.recv(_READ_BYTES)
        if not chunk:
            raise http.client.RemoteDisconnected("the server closed the connection")
        buffer += chunk
    if end < 0 or end > MAX_HEAD_BYTES:
        raise http.client.HTTPException("the answer's headers are too long")
    lines = bytes(buffer[:end]).decode("latin-1").split("\n")
    del buffer[:body]
    status_line = lines[0].rstrip("\r")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
        raise http.client.BadStatusLine(status_line)
    headers: dict[str, str] = {}
    name = ""
    for line in lines[1:]:
        line = line.rstrip("\r")
        if line[:1] in (" ", "\t") and name:  # folded: more of the header before
            headers[name] = f"{headers[name]} {line.strip()}"
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise http.client.HTTPException(f"bad header line in the answer: {line!r}")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(code), reason.strip(), version, headers


def _head_end(buffer: bytearray) -> tuple[int, int]:
    """Where the head in ``buffer`` ends and the body starts; (-1, -1) if not in yet."""
    crlf, lf = buffer.find(b"\r\n\r\n"), buffer.find(b"\n\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf, lf + 2
    if crlf >= 0:
        return crlf, crlf + 4
    return -1, -1


def _content_length(value: str) -> int:
    """A Content-Length's value: a number, or the same number repeated (a proxy may join
    two identical headers), never negative."""
    values = {v.strip() for v in value.split(",")}
    if len(values) == 1:
        (only,) = values
        if only.isdigit():
            return int(only)
    raise http.client.HTTPException(f"bad Content-Length in the answer: {value!r}")


def _keeps_alive(version: str, connection: str) -> bool:
    tokens = {token.strip().lower() for token in connection.split(",")}
    if "close" in tokens:
        return False
    return version != "HTTP/1.0" or "keep-alive" in tokens


def _read_exactly(sock: socket.socket, buffer: bytearray, length: int) -> bytes:
    if len(buffer) >= length:
        data = bytes(buffer[:length])
        del buffer[:length]
        return data
    body = bytearray(length)  # read into place: a large answer is not copied chunk by chunk
    view = memoryview(body)
    got = len(buffer)
    view[:got] = buffer
    buffer.clear()
    while got < length:
        n = sock.recv_into(view[got:])
        if not n:
            raise http.client.IncompleteRead(bytes(body[:got]), length - got)
        got += n
    return bytes(body)


def _read_line(sock: socket.socket, buffer: bytearray) -> bytes:
    """A line of a chunked body (its LF, and a CR before it, taken off)."""
    while (end := buffer.find(b"\n")) < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise http.client.HTTPException("a chunk's size line is too long")
        chunk = sock.recv(_READ_BYTES)
        if not chunk:
            raise http.client.IncompleteRead(bytes(buffer))
        buffer += chunk
    line = bytes(buffer[:end])
    del buffer[: end + 1]
    return line.removesuffix(b"\r")


def _read_chunked(sock: socket.socket, buffer: bytearray) -> bytes:
    parts = []
    while True:
        size_line = _read_line(sock, buffer).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise http.client.HTTPException(f"bad chunk size {size_line!r}") from None
        if size == 0:
            while _read_line(sock, buffer):  # trailers, up to the empty line
                pass
            return b"".join(parts)
        parts.append(_read_exactly(sock, buffer, size))
        if _read_line(sock, buffer):
            raise http.client.HTTPException("a chunk does not end where its size says")


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
