"""A task's OS process: its own session, streamed output, a kill of its whole tree.

The task runs in a new session (so its process group is its own and a signal to
the group reaches everything it started there). stdout and stderr are merged and
unbuffered; a reader thread hands the lines to a callback in small batches (a line
waits at most ``batch_interval`` seconds).

A group misses a grandchild that double-forks with ``setsid()``, so every task's tree is
held by one of two means (``TaskProcess.kill_tree`` ends everything either one holds):

- a cgroup of its own (:mod:`agent.execution.cgroup`), where cgroup v2 is writable: the
  task joins it between fork and exec, with ``PR_SET_PDEATHSIG=SIGKILL`` so that it dies
  with the daemon even when the daemon is killed with ``-9``. The death signal follows the
  *thread* that started the task, so launch from a thread that outlives the task (the
  runner blocks in it until the end). For the rest of the tree, a watchdog: a tiny ``sh``
  in its own session that reads a pipe whose only writer is the daemon. When the daemon
  dies the pipe reaches EOF and the watchdog kills the cgroup (and the task's group).
  ``kill_tree`` disarms it once the tree is gone.
- else a supervisor (:mod:`agent.execution.subreaper`): a subreaper that starts the task
  and relays its exit status, so the tree is the supervisor's descendants; it kills the
  tree itself when the daemon dies, and sweeps the task's leftovers when the task ends.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

import psutil

from agent.execution import subreaper
from agent.execution.cgroup import TaskCgroup

log = logging.getLogger(__name__)

OnLines = Callable[[list[str]], None]

PR_SET_PDEATHSIG = 1
#: A line without a newline is handed over once this long (progress bars, binary junk).
MAX_PARTIAL_LINE = 64 * 1024
#: How long ``wait()`` lets the reader drain after the process exited.
DRAIN_TIMEOUT_S = 1.0


def death_signal_preexec(cgroup: TaskCgroup | None = None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks the kernel to SIGKILL the child when we die (Linux),
    and moves the child into ``cgroup`` first."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:  # runs in the child between fork and exec: keep it tiny
        if cgroup is not None:
            cgroup.join()
        prctl(PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # the daemon died before prctl took effect
            os.kill(os.getpid(), sigkill)

    return preexec


def _split_lines(buffer: bytes) -> tuple[list[str], bytes]:
    """Complete lines of ``buffer`` (decoded) and the unfinished rest."""
    *complete, rest = buffer.split(b"\n")
    if len(rest) > MAX_PARTIAL_LINE:
        complete.append(rest)
        rest = b""
    return [_as_shown(raw) for raw in complete], rest


def _as_shown(raw: bytes) -> str:
    """What a terminal would show of ``raw``: the last ``\\r``-separated segment."""
    text = raw.decode("utf-8", errors="replace").rstrip("\r")
    if "\r" in text:
        segments = [s for s in text.split("\r") if s.strip()]
        text = segments[-1] if segments else ""
    return text


def _deliver(on_lines: OnLines, batch: list[str]) -> None:
    try:
        on_lines(batch)
    except Exception:  # the reader must go on, or a full pipe would block the task
        log.exception("task output callback failed; %d line(s) lost", len(batch))


def _pump(stream: IO[bytes], on_lines: OnLines, batch_interval: float) -> None:
    """Read ``stream`` until EOF, handing lines over in batches."""
    fd = stream.fileno()
    rest, batch, due = b"", [], 0.0
    with stream:
        while True:
            timeout = max(0.0, due - time.monotonic()) if batch else None
            readable, _, _ = select.select([fd], [], [], timeout)
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                lines, rest = _split_lines(rest + chunk)
                if lines and not batch:
                    due = time.monotonic() + batch_interval
                batch += lines
            if batch and time.monotonic() >= due:
                _deliver(on_lines, batch)
                batch = []
    if rest:
        batch.append(_as_shown(rest))
    if batch:
        _deliver(on_lines, batch)


def start_reader(
    stream: IO[bytes], on_lines: OnLines, batch_interval: float, pid: int
) -> threading.Thread:
    """A thread that hands the lines of ``stream`` (a task's output) to ``on_lines``."""
    reader = threading.Thread(
        target=_pump,
        args=(stream, on_lines, batch_interval),
        name=f"task-output-{pid}",
        daemon=True,
    )
    reader.start()
    return reader


class ChildProcess(Protocol):
    """What :class:`TaskProcess` needs of its process: ``subprocess.Popen``'s own calls
    (a warm start's forked child offers the same, see ``agent.execution.warm``)."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int:
        """The exit code; raises ``subprocess.TimeoutExpired`` after ``timeout``."""

    def send_signal(self, sig: int) -> None: ...


class TaskProcess:
    """A launched task: poll it, wait for it, kill its whole tree."""

    def __init__(
        self,
        popen: ChildProcess,
        reader: threading.Thread,
        watchdog: GroupWatchdog | None = None,
        cgroup: TaskCgroup | None = None,
    ):
        self._popen = popen
        self._reader = reader
        self._watchdog = watchdog
        self.cgroup = cgroup
        self.pid = popen.pid
        self.pgid = popen.pid  # session leader: its pid is its group id

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def poll(self) -> int | None:
        """The exit code, or None while it runs (negative: killed by that signal)."""
        return self._popen.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the exit; then give the reader a moment to hand over the last lines.

        Returns the exit code, or None when ``timeout`` passed first.
        """
        try:
            code = self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        # Processes the task left behind may hold the pipe open: do not wait on them.
        self._reader.join(DRAIN_TIMEOUT_S)
        return code

    def output_done(self, timeout: float | None = None) -> bool:
        """Wait until all output was delivered (the pipe closed); True when it did."""
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def kill_tree(self, grace: float = 10.0) -> int:
        """SIGTERM the task's group and strays, wait ``grace`` s, then SIGKILL what is left.

        Strays are the processes of the tree outside the group (``setsid``): the rest of
        the task's cgroup, and its descendants (all of the tree under a supervisor, which
        holds the orphans). Returns the exit code.
        """
        strays = self._strays()
        self._signal(signal.SIGTERM, strays)
        deadline = time.monotonic() + grace
        while self._anything_alive(strays) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._anything_alive(strays):
            strays = list({p.pid: p for p in strays + self._strays()}.values())
            self._signal(signal.SIGKILL, strays)
        code = self._popen.wait()
        deadline = time.monotonic() + 2.0
        while self._anything_alive(strays) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._reader.join(DRAIN_TIMEOUT_S)
        if self.cgroup is not None:
            self.cgroup.remove()
        if self._watchdog is not None:
            self._watchdog.disarm()
        return code

    def _strays(self) -> list[psutil.Process]:
        """The tree outside the task's process group (a group kill misses them)."""
        try:
            tree = {p.pid: p for p in psutil.Process(self.pid).children(recursive=True)}
        except psutil.Error:
            tree = {}
        for pid in self.cgroup.pids() if self.cgroup is not None else ():
            if pid != self.pid and pid not in tree:
                try:
                    tree[pid] = psutil.Process(pid)
                except psutil.Error:
                    pass
        return [p for p in tree.values() if _pgid(p.pid) not in (self.pgid, None)]

    def _signal(self, sig: signal.Signals, strays: Sequence[psutil.Process]) -> None:
        # Strays first: a supervisor (in the group) must outlive them, or they would
        # be orphaned to init just before their own signal.
        for proc in strays:
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass
        if sig == signal.SIGKILL and self.cgroup is not None:
            self.cgroup.kill()
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        # It may have moved itself to another group; signal it once, not twice
        # (a second SIGTERM means "hurry" to some programs, our own daemon included).
        if self._popen.poll() is None and _pgid(self.pid) not in (self.pgid, None):
            self._popen.send_signal(sig)

    def _anything_alive(self, strays: Sequence[psutil.Process]) -> bool:
        if self._popen.poll() is None:
            return True
        if self.cgroup is not None and self.cgroup.populated():
            return True
        return any(_running(p) for p in strays) or bool(_group_members(self.pgid))


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of group ``pgid``: a zombie that init has not
    reaped yet still counts for ``killpg(pgid, 0)``, so ask process by process."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return []  # the cheap answer: nobody is left
    return [p.pid for p in psutil.process_iter() if _pgid(p.pid) == pgid and _running(p)]


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# The watchdog: a line on stdin disarms it; EOF without one means the daemon died
# (the kernel closed its end), so kill the task's group ($1), then its cgroup ($2) until
# the cgroup can be removed.
_WATCHDOG_SCRIPT = """read -r _ || {
kill -KILL "-$1" 2>/dev/null
i=0
while [ -n "$2" ] && [ -d "$2" ] && ! rmdir "$2" 2>/dev/null && [ $i -lt 100 ]; do
  echo 1 2>/dev/null >"$2/cgroup.kill" ||
    for p in $(cat "$2/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  sleep 0.05; i=$((i + 1))
done
}"""


class GroupWatchdog:
    """Kills a process group (and cgroup) when this process dies; :meth:`disarm` when done."""

    def __init__(self, pgid: int, cgroup: TaskCgroup | None = None):
        read_end, self._write_end = os.pipe()
        where = str(cgroup.path) if cgroup is not None else ""
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                ["/bin/sh", "-c", _WATCHDOG_SCRIPT, "agent-watchdog", str(pgid), where],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a signal to the daemon's group must not reach it
                close_fds=True,
            )
        except OSError:
            log.warning("no watchdog for process group %d: /bin/sh could not start", pgid)
            self._proc = None
        finally:
            os.close(read_end)

    def disarm(self) -> None:
        """The group is gone: let the watchdog exit without killing anything."""
        if self._write_end < 0:
            return
        try:
            os.write(self._write_end, b"disarm\n")
        except OSError:  # the watchdog is gone already
            pass
        os.close(self._write_end)
        self._write_end = -1
        if self._proc is not None:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()


