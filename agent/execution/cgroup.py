"""A cgroup (v2) per task: the one handle on a process tree that nothing in it can leave.

A process that double-forks with ``setsid()`` leaves its task's process group and, once its
parent exits, its ancestry: neither ``killpg`` nor a walk of the process tree finds it. A
cgroup does: every process forked inside one stays there, so ``cgroup.kill`` (or a
SIGKILL to each pid of ``cgroup.procs`` on kernels before 5.14) ends the whole tree.

Each task gets ``<the daemon's own cgroup>/agent-task-<daemon pid>-<n>`` on the cgroup2
hierarchy (``/sys/fs/cgroup``, or ``/sys/fs/cgroup/unified`` on a hybrid host), and its
process moves itself in between fork and exec (or, forked from a zygote, before the zygote
reports it), so nothing it starts can be outside. That needs the hierarchy mounted
read-write and ours to write (root, or a delegated subtree); where it is not, or with
``AGENT_TASK_CGROUP=0``, tasks run under a subreaper instead (``agent.execution.subreaper``).
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: ``0`` (or ``off``, ``false``, ``no``) turns cgroups per task off: the subreaper holds trees.
CGROUP_ENV = "AGENT_TASK_CGROUP"
PREFIX = "agent-task-"
_counter = itertools.count(1)


def _cgroup2_mount() -> Path | None:
    """Where the cgroup2 hierarchy is mounted (the first such mount of /proc/self/mountinfo)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].split(" ", 1)[0] == "cgroup2":
            return Path(fields[0].split(" ")[4])
    return None


def _own_cgroup() -> str | None:
    """This process's cgroup2 path (the ``0::`` line of /proc/self/cgroup)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    return next((line[3:] for line in lines if line.startswith("0::")), None)


@functools.cache
def _probe() -> tuple[Path | None, str | None]:
    """The directory under which task cgroups go, or None and why not (probed once)."""
    mount, own = _cgroup2_mount(), _own_cgroup()
    if mount is None or own is None:
        return None, "no cgroup2 hierarchy is mounted"
    parent = mount / own.lstrip("/")
    probe = parent / f"{PREFIX}probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        return None, f"cannot create a cgroup under {parent}: {exc.strerror}"
    return parent, None


def cgroup_unavailable_reason() -> str | None:
    """Why tasks get no cgroup here (None: they do)."""
    if os.environ.get(CGROUP_ENV, "").strip().lower() in ("0", "off", "false", "no"):
        return f"{CGROUP_ENV} turns them off"
    return _probe()[1]


class TaskCgroup:
    """One task's cgroup: its process joins it, :meth:`kill` ends everything in it."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls) -> TaskCgroup | None:
        """A new, empty cgroup for a task, or None where tasks get none."""
        if cgroup_unavailable_reason() is not None:
            return None
        parent = _probe()[0]
        assert parent is not None
        path = parent / f"{PREFIX}{os.getpid()}-{next(_counter)}"
        try:
            path.mkdir()
        except OSError as exc:
            log.warning("no cgroup for a task (%s): a subreaper holds its tree", exc)
            return None
        return cls(path)

    def join(self) -> None:
        """Move the calling process in (between fork and exec: keep it tiny)."""
        fd = os.open(self.path / "cgroup.procs", os.O_WRONLY)
        try:
            os.write(fd, b"0")  # 0: the writer itself
        finally:
            os.close(fd)

    def pids(self) -> list[int]:
        """The processes in it now (zombies included, until they are reaped)."""
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def populated(self) -> bool:
        """Anything still in it (a zombie not reaped yet does not count)."""
        try:
            text = (self.path / "cgroup.events").read_text()
        except OSError:
            return bool(self.pids())
        return "populated 1" in text

    def kill(self) -> None:
        """SIGKILL everything in it, forks in flight included (``cgroup.kill``, kernel 5.14+;
        a SIGKILL to each member before that)."""
        try:
            (self.path / "cgroup.kill").write_text("1")
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EINVAL, errno.EPERM):
                raise
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self, timeout: float = 2.0) -> bool:
        """Kill what is left and remove the (then empty) cgroup; True once it is gone."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    log.warning("cgroup %s stays: %s", self.path, exc)
                    return False
            self.kill()
            time.sleep(0.02)
