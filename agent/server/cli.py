"""The ``agent server`` click command (added to the ``agent`` group by :mod:`agent.cli`)."""

from __future__ import annotations

import click

from agent.server.limits import DEFAULT_MAX_BODY_MB
from agent.server.main import run_server


@click.command("server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", default=8008, show_default=True, type=click.IntRange(0, 65535), help="TCP port."
)
@click.option(
    "--db",
    "db_url",
    metavar="URL",
    default=None,
    help="Store URL (sqlite:///PATH or postgresql://...); default: SQLite in $AGENT_HOME.",
)
@click.option(
    "--files",
    metavar="DIR|s3://...",
    default=None,
    help="Default artifact destination; a DIR is also served at /api/v1/files. "
    "Default: $AGENT_FILES_URL, else $AGENT_HOME/files.",
)
@click.option(
    "--token",
    envvar="AGENT_API_TOKEN",
    default=None,
    help="Bearer token clients must send (prefer env AGENT_API_TOKEN: flags show in ps).",
)
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --host without a token.")
@click.option(
    "--max-body-mb",
    envvar="AGENT_MAX_BODY_MB",
    type=click.FloatRange(min=0.001),
    default=DEFAULT_MAX_BODY_MB,
    show_default=True,
    help="Largest request body in MiB (file uploads stream and are not limited): 413 past it.",
)
@click.option(
    "--max-log-lines",
    envvar="AGENT_MAX_LOG_LINES",
    type=click.IntRange(min=2),
    default=None,
    help="Lines a task's log keeps; the last one then says how many were dropped "
    "[default: 1000000].",
)
@click.option(
    "--workers",
    envvar="AGENT_SERVER_WORKERS",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Server processes sharing the port, each with its own event loop and database "
    "connections: more requests a second on PostgreSQL (a claim is taken once whichever "
    "process serves it, an enqueue wakes claims waiting in every process). PostgreSQL only: "
    "SQLite writes one at a time.",
)
def server_command(
    host: str,
    port: int,
    db_url: str | None,
    files: str | None,
    token: str | None,
    insecure: bool,
    max_body_mb: float,
    max_log_lines: int | None,
    workers: int,
) -> None:
    """Serve the control plane over HTTP (FastAPI + uvicorn).

    The token is --token, else AGENT_API_TOKEN, else api_token in $AGENT_HOME/agent.toml.
    """
    run_server(
        host=host, port=port, db_url=db_url, files=files, token=token, insecure=insecure,
        max_body_mb=max_body_mb, max_log_lines=max_log_lines, workers=workers,
    )  # fmt: skip
