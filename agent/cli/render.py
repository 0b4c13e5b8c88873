"""Small formatting helpers shared by the commands: statuses, ids, ages, sizes, JSON."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

#: Rich style per task status (pipeline nodes may also say ``running``/``pending``).
STATUS_STYLES = {
    "created": "dim",
    "pending": "dim",
    "queued": "blue",
    "in_progress": "yellow",
    "running": "yellow",
    "completed": "green",
    "cached": "cyan",
    "published": "bold green",
    "failed": "bold red",
    "stopped": "magenta",
    "skipped": "dim",
    "archived": "dim",
}


def status_text(status: str | None) -> Text:
    """The status as rich text in its colour."""
    from rich.text import Text

    value = str(status or "unknown")
    return Text(value, style=STATUS_STYLES.get(value, ""))


def short_id(task_id: str | None, length: int = 8) -> str:
    """The first ``length`` characters of an id (the CLI accepts them back)."""
    return (task_id or "")[:length]


def format_age(ts: float | None, now: float | None = None) -> str:
    """``ts`` as an age: ``"42s ago"``, ``"3m ago"``, ``"5h ago"``, ``"2d ago"``."""
    if not ts:
        return "-"
    seconds = max(0.0, (time.time() if now is None else now) - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def format_duration(seconds: float | None) -> str:
    """``"0.4s"``, ``"12.0s"``, ``"3m 04s"``, ``"2h 05m"``; ``""`` when unknown."""
    if seconds is None or seconds < 0:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_time(ts: float | None) -> str:
    """Local date and time of ``ts``, or ``"-"``."""
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def format_size(size: int | float | None) -> str:
    """Bytes for people: ``"512 B"``, ``"1.5 KB"``, ``"2.0 GB"``."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"  # pragma: no cover - loop always returns


def format_value(value: Any, limit: int = 80) -> str:
    """A hyperparameter or property value on one line: strings as is, the rest as JSON."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def echo_json(data: Any) -> None:
    """Print ``data`` as JSON (indent 2) on stdout."""
    click.echo(json.dumps(data, indent=2, default=str))


def make_console() -> Console:
    """A rich console on whatever ``sys.stdout`` is when it prints (tests capture it)."""
    from rich.console import Console

    return Console(highlight=False)
