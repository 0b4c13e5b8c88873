"""JsonTransport and HttpBackend's retries against small real HTTP servers on loopback.

Each server here misbehaves in one way a real deployment can: it closes an idle
keep-alive connection, it drops a request without answering, or it is not there.
The point is what the client may repeat: only what cannot have been applied.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from agent.core.errors import InvalidInput
from agent.core.models import Task
from agent.store import transport as transport_module
from agent.store.http import HttpBackend, ServerUnavailable
from agent.store.transport import JsonTransport, TransportError
from tests.services import free_port

_TASK_JSON = Task(id="t1", name="n", project="p").to_json_dict()


class _Server:
    """A loopback HTTP/1.1 server answering ``behaviour(conn, n)`` for the n-th request
    (counted over all connections); it records every request line it reads."""

    def __init__(self, behaviour, tls: ssl.SSLContext | None = None):
        self.behaviour = behaviour
        self.requests: list[str] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_side=True)
            self.url = f"https://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn:
            while True:
                line = reader.readline()
                if not line:
                    return
                length = 0
                while (header := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                reader.read(length)
                with self._lock:
                    self.requests.append(line.decode().strip())
                    n = len(self.requests)
                if not self.behaviour(conn, n):
                    return

    def close(self) -> None:
        self.sock.close()


def _answer(conn: socket.socket, body: bytes = b'{"queues": []}', close: bool = False) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    conn.sendall(head.encode() + b"\r\n" + body)
    if close:  # close without saying so, as a server whose keep-alive timer ran out
        conn.shutdown(socket.SHUT_RDWR)


def _keep_answering(conn: socket.socket, n: int) -> bool:
    _answer(conn)
    return True


@contextmanager
def serving(behaviour, tls: ssl.SSLContext | None = None) -> Iterator[_Server]:
    server = _Server(behaviour, tls)
    try:
        yield server
    finally:
        server.close()


def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    # The server answers and then closes each connection without a Connection: close
    # header. A create (never retried) after that must go on a new connection.
    def answer_then_close(conn, n):
        _answer(conn, b'{"queues": []}' if n == 1 else json.dumps(_TASK_JSON).encode(), close=True)
        return False

    with serving(answer_then_close) as server:
        client = HttpBackend(server.url, retries=1)
        client.list_queues()
        threading.Event().wait(0.05)  # the close reaches the client
        assert client.create_task(Task(id="t1", name="n", project="p")).id == "t1"
        assert server.connections == 2 and len(server.requests) == 2


def test_a_dropped_create_is_not_repeated_but_a_dropped_read_is() -> None:
    # The first request of each kind is dropped unanswered (the server may have applied
    # it); the create must surface the error, the idempotent read must be retried.
    def drop_first(conn, n):
        if n in (1, 2):
            return False
        _answer(conn)
        return True

    with serving(drop_first) as server:
        client = HttpBackend(server.url, retries=3, max_backoff=0.05)
        with pytest.raises(ServerUnavailable, match="connection lost"):
            client.create_task(Task(name="n", project="p"))
        assert [r.split()[0] for r in server.requests] == ["POST"]
        assert client.list_queues() == []
        assert [r.split()[0] for r in server.requests] == ["POST", "GET", "GET"]


def test_a_refused_connection_is_never_sent() -> None:
    port = free_port()
    transport = JsonTransport(f"http://127.0.0.1:{port}", {}, connect_timeout=2)
    with pytest.raises(TransportError) as caught:
        transport.request("POST", "/api/v1/tasks", b"{}", read_timeout=2)
    assert caught.value.sent is False and "refused" in caught.value.reason


def test_no_answer_in_time_is_a_timeout_that_may_have_been_applied() -> None:
    with serving(lambda conn, n: threading.Event().wait(2) and False) as server:
        transport = JsonTransport(server.url, {}, connect_timeout=2)
        with pytest.raises(TransportError) as caught:
            transport.request("POST", "/x", b"{}", read_timeout=0.2)
        assert caught.value.sent is True and caught.value.timed_out


def test_a_forked_child_opens_its_own_connection() -> None:
    with serving(_keep_answering) as server:
        transport = JsonTransport(server.url, {}, connect_timeout=2)
        transport.request("GET", "/a", None, read_timeout=2)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's outcome is its exit code
            try:
                answer_ = transport.request("GET", "/b", None, read_timeout=2)
                os._exit(0 if answer_.status == 200 else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        transport.request("GET", "/c", None, read_timeout=2)  # the parent's socket still works
        assert server.connections == 2 and len(server.requests) == 3


def test_an_old_idle_connection_is_not_reused(monkeypatch) -> None:
    # The server may close a connection idle for its keep-alive time just as a request
    # goes out on it; the client retires connections before that.
    with serving(_keep_answering) as server:
        transport = JsonTransport(server.url, {}, connect_timeout=2)
        transport.request("GET", "/a", None, read_timeout=2)
        transport.request("GET", "/b", None, read_timeout=2)
        assert server.connections == 1
        monkeypatch.setattr(transport_module, "MAX_IDLE_S", 0.0)
        transport.request("GET", "/c", None, read_timeout=2)
        assert server.connections == 2


@pytest.mark.parametrize(
    ("proxy", "expected"),
    [("proxy.corp:3128", ("proxy.corp", 3128)), ("http://u:p@10.0.0.1:8080", ("10.0.0.1", 8080))],
)
def test_http_proxies_from_the_environment(proxy: str, expected) -> None:
    transport = JsonTransport("http://server:8008", {}, connect_timeout=1, proxy=proxy)
    conn = transport._new()
    assert (conn.host, conn.port) == expected
    assert transport._prefix == "http://server:8008"


def test_other_proxy_kinds_are_refused_clearly() -> None:
    with pytest.raises(InvalidInput, match="only http:// proxies"):
        JsonTransport("http://server:8008", {}, connect_timeout=1, proxy="socks5://h:1080")


def _self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, made with the cryptography package."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def test_https_verifies_against_the_ca_bundle_requests_would_use(tmp_path, monkeypatch) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with serving(_keep_answering, tls=context) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
        assert HttpBackend(server.url, retries=1).list_queues() == []
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        with pytest.raises(ServerUnavailable, match="cannot connect"):
            HttpBackend(server.url, retries=1).list_queues()  # the default bundle lacks it


# -- reading answers: the forms HTTP/1.1 allows, and broken ones ------------------------
def _raw(*answers: bytes):
    """A behaviour sending answer n (raw bytes) to request n; past them, a plain one."""

    def behaviour(conn: socket.socket, n: int) -> bool:
        if n > len(answers):
            _answer(conn)
            return True
        conn.sendall(answers[n - 1])
        return True

    return behaviour


def _exchange(*answers: bytes, requests: int = 2) -> tuple[list, _Server]:
    with serving(_raw(*answers)) as server:
        transport = JsonTransport(server.url, {"X-Test": "1"}, connect_timeout=2)
        got = [transport.request("GET", f"/{i}", None, read_timeout=2) for i in range(requests)]
    return got, server


def test_a_chunked_answer_is_read_whole_and_the_connection_kept() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        b'5;ext=1\r\n{"a":\r\n4\r\n 12}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    (first, second), server = _exchange(chunked)
    assert first.status == 200 and first.json() == {"a": 12}
    assert second.json() == {"queues": []}
    assert server.connections == 1


def test_informational_answers_are_skipped() -> None:
    body = b'{"ok": true}'
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    (first, _), server = _exchange(answer)
    assert (first.status, first.reason, first.json()) == (201, "Created", {"ok": True})
    assert server.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}junk",  # bytes nobody asked for
    ],
    ids=["connection-close", "http-1.0", "extra-bytes"],
)
def test_an_answer_that_ends_its_connection_is_not_reused(answer: bytes) -> None:
    (first, second), server = _exchange(answer)
    assert first.data == b"{}" and second.json() == {"queues": []}
    assert server.connections == 2


def test_an_answer_without_a_length_ends_with_its_connection() -> None:
    def until_close(conn: socket.socket, n: int) -> bool:
        if n == 1:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[1, 2]")
            conn.shutdown(socket.SHUT_RDWR)
            return False
        _answer(conn)
        return True

    with serving(until_close) as server:
        transport = JsonTransport(server.url, {}, connect_timeout=2)
        assert transport.request("GET", "/a", None, read_timeout=2).json() == [1, 2]
        assert transport.request("GET", "/b", None, read_timeout=2).json() == {"queues": []}
        assert server.connections == 2


def test_a_head_and_a_204_have_no_body() -> None:
    answers = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 120\r\n\r\n",  # HEAD: the length of a GET's body
        b"HTTP/1.1 204 No Content\r\n\r\n",
    )
    with serving(_raw(*answers)) as server:
        transport = JsonTransport(server.url, {}, connect_timeout=2)
        head = transport.request("HEAD", "/a", None, read_timeout=2)
        empty = transport.request("DELETE", "/b", None, read_timeout=2)
        assert (head.status, head.data, empty.status, empty.data) == (200, b"", 204, b"")
        assert transport.request("GET", "/c", None, read_timeout=2).json() == {"queues": []}
        assert server.connections == 1


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"cut": ', "IncompleteRead"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nab", "IncompleteRead"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "RemoteDisconnected"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "BadStatusLine"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n{}", "HTTPException"),
    ],
    ids=["short-body", "short-chunk", "short-head", "not-http", "bad-length"],
)
def test_a_broken_answer_is_a_lost_connection_that_may_have_been_applied(answer, reason) -> None:
    def broken(conn: socket.socket, n: int) -> bool:
        conn.sendall(answer)
        conn.shutdown(socket.SHUT_RDWR)
        return False

    with serving(broken) as server:
        transport = JsonTransport(server.url, {}, connect_timeout=2)
        with pytest.raises(TransportError) as caught:
            transport.request("POST", "/api/v1/tasks", b"{}", read_timeout=2)
        assert caught.value.sent is True and caught.value.reason == f"connection lost ({reason})"
        assert server.requests == ["POST /api/v1/tasks HTTP/1.1"]


def test_headers_past_the_limit_are_refused(monkeypatch) -> None:
    monkeypatch.setattr(transport_module, "MAX_HEAD_BYTES", 1024)
    answer = b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 4096 + b"\r\n\r\n"
    with serving(_raw(answer)) as server:
        transport = JsonTransport(server.url, {}, connect_timeout=2)
        with pytest.raises(TransportError, match="HTTPException"):
            transport.request("GET", "/a", None, read_timeout=2)


def test_the_request_carries_host_its_headers_and_the_length_of_its_body() -> None:
    seen: list[bytes] = []

    def record(conn: socket.socket, n: int) -> bool:
        _answer(conn)
        return True

    with serving(record) as server:
        original = transport_module._exchange

        def spy(sock, request, method):
            seen.append(request)
            return original(sock, request, method)

        transport = JsonTransport(server.url, {"Authorization": "Bearer t"}, connect_timeout=2)
        try:
            transport_module._exchange = spy
            transport.request("POST", "/api/v1/tasks?queue=q", b'{"name": "n"}', read_timeout=2)
            transport.request("GET", "/api/v1/queues", None, read_timeout=2)
        finally:
            transport_module._exchange = original
    post, get = seen
    assert post == (
        b"POST /api/v1/tasks?queue=q HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Accept-Encoding: identity\r\nAuthorization: Bearer t\r\n"
        b'Content-Length: 13\r\n\r\n{"name": "n"}' % server.port
    )
    assert get.startswith(b"GET /api/v1/queues HTTP/1.1\r\n") and b"Content-Length" not in get


def test_answers_as_http_client_reads_them_from_servers_and_proxies() -> None:
    answers = (
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\n{}",  # bare LF line ends
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n[]",  # a proxy joined two headers
        b'HTTP/1.1 200 OK\r\nX-Folded: one\r\n two\r\nContent-Length: 4\r\n\r\n"ok"',
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\n{}\n0\n\n",
    )
    got, server = _exchange(*answers, requests=5)
    assert [answer.json() for answer in got] == [{}, [], "ok", {}, {"queues": []}]
    assert server.connections == 1


def test_what_http_cannot_carry_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(InvalidInput, match="Authorization"):
        JsonTransport("http://server:8008", {"Authorization": "Bearer t\n"}, connect_timeout=1)
    with serving(_keep_answering) as server:
        transport = JsonTransport(server.url, {}, connect_timeout=2)
        for path in ("/api/v1/tasks/a b", "/api/v1/tasks/é"):
            with pytest.raises(InvalidInput, match="quote its URL"):
                transport.request("GET", path, None, read_timeout=2)
        assert transport.request("GET", "/ok", None, read_timeout=2).status == 200
        assert server.requests == ["GET /ok HTTP/1.1"]


def test_hosts_go_out_as_idna_and_ipv6_in_brackets() -> None:
    idna = JsonTransport("http://bücher.example:8008", {}, connect_timeout=1)
    assert idna._header_block.startswith(b"Host: xn--bcher-kva.example:8008\r\n")
    proxied = JsonTransport("http://[::1]:8008", {}, connect_timeout=1, proxy="proxy.corp:3128")
    assert proxied._prefix == "http://[::1]:8008"
    assert proxied._header_block.startswith(b"Host: [::1]:8008\r\n")
