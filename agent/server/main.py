"""Start ``agent server``: uvicorn serving :func:`agent.server.app.create_app`.

The command line is :mod:`agent.server.cli`, which calls :func:`run_server`; this
module does not know it. ``python -m agent.server --port 8008 ...`` (see
:mod:`agent.server.__main__`) takes the same options as ``agent server``.
"""

from __future__ import annotations

import dataclasses
import gc
import ipaddress
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

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
#: Allocations between two young collections of the server's garbage collector (Python's
#: default is 700). A fleet's long-polls keep thousands of requests open, so each young
#: collection finds many alive and moves them to the old generation, and the old
#: generation's full collections came every 4 s, each stopping the event loop for 110 to
#: 200 ms: the p99 of every request of 1,000 agents (bench/fleet.py). Collected 30 times
#: less often, they move 30 times fewer.
GC_YOUNG_THRESHOLD = 20_000


def run_server(
    host: str = "127.0.0.1",
    port: int = 8008,
    db_url: str | None = None,
    files: str | None = None,
    token: str | None = None,
    insecure: bool = False,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
    max_log_lines: int | None = None,
    workers: int = 1,
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
        workers: server processes sharing the port (uvicorn's workers), each with its own
            connections, event loop, enqueue listener and lease reaper; PostgreSQL only.

    Raises:
        SystemExit: with status 2 when the options are refused (the reason on stderr).
    """
    settings = load_settings()
    token = token or settings.api_token or None
    db_url = db_url or settings.db_url
    problem = bind_problem(host, token, insecure) or workers_problem(workers, db_url)
    if problem:
        print(f"agent server: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    # Not settings.default_files_url: that falls back to AGENT_API_URL, the server itself.
    files = files or settings.files_url or str(settings.home / "files")
    files_root, files_url = files_target(files)
    config = AppConfig(
        db_url=db_url, token=token, files_root=str(files_root) if files_root else None,
        files_url=files_url, max_body_bytes=int(max_body_mb * 2**20),
        max_log_lines=max_log_lines,
    )  # fmt: skip
    setup_redacted_logging(logging.INFO)
    serving = dict(
        host=host, port=port, log_level="info", access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, http=_http_protocol(),
    )  # fmt: skip
    log.info(
        "agent server on http://%s:%d (store %s, files %s, auth %s, %d worker%s)",
        host, port, _redacted(db_url), files, "token" if token else "none",
        workers, "" if workers == 1 else "s",
    )  # fmt: skip
    if workers > 1:
        SqlBackend(db_url).close()  # the schema made or upgraded once, before the workers
        os.environ[WORKER_CONFIG_ENV] = json.dumps(dataclasses.asdict(config))
        uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, **serving)
        return
    app, backend = build_app(config)
    tune_gc()
    try:
        uvicorn.run(app, **serving)
    finally:
        backend.close()


def _http_protocol() -> Any:
    """uvicorn's httptools protocol sending each small answer in one piece
    (:mod:`agent.server.one_send`), or uvicorn's choice where httptools is missing."""
    try:
        from agent.server.one_send import OneSendProtocol
    except ImportError:
        return "auto"
    return OneSendProtocol


@dataclasses.dataclass(frozen=True)
class AppConfig:
    """What the app of ``agent server`` is made from (see :func:`run_server`)."""

    db_url: str
    token: str | None
    files_root: str | None
    files_url: str | None
    max_body_bytes: int
    max_log_lines: int | None


#: Where the parent of ``--workers N`` leaves the AppConfig (JSON) for its workers: the
#: environment of one's own processes, as the token's AGENT_API_TOKEN is.
WORKER_CONFIG_ENV = "AGENT_SERVER_WORKER_CONFIG"


def build_app(config: AppConfig) -> tuple[ASGIApp, SqlBackend]:
    """The app and the store it serves (the caller closes the store)."""
    backend = SqlBackend(config.db_url)
    if config.max_log_lines is not None:
        backend.max_log_lines = max(2, int(config.max_log_lines))
    try:
        app = create_app(
            backend, token=config.token,
            files_root=Path(config.files_root) if config.files_root else None,
            files_url=config.files_url, max_body_bytes=config.max_body_bytes,
        )  # fmt: skip
    except BaseException:
        backend.close()
        raise
    return app, backend


def worker_app() -> ASGIApp:
    """The app of one process of ``agent server --workers N``: uvicorn calls this in each
    worker it spawns, with the parent's AppConfig in ``AGENT_SERVER_WORKER_CONFIG``. The
    store closes when the process ends."""
    setup_redacted_logging(logging.INFO)
    app, _backend = build_app(AppConfig(**json.loads(os.environ[WORKER_CONFIG_ENV])))
    tune_gc()
    return app


def tune_gc() -> None:
    """Set the garbage collector for a long-running server, once its app is built:
    what start-up made (modules, the app, the store's statements: most of the heap) is
    frozen out of every later collection, which then looks only at what serving makes;
    and young collections come every :data:`GC_YOUNG_THRESHOLD` allocations. A full
    collection of 1,000 agents' server looked at 244,000 objects, 143,000 of them from
    start-up."""
    gc.collect()  # start-up's garbage, before the rest is frozen for good
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), middle, old)


def workers_problem(workers: int, db_url: str) -> str | None:
    """Why ``workers`` server processes cannot share the store ``db_url``, or None."""
    if workers < 1:
        return f"--workers must be at least 1, not {workers}"
    if workers > 1 and db_url.startswith("sqlite"):
        return (
            f"--workers {workers} needs PostgreSQL (--db postgresql://...): SQLite writes one "
            "at a time, so more server processes only wait on each other (and an in-memory "
            "database would be one per process); on SQLite serve with one"
        )
    return None


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
