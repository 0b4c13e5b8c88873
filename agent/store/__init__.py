"""Control-plane stores behind one Backend protocol."""

from agent.store.base import DEFAULT_LEASE_S, Backend

__all__ = ["Backend", "DEFAULT_LEASE_S", "get_backend"]


def get_backend(url: str | None = None):
    """The backend for this process (see :func:`agent.store.factory.get_backend`)."""
    from agent.store.factory import get_backend as _get

    return _get(url)
