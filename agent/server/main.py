"""Start ``agent server``: uvicorn serving :func:`agent.server.app.create_app`.

The command line is :mod:`agent.server.cli`, which calls :func:`run_server`; this
module does not know it. ``python -m agent.server --port 8008 ...`` (see
:mod:`agent.server.__main__`) takes the same options as ``agent server``.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from pathlib import Path

import uvicorn
from sqlalchemy.engine import make_url

from agent.config import load_settings
from agent.core.secrets import setup_redacted_logging
from agent.server.app import create_app
from agent.server.limits import DEFAULT_MAX_BODY_MB
from agent.store.sql import SqlBackend

log = logging.getLogger("agent.server")

#: Exit status when the options are refused (as click's usage errors).
EXIT_USAGE = 2
#: Seconds uvicorn waits for running requests (long-polling claims) at shutdown.
GRACEFUL_SHUTDOWN_S = 5


def run_server(
    host: str = "127.0.0.1",
    port: int = 8008,
    db_url: str | None = None,
    files: str | None = None,
    token: str | None = None,
    insecure: bool = False,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
    max_log_lines: int | None = None,
) -> None:
    """Serve the API until interrupted.

    Args:
        host: address to bind; anything but loopback needs ``token`` or ``insecure``.
        port: TCP port.
        db_url: SQLAlchemy URL of the store; None = the embedded SQLite in ``$AGENT_HOME``.
        files: default artifact destination: a directory (the server then hosts it at
            ``/api/v1/files``) or ``s3://bucket/prefix``; None = ``$AGENT_HOME/files``.
        token: bearer token clients must send; None or "" = ``api_token`` of the
            configuration (``$AGENT_HOME/agent.toml``), else no auth.
        insecure: allow a non-loopback bind without a token.
        max_body_mb: the largest request body in MiB (file uploads aside): 413 past it.
        max_log_lines: lines a task's log keeps; None = ``AGENT_MAX_LOG_LINES`` or 1,000,000.

    Raises:
        SystemExit: with status 2 when the bind is refused (the reason on stderr).
    """
    settings = load_settings()
    token = token or settings.api_token or None
    problem = bind_problem(host, token, insecure)
    if problem:
        print(f"agent server: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    db_url = db_url or settings.db_url
    # Not settings.default_files_url: that falls back to AGENT_API_URL, the server itself.
    files = files or settings.files_url or str(settings.home / "files")
    files_root, files_url = files_target(files)
    setup_redacted_logging(logging.INFO)
    backend = SqlBackend(db_url)
    if max_log_lines is not None:
        backend.max_log_lines = max(2, int(max_log_lines))
    try:
        app = create_app(
            backend, token=token, files_root=files_root, files_url=files_url,
            max_body_bytes=int(max_body_mb * 2**20),
        )  # fmt: skip
        log.info(
            "agent server on http://%s:%d (store %s, files %s, auth %s)",
            host, port, _redacted(db_url), files, "token" if token else "none",
        )  # fmt: skip
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="info",
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
    finally:
        backend.close()


def bind_problem(host: str, token: str | None, insecure: bool) -> str | None:
    """Why binding ``host`` is refused, or None when it is fine."""
    if token or insecure or is_loopback(host):
        return None
    return (
        f"refusing to listen on {host} without a token: anyone who can reach it could run code "
        "on your agents; set --token (or AGENT_API_TOKEN), bind 127.0.0.1, or pass --insecure"
    )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def files_target(files: str) -> tuple[Path | None, str | None]:
    """(directory to host, URL to advertise) for the ``--files`` option."""
    if files.startswith("file://"):
        files = files[len("file://") :]
    if "://" in files:
        return None, files
    root = Path(files).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root, None


def _redacted(db_url: str) -> str:
    try:
        return make_url(db_url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL fails later, with SQLAlchemy's own message
        return db_url
