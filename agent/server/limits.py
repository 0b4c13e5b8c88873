"""The size limit of request bodies: an ASGI layer in front of the whole API.

A body announced bigger than the limit (``Content-Length``) is answered 413 before any of
it is read; a body sent without a length is read up to the limit and answered 413 as
soon as it goes past, so no request holds more than the limit in the server's memory.
File uploads (``PUT /api/v1/files/...``) stream to disk and are not limited here.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.server.errors import error_body

#: Default limit of a request body, in MiB (``--max-body-mb``, ``AGENT_MAX_BODY_MB``).
DEFAULT_MAX_BODY_MB = 32
FILES_PREFIX = "/api/v1/files/"


class BodyLimit:
    """Answer 413 to a request whose body is over ``max_bytes`` (see the module doc)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(FILES_PREFIX):
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None:
            if length > self.max_bytes:
                await self._refuse(send, length)
                return
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:  # no length given: read up to the limit before the API sees any of it
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send, None)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, length: int | None) -> None:
        size = f"{length} bytes" if length is not None else "more bytes than that"
        limit_mb = self.max_bytes / 2**20
        message = (
            f"the request body is too large ({size}; the limit is {limit_mb:g} MiB): send "
            "less at a time (logs in batches, files with PUT /api/v1/files), or start the "
            "server with a larger --max-body-mb"
        )
        body = json.dumps(error_body("InvalidInput", message)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the unread rest of the body is still on its way
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
