"""The ``agent ui`` click command (added to the ``agent`` group lazily)."""

from __future__ import annotations

import threading
import webbrowser

import click

from agent.server.main import is_loopback


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="TCP port."
)
@click.option("--open", "open_browser", is_flag=True, help="Open the UI in a web browser.")
@click.option(
    "--token",
    envvar="AGENT_UI_TOKEN",
    default=None,
    help="Ask browsers for this token (a login form); needed off loopback.",
)
def ui_command(host: str, port: int, open_browser: bool, token: str | None) -> None:
    """Serve the web UI over this store: the embedded one, or AGENT_API_URL when set.

    \b
    Examples:
      agent ui                 # http://127.0.0.1:8080
      agent ui --port 9000 --open
    """
    import uvicorn

    from agent.cli.lookup import current_backend
    from agent.ui.app import create_ui_app

    if not token and not is_loopback(host):
        raise click.UsageError(
            f"refusing to serve the UI on {host} without a token: anyone who can reach it "
            "could run tasks; bind 127.0.0.1 or pass --token (or AGENT_UI_TOKEN)"
        )
    app = create_ui_app(current_backend(), token=token)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    click.echo(f"agent ui on {url} (Ctrl+C to stop)")
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