def launch(
    argv: Sequence[str],
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None,
    on_lines: OnLines,
    batch_interval: float = 0.1,
) -> TaskProcess:
    """Start ``argv`` in ``cwd`` with exactly ``env`` (plus ``PYTHONUNBUFFERED=1``).

    ``on_lines`` is called from a reader thread with lists of output lines
    (stdout and stderr merged, newlines stripped), each line within about
    ``batch_interval`` seconds of being written.

    Raises:
        OSError: the program cannot be started (not found, not executable, bad cwd).
    """
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONUNBUFFERED"] = "1"
    cgroup = TaskCgroup.create()
    if cgroup is None:
        _check_program(argv[0], cwd, full_env)  # the supervisor could only exit 127
        command, preexec = subreaper.command(argv), None
    else:
        command, preexec = list(argv), death_signal_preexec(cgroup)
    try:
        popen = subprocess.Popen(
            command,
            cwd=Path(cwd),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
            close_fds=True,
        )
    except BaseException:
        if cgroup is not None:
            cgroup.remove()
        raise
    assert popen.stdout is not None
    reader = start_reader(popen.stdout, on_lines, batch_interval, popen.pid)
    if cgroup is None:  # the supervisor sees to the tree when we die
        return TaskProcess(popen, reader)
    return TaskProcess(popen, reader, GroupWatchdog(popen.pid, cgroup), cgroup)


def _check_program(program: str, cwd: str | os.PathLike[str], env: Mapping[str, str]) -> None:
    """Raise as ``subprocess.Popen`` would when ``program`` cannot be run."""
    if "/" in program:
        path = os.path.join(cwd, program)
        found = os.path.isfile(path) and os.access(path, os.X_OK)
    else:
        found = shutil.which(program, path=env.get("PATH", os.defpath)) is not None
    if not found:
        raise FileNotFoundError(errno.ENOENT, "no such program, or not executable", program)
