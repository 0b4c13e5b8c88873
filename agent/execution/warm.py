"""Warm starts: fork a task's process from a zygote of its environment.

Starting an interpreter and importing the agent and its store (~0.35 s) costs more than
a trivial pipeline step. A :class:`TaskZygote` pays that once per environment: a
long-lived, single-threaded process of the environment's python, with the agent, the
store and the step runtime imported, that forks one child per task. The child is what
``launch()`` makes: its own session, stdin from /dev/null, stdout and stderr on a pipe
that the daemon reads line by line, the task's working directory, environment and
``sys.argv``, and store connections of its own (none is open when the zygote forks). It
runs the entry point as ``__main__`` and ends as the interpreter would: non-daemon
threads joined, exit handlers run, streams flushed. Its exit code comes back through
the zygote, which reaps it.

:class:`WarmBackend` wraps an execution backend: a task whose environment is warm (a
reused venv, this interpreter) starts in a zygote; anything else, and any failure of the
warm path, goes to the backend's own ``start`` (the failure is logged).

Lifetimes: the zygote has ``PR_SET_PDEATHSIG`` (SIGKILL) set from a thread that lives as
long as it does. A child holds its task's tree as a launched task does (see
``agent.execution.process``): it joins the task's cgroup before the zygote reports it, has
SIGKILL as its death signal toward the zygote and gets a
:class:`~agent.execution.process.GroupWatchdog`; or, with no cgroup, it becomes the task's
supervisor (``agent.execution.subreaper``) and forks the task. A ``kill -9`` of the daemon
takes the zygote, the tasks and what they started with it.

Protocol: a ``SOCK_SEQPACKET`` socket pair, one JSON message per event:

- to the zygote: ``{"id": n, "argv": [...], "cwd": dir, "env": {...}, "cgroup": dir}``
  (``cgroup`` null: a supervisor) with the write end of the task's output pipe attached
  (``SCM_RIGHTS``);
- from it: ``{"ready": pid}`` once warm (or ``{"fatal": text}``, and it exits);
  ``{"id": n, "pid": pid}`` or ``{"id": n, "error": text}``; ``{"pid": pid, "exit": code}``
  once a child is reaped (negative: killed by that signal).

The socket closing ends the zygote, and with it its children: only idle zygotes are closed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from agent.core.children import exit_code, reap_exited
from agent.core.models import Task
from agent.execution import subreaper
from agent.execution.backends import ExecutionBackend, Log, Prepared, TaskHandle, task_environment
from agent.execution.cgroup import TaskCgroup
from agent.execution.process import (
    GroupWatchdog,
    OnLines,
    TaskProcess,
    death_signal_preexec,
    start_reader,
)

log = logging.getLogger(__name__)

#: Variables that differ from task to task; everything else picks the zygote.
PER_TASK_VARS = ("AGENT_TASK_ID",)
#: How long a fork request may take before the zygote is deemed stuck (and killed).
SPAWN_TIMEOUT_S = 10.0
#: After a zygote failed to warm up, how long its environment runs cold before a retry.
RETRY_AFTER_S = 60.0
#: Largest request (its environment mostly); a larger one starts cold.
MAX_MESSAGE = 1 << 20


class ZygoteError(RuntimeError):
    """The zygote is gone, not warm, or could not fork."""


class ForkedChild:
    """A zygote's child, seen through ``subprocess.Popen``'s calls (for :class:`TaskProcess`)."""

    def __init__(self, pid: int, exit_code: Future[int]):
        self.pid = pid
        self._exit = exit_code

    @property
    def returncode(self) -> int | None:
        return self._exit.result() if self._exit.done() else None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        try:
            return self._exit.result(timeout)
        except FutureTimeout:
            raise subprocess.TimeoutExpired(f"task process {self.pid}", timeout or 0) from None

    def send_signal(self, sig: int) -> None:
        if self._exit.done():
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass


class TaskZygote:
    """Client side of one zygote: start it, fork tasks through it, learn their exit codes."""

    def __init__(self, python: str, env: Mapping[str, str]):
        self.python = python
        self.env = dict(env)
        self.pid: int | None = None
        self.failure: str | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._next_id = 0
        self._spawns: dict[int, Future[int]] = {}
        self._exits: dict[int, Future[int]] = {}
        self._early_exits: dict[int, int] = {}

    def start(self) -> TaskZygote:
        """Start the zygote (returns at once; it warms up meanwhile)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        # The thread that starts the zygote must live as long as it does: the kernel
        # sends the death signal when that *thread* ends.
        owner = threading.Thread(target=self._own, args=(theirs,), name="warm-zygote", daemon=True)
        owner.start()
        return self

    @property
    def alive(self) -> bool:
        return self._sock is not None and self.failure is None

    @property
    def running(self) -> int:
        """Tasks forked from it that have not ended yet."""
        with self._lock:
            return len(self._spawns) + sum(not f.done() for f in self._exits.values())

    def wait_ready(self, timeout: float) -> bool:
        """Wait until it is warm (True) or gone, or ``timeout`` passed (False)."""
        self._ready.wait(timeout)
        return self._ready.is_set() and self.alive

    def start_task(
        self,
        argv: Sequence[str],
        cwd: str | os.PathLike[str],
        env: Mapping[str, str],
        on_lines: OnLines,
        batch_interval: float = 0.1,
    ) -> TaskProcess:
        """Fork ``argv`` (``python script args``) in ``cwd`` with exactly ``env``.

        Raises:
            ZygoteError: no child was started (start the task another way).
        """
        cgroup = TaskCgroup.create()
        try:
            pid, output, exit_code = self._spawn(list(argv), str(cwd), dict(env), cgroup)
        except ZygoteError:
            if cgroup is not None:
                cgroup.remove()
            raise
        stream = os.fdopen(output, "rb", buffering=0)
        reader = start_reader(stream, on_lines, batch_interval, pid)
        child = ForkedChild(pid, exit_code)
        if cgroup is None:  # the child is the task's supervisor
            return TaskProcess(child, reader)
        return TaskProcess(child, reader, GroupWatchdog(pid, cgroup), cgroup)

    def close(self) -> None:
        """End the zygote (its running children die with it: close idle ones only)."""
        sock = self._sock
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes the reader, which closes it
        except OSError:
            pass

    def kill(self) -> None:
        pid = self.pid
        self.close()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- internals ----------------------------------------------------------------
    def _spawn(
        self, argv: list[str], cwd: str, env: dict[str, str], cgroup: TaskCgroup | None
    ) -> tuple[int, int, Future[int]]:
        sock = self._sock
        if sock is None or not self._ready.is_set() or self.failure is not None:
            raise ZygoteError(self.failure or "the zygote is not warm")
        if not os.path.isdir(cwd):
            raise ZygoteError(f"no such directory: {cwd}")
        read_end, write_end = os.pipe()
        pending: Future[int] = Future()
        try:
            with self._lock:
                self._next_id += 1
                request_id = self._next_id
                where = str(cgroup.path) if cgroup is not None else None
                request = {"id": request_id, "argv": argv, "cwd": cwd, "env": env, "cgroup": where}
                data = json.dumps(request)
                if len(data) > MAX_MESSAGE:
                    raise ZygoteError(f"a request of {len(data)} bytes is too large")
                self._spawns[request_id] = pending
                try:
                    socket.send_fds(sock, [data.encode()], [write_end])
                except OSError as exc:
                    self._spawns.pop(request_id, None)
                    raise ZygoteError(f"cannot reach the zygote: {exc}") from exc
        except ZygoteError:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        try:
            pid = pending.result(SPAWN_TIMEOUT_S)
        except FutureTimeout:
            os.close(read_end)
            self.kill()  # a late child must not run the task a second time
            raise ZygoteError(f"the zygote did not fork within {SPAWN_TIMEOUT_S:g} s") from None
        except ZygoteError:
            os.close(read_end)
            raise
        with self._lock:
            exit_code = self._exits.setdefault(pid, Future())
            if pid in self._early_exits:
                exit_code.set_result(self._early_exits.pop(pid))
        return pid, read_end, exit_code

    def _own(self, theirs: socket.socket) -> None:
        """Start the zygote, then read its messages until it ends."""
        try:
            proc = subprocess.Popen(
                [self.python, "-u", "-m", "agent.execution.warm", str(theirs.fileno())],
                cwd="/",
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # a terminal's Ctrl-C is the daemon's business
                preexec_fn=death_signal_preexec(),
                close_fds=True,
            )
        except OSError as exc:
            self._end(f"cannot start {self.python}: {exc}")
            return
        finally:
            theirs.close()
        self.pid = proc.pid
        try:
            self._read_messages()
        finally:
            proc.wait()

    def _read_messages(self) -> None:
        sock = self._sock
        reason = "the zygote exited"
        while sock is not None:
            try:
                data = sock.recv(MAX_MESSAGE)
            except OSError:
                break
            if not data:
                break
            message = _decode(data)
            if "fatal" in message:
                reason = f"the zygote could not warm up: {message['fatal']}"
                break
            self._handle(message)
        self._end(reason)

    def _handle(self, message: dict[str, Any]) -> None:
        if "ready" in message:
            self._ready.set()
            return
        with self._lock:
            if "exit" in message:
                exit_code = self._exits.get(message["pid"])
                if exit_code is None:
                    self._early_exits[message["pid"]] = int(message["exit"])
                else:
                    exit_code.set_result(int(message["exit"]))
                return
            pending = self._spawns.pop(message.get("id", -1), None)
        if pending is None:
            return
        if "pid" in message:
            pending.set_result(int(message["pid"]))
        else:
            pending.set_exception(ZygoteError(message.get("error", "fork failed")))

    def _end(self, reason: str) -> None:
        with self._lock:
            self.failure = self.failure or reason
            for pending in self._spawns.values():
                pending.set_exception(ZygoteError(reason))
            self._spawns.clear()
            for exit_code in self._exits.values():
                if not exit_code.done():  # its children die with it (death signal)
                    exit_code.set_result(-int(signal.SIGKILL))
        self._ready.set()  # wake those waiting for it to warm up
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _decode(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class WarmBackend:
    """An execution backend that starts tasks of warm environments from a zygote.

    Args:
        inner: makes the environments and starts everything that is not warm.
        max_zygotes: zygotes kept at once (the least recently used idle one goes first).
        ready_timeout: how long a task waits for its environment's zygote to warm up
            before it starts the cold way (the zygote warms up about as fast as a cold
            start imports the same modules).
    """

    def __init__(self, inner: ExecutionBackend, max_zygotes: int = 4, ready_timeout: float = 10.0):
        self.inner = inner
        self.name = inner.name
        self.max_zygotes = max_zygotes
        self.ready_timeout = ready_timeout
        self._zygotes: OrderedDict[tuple[Any, ...], TaskZygote] = OrderedDict()
        self._failed: dict[tuple[Any, ...], float] = {}
        self._lock = threading.Lock()

    def prepare(self, task: Task, workdir: Path, log: Log) -> Prepared:
        return self.inner.prepare(task, workdir, log)

    def start(
        self, prepared: Prepared, env_vars: Mapping[str, str], on_lines: OnLines
    ) -> TaskHandle:
        if prepared.python is None:
            return self.inner.start(prepared, env_vars, on_lines)
        env = task_environment(prepared, env_vars)
        env["PYTHONUNBUFFERED"] = "1"  # as launch() sets it
        try:
            zygote = self._zygote_for(prepared.python, env)
            if zygote is not None and prepared.warm:
                if not zygote.wait_ready(self.ready_timeout):
                    raise ZygoteError(zygote.failure or "the zygote is still warming up")
                return zygote.start_task(prepared.argv, prepared.cwd, env, on_lines)
        except (ZygoteError, OSError) as exc:
            log.warning("warm start of %s failed (%s): launching it", prepared.argv, exc)
        return self.inner.start(prepared, env_vars, on_lines)

    def close(self) -> None:
        """End every zygote (call when no task runs any more)."""
        with self._lock:
            zygotes, self._zygotes = list(self._zygotes.values()), OrderedDict()
        for zygote in zygotes:
            zygote.close()

    def _zygote_for(self, python: str, env: dict[str, str]) -> TaskZygote | None:
        """The zygote of this interpreter and environment, started when there is none."""
        key = _zygote_key(python, env)
        if key is None:
            return None
        with self._lock:
            zygote = self._zygotes.get(key)
            if zygote is not None and not zygote.alive:
                log.warning("zygote of %s ended: %s", python, zygote.failure)
                self._failed[key] = time.monotonic()
                del self._zygotes[key]
                zygote = None
            if zygote is None:
                failed_at = self._failed.get(key)
                if failed_at is not None and time.monotonic() - failed_at < RETRY_AFTER_S:
                    return None
                zygote_env = {k: v for k, v in env.items() if k not in PER_TASK_VARS}
                zygote = self._zygotes[key] = TaskZygote(python, zygote_env).start()
                log.info("started a zygote for warm starts with %s", python)
            self._zygotes.move_to_end(key)
            self._evict_idle()
        return zygote

    def _evict_idle(self) -> None:
        for key in list(self._zygotes)[: max(0, len(self._zygotes) - self.max_zygotes)]:
            zygote = self._zygotes[key]
            if zygote.running == 0:
                del self._zygotes[key]
                zygote.close()


def _zygote_key(python: str, env: Mapping[str, str]) -> tuple[Any, ...] | None:
    """What a zygote serves: the interpreter, the identity of its environment's directory
    (a rebuilt venv is another one) and the environment variables; None: no interpreter."""
    try:
        where = os.stat(Path(python).parent.parent)
        os.stat(python)
    except OSError:
        return None
    variables = tuple(sorted((k, v) for k, v in env.items() if k not in PER_TASK_VARS))
    return (python, where.st_dev, where.st_ino, variables)


# -- the zygote ---------------------------------------------------------------------------
def serve(fd: int) -> None:
    """The zygote: warm up, then fork a child per request and report how each ended."""
    import gc
    import selectors

    sock = socket.socket(fileno=fd)
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]  # `-m` put the zygote's directory there; a task gets its script's
    try:
        _preload()
    except BaseException as exc:  # the daemon starts its tasks the cold way
        sock.send(json.dumps({"fatal": repr(exc)}).encode())
        os._exit(1)
    gc.freeze()  # the preloaded objects stay out of the children's collections (fewer copies)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    zygote = _Zygote(sock, (wake_r, wake_w))
    zygote.reply({"ready": os.getpid()})
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "request")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    while True:
        for key, _ in selector.select():
            if key.data == "child":
                os.read(wake_r, 4096)
                zygote.reap()
                continue
            try:
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 4)
            except OSError:
                data, fds = b"", []
            if not data:  # the daemon is done with us (or gone)
                os._exit(0)
            zygote.fork_task(data, fds)


