"""Requests straight into an ASGI app, as uvicorn hands them over (no socket)."""

from __future__ import annotations

import asyncio
import json
from typing import Any


async def post(app: Any, path: str, body: Any) -> tuple[int, Any]:
    """One POST through the ASGI app, as uvicorn would hand it over."""
    raw = json.dumps(body).encode()
    scope = {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
        "server": ("127.0.0.1", 8008), "client": ("127.0.0.1", 50000),
    }  # fmt: skip
    messages = [{"type": "http.request", "body": raw, "more_body": False}]
    left = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body_bytes = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body_bytes)
