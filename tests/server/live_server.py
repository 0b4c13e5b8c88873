"""A real ``agent server`` in a subprocess, for tests that talk HTTP to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.services import REPO_ROOT, free_port


class LiveServer:
    """``python -m agent.server`` on a free loopback port.

    Args:
        db_url: the store URL (``--db``).
        workdir: where its ``AGENT_HOME``, files and log go.
        token: ``--token``; None = no auth.
        host: ``--host``.
        extra_args: more command-line arguments (``--insecure``).
        port: a fixed port (to restart on the same one); None = a free one.
        files: ``--files``; None = a ``files`` dir in ``workdir``.
    """

    #: The path that answers 200 once it is up.
    ready_path = "/api/v1/health"

    def __init__(
        self,
        db_url: str,
        workdir: Path,
        token: str | None = None,
        host: str = "127.0.0.1",
        extra_args: tuple[str, ...] = (),
        port: int | None = None,
        files: str | None = None,
    ):
        self.db_url = db_url
        self.workdir = Path(workdir)
        self.token = token
        self.host = host
        self.extra_args = extra_args
        self.port = port or free_port()
        self.files = files or str(self.workdir / "files")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "agent.server", "--host", self.host]
        cmd += ["--port", str(self.port), "--db", self.db_url]
        cmd += ["--files", self.files, *self.extra_args]
        if self.token:
            cmd += ["--token", self.token]
        return cmd

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
        env["AGENT_HOME"] = str(self.workdir / "home")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        return env

    def start(self, timeout: float = 30.0) -> LiveServer:
        """Start it and wait until :attr:`ready_path` (``/api/v1/health``) answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.env(), cwd=REPO_ROOT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"agent server exited with {self.proc.returncode}:\n{self.log()}"
                )
            try:
                if requests.get(f"{self.url}{self.ready_path}", timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"agent server did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
