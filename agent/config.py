"""Configuration: flags beat environment, environment beats ``$AGENT_HOME/agent.toml``.

The TOML file holds the same keys as the environment (lower case, without the
``AGENT_`` prefix: ``api_url``, ``api_token``, ``files_url``) plus the agent's
defaults in an ``[agent]`` table (queues, venv cache size, docker image, ...), and the
git credentials agents clone with in ``[agent.git]`` (``user``, ``password``, or
``AGENT_GIT_USER``/``AGENT_GIT_PASS``; see :mod:`agent.execution.repo`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib


def agent_home() -> Path:
    """``$AGENT_HOME`` (default ``~/.agent``), created on demand."""
    home = Path(os.environ.get("AGENT_HOME") or Path.home() / ".agent").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def load_file(home: Path | None = None) -> dict[str, Any]:
    """The parsed ``agent.toml`` (empty when missing)."""
    path = (home or agent_home()) / "agent.toml"
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        return tomllib.load(fh)


@dataclass
class Settings:
    """Resolved settings of this process."""

    home: Path
    api_url: str | None = None
    api_token: str | None = None
    files_url: str | None = None
    agent: dict[str, Any] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        """URL of the embedded SQLite store."""
        return f"sqlite:///{self.home / 'agent.db'}"

    @property
    def default_files_url(self) -> str:
        """Where artifacts go: ``files_url``, else the server (so every node can read
        them), else ``$AGENT_HOME/files``."""
        return self.files_url or self.api_url or str(self.home / "files")


def _pick(env_name: str, file_value: Any) -> Any:
    value = os.environ.get(env_name)
    return value if value not in (None, "") else file_value


def load_settings(**flags: Any) -> Settings:
    """Settings from flags (non-None values), environment and the TOML file."""
    home = agent_home()
    data = load_file(home)
    settings = Settings(
        home=home,
        api_url=_pick("AGENT_API_URL", data.get("api_url")),
        api_token=_pick("AGENT_API_TOKEN", data.get("api_token")),
        files_url=_pick("AGENT_FILES_URL", data.get("files_url")),
        agent=dict(data.get("agent", {})),
    )
    for key, value in flags.items():
        if value is not None:
            setattr(settings, key, value)
    return settings
