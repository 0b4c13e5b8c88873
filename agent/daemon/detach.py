"""Daemons in the background: pid files, ``--detached`` and ``agent daemon --stop``.

Every daemon (detached or not) writes ``$AGENT_HOME/daemons/<worker>.pid``: a small JSON
record with its pid, process start time and queues, so ``--stop`` finds it and never
signals a recycled pid. A detached daemon also logs to ``<worker>.log`` beside it.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


def daemons_dir(home: Path) -> Path:
    path = Path(home) / "daemons"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _safe_name(worker_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in worker_id)


def pid_path(home: Path, worker_id: str) -> Path:
    return daemons_dir(home) / f"{_safe_name(worker_id)}.pid"


def log_path(home: Path, worker_id: str) -> Path:
    return daemons_dir(home) / f"{_safe_name(worker_id)}.log"


@dataclass
class PidRecord:
    """What a pid file holds."""

    pid: int
    worker_id: str
    queues: list[str] = field(default_factory=list)
    create_time: float = 0.0
    path: Path | None = None

    def is_alive(self) -> bool:
        """The recorded process still runs (and is the same process, not a reused pid)."""
        try:
            proc = psutil.Process(self.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            return abs(proc.create_time() - self.create_time) < 1.0
        except psutil.Error:
            return False


def write_pid_file(home: Path, worker_id: str, queues: Sequence[str]) -> Path:
    """Record this process as the daemon ``worker_id``."""
    pid = os.getpid()
    record = {
        "pid": pid,
        "worker_id": worker_id,
        "queues": list(queues),
        "create_time": psutil.Process(pid).create_time(),
    }
    path = pid_path(home, worker_id)
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)
    return path


def remove_pid_file(path: Path) -> None:
    """Remove ``path`` if it still names this process."""
    record = read_pid_file(path)
    if record is not None and record.pid == os.getpid():
        path.unlink(missing_ok=True)


def read_pid_file(path: Path) -> PidRecord | None:
    try:
        data = json.loads(path.read_text())
        return PidRecord(
            pid=int(data["pid"]),
            worker_id=str(data["worker_id"]),
            queues=list(data.get("queues", [])),
            create_time=float(data.get("create_time", 0.0)),
            path=path,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_daemons(home: Path) -> list[PidRecord]:
    """Daemons with a live pid file; stale pid files are removed on the way."""
    records = []
    for path in sorted(daemons_dir(home).glob("*.pid")):
        record = read_pid_file(path)
        if record is None or not record.is_alive():
            path.unlink(missing_ok=True)
            continue
        records.append(record)
    return records


@dataclass
class Detached:
    """The background daemon, as the process that started it sees it."""

    pid: int
    log_path: Path


def detach(log_file_for: Callable[[int], Path], wait_s: float = 10.0) -> Detached | None:
    """Double-fork into the background; stdout/stderr go to ``log_file_for(pid)``.

    ``log_file_for`` runs in the background process, before the original one is told the
    daemon started: the place to write the pid file, so ``--stop`` finds it at once.

    Returns ``None`` in the background process (go on and run the daemon there) and a
    :class:`Detached` in the original process, which should then exit. Call it before
    starting threads or opening connections: only the forking thread survives a fork.

    Raises:
        RuntimeError: the background process did not report back within ``wait_s``.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child:
        os.close(write_end)
        os.waitpid(child, 0)
        return _read_report(read_end, wait_s)
    os.close(read_end)
    # First child: a new session without a controlling terminal, then fork again so the
    # daemon is not a session leader and can never reacquire one.
    os.setsid()
    if os.fork():
        os._exit(0)
    logfile = log_file_for(os.getpid())
    _redirect_std_streams(logfile)
    os.write(write_end, f"{os.getpid()}\n{logfile}\n".encode())
    os.close(write_end)
    return None


def _redirect_std_streams(logfile: Path) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    out = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)


def _read_report(fd: int, wait_s: float) -> Detached:
    data = b""
    deadline = time.monotonic() + wait_s
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = pipe.read(4096)
            if not chunk:
                break
            data += chunk
    lines = data.decode().splitlines()
    if len(lines) < 2:
        raise RuntimeError("the background daemon did not start (no report from it)")
    return Detached(pid=int(lines[0]), log_path=Path(lines[1]))


@dataclass
class StopResult:
    """What ``stop_daemons`` did to one daemon."""

    worker_id: str
    pid: int
    stopped: bool


def stop_daemons(
    home: Path,
    queues: Sequence[str] = (),
    timeout_s: float = 60.0,
    sig: int = signal.SIGTERM,
    sleep: Callable[[float], None] = time.sleep,
) -> list[StopResult]:
    """Send ``sig`` to each running daemon (only those serving one of ``queues``, if given)
    and wait up to ``timeout_s`` for them to exit.

    A SIGTERM is a warm stop: a daemon finishes its running task first. Calling this again
    on a daemon that is still finishing sends the second SIGTERM, which aborts the task.
    """
    wanted = set(queues)
    targets = [d for d in running_daemons(home) if not wanted or wanted & set(d.queues)]
    for record in targets:
        try:
            os.kill(record.pid, sig)
        except ProcessLookupError:
            pass  # exited between the check and the signal: that is what we wanted
    deadline = time.monotonic() + timeout_s
    pending = list(targets)
    while pending and time.monotonic() < deadline:
        pending = [r for r in pending if r.is_alive()]
        if pending:
            sleep(0.1)
    results = []
    for record in targets:
        stopped = not record.is_alive()
        if stopped and record.path is not None:
            record.path.unlink(missing_ok=True)
        results.append(StopResult(record.worker_id, record.pid, stopped))
    return results
