"""Helpers of the daemon tests: real ``agent daemon`` subprocesses on a temp AGENT_HOME."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.core.models import Script, Task
from agent.store.base import Backend
from tests.bare_node import bare_python, node_env  # noqa: F401 - re-exported
from tests.services import REPO_ROOT, agent_env, wait_for  # noqa: F401 - re-exported


def make_task(
    store: Backend, code: str, queue: str | None = None, name: str = "t", priority: int = 0
) -> Task:
    """An inline-code task, enqueued on ``queue`` when given."""
    task = store.create_task(Task(name=name, project="daemon-tests", script=Script(code=code)))
    if queue:
        store.enqueue(task.id, queue, priority=priority)
    return store.get_task(task.id)


def wait_file_code(path: Path, then: str = "") -> str:
    """Task code that waits (up to 60 s) for ``path`` to exist, then runs ``then``."""
    return (
        "import os, sys, time\n"
        "deadline = time.time() + 60\n"
        f"while not os.path.exists({str(path)!r}):\n"
        "    if time.time() > deadline:\n"
        "        sys.exit('gave up waiting')\n"
        "    time.sleep(0.05)\n"
        f"{then}\n"
    )


class DaemonProcess:
    """``agent daemon ARGS`` on the bare node (see :mod:`tests.bare_node`), its output in a
    log file; ``env`` defaults to :func:`~tests.bare_node.node_env`."""

    def __init__(self, home: Path, args: Sequence[str], env: dict[str, str] | None = None):
        self.home = home
        self.args = list(args)
        self.env = env or node_env(home)
        self.log_path = home / f"daemon-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(bare_python()), "-m", "agent.cli.main", "daemon", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.home,  # not the checkout: `-m` would import its agent package
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 30.0) -> None:
        wait_for(lambda: text in self.log() or self._dead(), timeout, f"{text!r} in daemon log")
        assert text in self.log(), f"daemon exited before logging {text!r}:\n{self.log()}"

    def _dead(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon still running after {timeout} s:\n{self.log()}") from None

    def stop(self) -> None:
        """Make sure it is gone (test teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def worker_of(store: Backend, worker_id: str) -> Any:
    return next((w for w in store.list_workers() if w.id == worker_id), None)


def log_text(store: Backend, task_id: str) -> str:
    return "\n".join(line.text for line in store.get_logs(task_id))
