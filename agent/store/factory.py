"""Pick the backend for a URL: http(s) -> HttpBackend, sqlite/postgresql -> SqlBackend."""

from __future__ import annotations

import threading

from agent.config import load_settings
from agent.store.base import Backend

_cache: dict[str, Backend] = {}
_lock = threading.Lock()


def backend_for_url(url: str, token: str | None = None) -> Backend:
    """A new backend for ``url`` (not cached)."""
    if url.startswith(("http://", "https://")):
        from agent.store.http import HttpBackend

        return HttpBackend(url, token=token)
    from agent.store.sql import SqlBackend

    return SqlBackend(url)


def get_backend(url: str | None = None) -> Backend:
    """The process-wide backend: ``url``, else ``AGENT_API_URL``, else the embedded store."""
    settings = load_settings()
    url = url or settings.api_url or settings.db_url
    with _lock:
        backend = _cache.get(url)
        if backend is None:
            backend = _cache[url] = backend_for_url(url, token=settings.api_token)
        return backend


def reset_backends() -> None:
    """Close and forget cached backends (tests, forks)."""
    with _lock:
        for backend in _cache.values():
            backend.close()
        _cache.clear()
