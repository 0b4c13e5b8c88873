"""One send per small response: uvicorn writes a response's headers and its body apart.

uvicorn's HTTP protocol writes the status line and headers when the app sends
``http.response.start`` and the body when it sends ``http.response.body``: two ``send``
system calls and two TCP segments for every answer, and on the client two reads. For the
small JSON answers of the hot endpoints (a claim, a heartbeat, a status change) the
second send costs as much as the first, and the client is woken twice.

:class:`OneSendProtocol` is uvicorn's httptools protocol on a transport that holds back a
small write until the next write (joined with it) or the end of the event loop's turn,
whichever comes first. A response sent in one turn (as Starlette's and the fast paths'
are) goes out in one ``send``; a streamed one is sent as before, each write at once
after the first, and nothing is held past the turn it was written in.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: A write up to this size is held for the next one; a bigger one goes out at once.
HOLD_BYTES = 16 * 1024


class _OneSendTransport:
    """An asyncio transport whose small writes wait for the next one (see the module doc)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held, self._held = self._held, None
        if held is not None:
            data = held + data
        if len(data) <= HOLD_BYTES:
            self._held = data
            if held is None:
                self._loop.call_soon(self._flush)
            return
        self._transport.write(data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:  # everything else as the socket's transport
        return getattr(self._transport, name)


class OneSendProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP/1.1 protocol, each small response in one ``send``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_OneSendTransport(transport, self.loop))  # type: ignore[arg-type]