def _preload() -> None:
    """Import what a task (a pipeline step above all) imports, and create the store's schema
    once, closing its connections: none may cross a fork."""
    import importlib

    from agent.pipeline.zygote import PRELOAD

    importlib.import_module("agent")
    for name in PRELOAD:
        importlib.import_module(name)
    from agent.store.factory import get_backend

    try:
        backend = get_backend()
    except Exception as exc:  # the task reports a broken store itself
        print(f"agent zygote: no store yet: {exc}", file=sys.stderr)
        return
    release = getattr(backend, "release_connections", None)
    if release is not None:
        release()  # no connection may cross a fork


class _Zygote:
    """The zygote's state: its socket, its wake-up pipe and its live children."""

    def __init__(self, sock: socket.socket, wake: tuple[int, int]):
        self.sock = sock
        self.wake = wake
        self.children: set[int] = set()

    def reply(self, message: dict[str, Any]) -> None:
        try:
            self.sock.send(json.dumps(message).encode())
        except OSError:  # the daemon is gone: the death signal ends us soon
            pass

    def fork_task(self, data: bytes, fds: list[int]) -> None:
        request = _decode(data)
        request_id = request.get("id")
        if len(fds) != 1 or "argv" not in request:
            for fd in fds:
                os.close(fd)
            self.reply({"id": request_id, "error": "bad request"})
            return
        if threading.active_count() > 1:  # a fork copies only this thread: refuse
            os.close(fds[0])
            self.reply({"id": request_id, "error": "the zygote is not single-threaded"})
            return
        try:
            pid = self._fork(request, fds[0])
        except OSError as exc:
            self.reply({"id": request_id, "error": f"fork failed: {exc}"})
            return
        self.children.add(pid)
        self.reply({"id": request_id, "pid": pid})

    def _fork(self, request: dict[str, Any], output: int) -> int:
        sync_r, sync_w = os.pipe()
        me = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            for fd in (sync_r, sync_w, output):
                os.close(fd)
            raise
        if pid == 0:  # the task
            code = 1
            try:
                os.close(sync_r)
                code = _child(request, output, sync_w, self, me)
            except BaseException:
                sys.excepthook(*sys.exc_info())
            finally:
                _end_process(code)
        os.close(output)
        os.close(sync_w)
        os.read(sync_r, 1)  # EOF once the child leads its own session (or died)
        os.close(sync_r)
        return pid

    def reap(self) -> None:
        for pid, code in reap_exited(self.children):
            self.reply({"pid": pid, "exit": code})


