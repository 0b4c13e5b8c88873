"""A per-task subreaper: the task's tree, held where no cgroup can be made.

Why a process of its own. A grandchild that double-forks with ``setsid()`` leaves the
task's process group, and once its parent exits the kernel hands it to the nearest
*subreaper* ancestor (``PR_SET_CHILD_SUBREAPER``), else to init: from then on only its
new parent can tell whose it is. The daemon as subreaper would collect the orphans of
every task it runs in one heap (which task's is this?) and could do nothing about them
once it is killed with ``-9``. So each task gets a subreaper of its own, the *supervisor*:

- it forks the task and waits for it, reaping whatever orphans of the task's tree come
  to it, so the tree is always exactly the supervisor's descendants (a walk of /proc);
- the daemon kills the tree with the supervisor as root (``TaskProcess.kill_tree``);
- when the task exits, it sweeps what the task left running (SIGTERM, ``grace`` s,
  SIGKILL), then exits as the task did (same code, or killed by the same signal), so the
  daemon reads the task's exit status from it;
- its death signal (``PR_SET_PDEATHSIG``) is SIGHUP: when the daemon (or the zygote that
  forked it) dies, even by ``kill -9``, it SIGKILLs the whole tree and exits. The task
  itself has SIGKILL as its death signal toward the supervisor.

Cost: a cold start runs it as ``python -I -S subreaper.py`` (a bare interpreter, stdlib
only: about 10 ms); a warm start forks it from the zygote, which costs one fork. A task
with a cgroup (``agent.execution.cgroup``) needs none of this and gets no supervisor.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: The supervisor's death signal: whoever started it is gone.
DEATH_SIGNAL = signal.SIGHUP
#: Seconds the leftovers of a finished task get between SIGTERM and SIGKILL.
LEFTOVER_GRACE_S = 10.0


class _StarterGone(Exception):
    """The daemon (or zygote) that started the supervisor died."""


def _prctl(option: int, value: int) -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(root: int) -> list[int]:
    """Live (not zombie) descendants of ``root``, read from /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _send(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _reap() -> bool:
    """Reap every child that has exited, without waiting; False when none is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def kill_descendants(grace: float) -> None:
    """SIGTERM every descendant, SIGKILL those left after ``grace`` s; reap them all."""
    if not _reap():  # no child: the tree is empty (an orphan would be our child)
        return
    me = os.getpid()
    left = descendants(me)
    if grace > 0 and left:
        _send(left, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            _reap()
            left = descendants(me)
    for _ in range(100):  # a fork bomb could outrun one pass; this one gives up in ~2 s
        if not left:
            break
        _send(left, signal.SIGKILL)
        time.sleep(0.02)
        _reap()
        left = descendants(me)
    _reap()


def _exit_as(status: int) -> NoReturn:
    """End as the task ended: its exit code, or killed by its signal."""
    if not os.WIFSIGNALED(status):
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    sig = os.WTERMSIG(status)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file of ours
        signal.signal(sig, signal.SIG_DFL)
    except (ImportError, OSError, ValueError):
        pass
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)


def supervise(starter: int, start_task: Callable[[], object], grace: float) -> NoReturn:
    """Become the subreaper of a task that ``start_task`` (in a forked child) becomes.

    ``starter`` is the pid of our parent (the daemon or the zygote): when it dies, the
    tree dies. ``start_task`` must not return (exec, or ``os._exit``); if it does, the
    task exits 127.
    """
    _prctl(PR_SET_CHILD_SUBREAPER, 1)

    def on_death_signal(*_: object) -> None:
        if os.getppid() != starter:
            raise _StarterGone

    signal.signal(DEATH_SIGNAL, on_death_signal)
    for sig in (signal.SIGTERM, signal.SIGINT):  # meant for the task (its group)
        signal.signal(sig, lambda *_: None)
    _prctl(PR_SET_PDEATHSIG, DEATH_SIGNAL)
    if os.getppid() != starter:  # it died before the death signal was set
        os._exit(1)
    task = os.fork()
    if task == 0:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        for sig in (signal.SIGTERM, signal.SIGINT, DEATH_SIGNAL):
            signal.signal(sig, signal.SIG_DFL)
        try:
            start_task()
        finally:
            os._exit(127)
    try:
        while True:
            pid, status = os.wait()  # the task, or an orphan of its tree
            if pid == task:
                break
        kill_descendants(grace)
    except _StarterGone:
        kill_descendants(0)
        os._exit(1)
    _exit_as(status)


def command(argv: Sequence[str], grace: float = LEFTOVER_GRACE_S) -> list[str]:
    """The command line that runs ``argv`` under a supervisor started by this process."""
    return [sys.executable, "-I", "-S", __file__, str(os.getpid()), repr(grace), *argv]


def _exec(argv: list[str]) -> NoReturn:
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"agent: cannot start {argv[0]}: {exc}", file=sys.stderr, flush=True)
    os._exit(127)


if __name__ == "__main__":
    supervise(int(sys.argv[1]), lambda: _exec(sys.argv[3:]), float(sys.argv[2]))
