"""agent.server.one_send: a small response's headers and body leave in one write; a big or
streamed one is not held back, and nothing waits past the event loop's turn."""

from __future__ import annotations

import asyncio
import http.client
import json

from agent.server.one_send import HOLD_BYTES, OneSendProtocol, _OneSendTransport
from tests.server.live_server import LiveServer


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 5)}.get(name, default)


def _run(body) -> RecordingTransport:
    async def main() -> RecordingTransport:
        inner = RecordingTransport()
        await body(_OneSendTransport(inner, asyncio.get_running_loop()), inner)
        return inner

    return asyncio.run(main())


def test_headers_and_body_written_in_one_turn_leave_in_one_write():
    async def body(transport, inner):
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        assert inner.writes == []  # held until the turn ends
        assert transport.get_write_buffer_size() > 0
        await asyncio.sleep(0)
        assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]

    _run(body)


def test_a_lone_small_write_leaves_at_the_end_of_the_turn():
    async def body(transport, inner):
        transport.write(b"0\r\n\r\n")
        await asyncio.sleep(0)
        assert inner.writes == [b"0\r\n\r\n"]
        transport.write(b"next")
        await asyncio.sleep(0)
        assert inner.writes == [b"0\r\n\r\n", b"next"]

    _run(body)


def test_a_big_write_is_not_held_and_takes_the_held_one_with_it():
    big = b"x" * (HOLD_BYTES + 1)

    async def body(transport, inner):
        transport.write(b"headers\r\n\r\n")
        transport.write(big)
        assert inner.writes == [b"headers\r\n\r\n" + big]
        transport.write(big)
        assert inner.writes[-1] == big
        await asyncio.sleep(0)
        assert len(inner.writes) == 2  # the turn's end had nothing left to send

    _run(body)


def test_close_sends_what_is_held_and_abort_drops_it():
    async def body(transport, inner):
        transport.write(b"last words")
        transport.close()
        assert inner.writes == [b"last words"] and inner.closed

    _run(body)

    async def aborted(transport, inner):
        transport.write(b"never sent")
        transport.abort()
        await asyncio.sleep(0)
        assert inner.writes == [] and inner.aborted

    _run(aborted)


def test_other_transport_calls_pass_through():
    async def body(transport, inner):
        assert transport.get_extra_info("peername") == ("127.0.0.1", 5)
        assert transport.is_closing() is False

    _run(body)


def test_agent_server_answers_through_it(tmp_path):
    """The real server, on the protocol: small answers, a big one (the OpenAPI schema,
    over HOLD_BYTES), and several requests on one keep-alive connection."""
    assert issubclass(OneSendProtocol, asyncio.Protocol)
    with LiveServer(f"sqlite:///{tmp_path}/db.sqlite", tmp_path) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for _ in range(3):
            conn.request("GET", "/api/v1/health")
            answer = conn.getresponse()
            assert answer.status == 200 and json.loads(answer.read())
        conn.request("GET", "/openapi.json")
        answer = conn.getresponse()
        schema = answer.read()
        assert answer.status == 200 and len(schema) > HOLD_BYTES
        conn.close()


def test_agent_server_runs_on_it():
    from agent.server.main import _http_protocol

    assert _http_protocol() is OneSendProtocol  # httptools comes with uvicorn[standard]