def _child(
    request: dict[str, Any], output: int, sync_w: int, zygote: _Zygote, zygote_pid: int
) -> int:
    """In the forked child: become a launched task (or its supervisor), then run its script."""
    os.setsid()
    cgroup = request.get("cgroup")
    if cgroup:
        TaskCgroup(Path(cgroup)).join()
        _die_with_parent()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.close(zygote.sock.detach())
    for fd in zygote.wake:
        os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    os.close(sync_w)  # the zygote may report this child now
    if cgroup:
        return _become_task(request)
    subreaper.supervise(
        zygote_pid, lambda: _end_process(_become_task(request)), subreaper.LEFTOVER_GRACE_S
    )


def _become_task(request: dict[str, Any]) -> int:
    """The task's signals, environment and directory; then its script's exit code."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    return _run_script(request["argv"][1:])


def _die_with_parent() -> None:
    import ctypes

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the zygote died before prctl took effect
        os._exit(1)


def _run_script(argv: list[str]) -> int:
    """Run ``argv[0]`` as ``__main__`` with ``sys.argv = argv``, as ``python`` does; its
    exit code."""
    import builtins
    import importlib.machinery
    import types

    path = os.path.abspath(argv[0])
    sys.argv = list(argv)
    sys.path.insert(0, os.path.dirname(path))
    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    module.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    module.__cached__ = None  # type: ignore[attr-defined]
    sys.modules["__main__"] = module
    try:
        with open(path, "rb") as source:
            code = compile(source.read(), path, "exec", dont_inherit=True)
        exec(code, module.__dict__)
    except SystemExit as exc:
        return exit_code(exc.code)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        return 1
    return 0


def _end_process(code: int) -> None:
    """End as an interpreter does: join non-daemon threads, run exit handlers, flush."""
    import atexit

    try:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
        atexit._run_exitfuncs()
    except BaseException as exc:  # a failing exit handler must not change the outcome
        print(f"agent: an exit handler failed: {exc!r}", file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or broken stream: nothing left to flush
            pass
    os._exit(code & 0xFF)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
