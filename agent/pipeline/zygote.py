"""A fork server for local steps: one warm, single-threaded process per pipeline run.

Starting a Python process and importing the agent and its store costs far more
than a trivial step. The zygote pays that once: it starts with this interpreter,
imports the step path (store, serialization, step runtime), then forks one child
per step. A child re-creates its database connections (none are open at fork
time: the zygote closes its pool first), moves to its own session, points stdout
and stderr at the step's log file and runs the step.

Protocol (JSON lines on the zygote's stdin/stdout):

- request ``{"id": n, "task_id", "cwd", "env": {...}, "log": path, "mode": "code"|"execute"}``
- reply ``{"id": n, "pid": pid}`` (or ``{"id": n, "error": text}``), later
  ``{"pid": pid, "exit": code}`` once the child is reaped.

Its stdin closing (the pipeline run ended, or died) ends the zygote; running
children finish on their own.
"""

from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import Any

from agent.core.children import reap_exited

#: Modules a child needs on every step's path; imported once, before any fork.
PRELOAD = (
    "agent.pipeline.step_runtime",
    "agent.pipeline.values",
    "agent.sdk.task",
    "agent.sdk.serialization",
    "agent.sdk.parameters",
    "agent.files.artifacts",
    "agent.files.local",
    "agent.store.sql",
    "agent.store.factory",
)


class ZygoteError(RuntimeError):
    """The zygote died or refused a request."""


class Zygote:
    """Client side: start the server, fork steps through it, learn their exit codes."""

    def __init__(self, env: dict[str, str] | None = None):
        self.env = dict(env if env is not None else os.environ)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._next_id = 0
        self._spawned: dict[int, Future[int]] = {}
        self._exits: dict[int, Future[int]] = {}
        self._early_exits: dict[int, int] = {}
        self._reader: threading.Thread | None = None
        self._dead = False

    def start(self) -> Zygote:
        """Start the server process (returns at once; it warms up meanwhile)."""
        self._proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "agent.pipeline.zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self.env,
            close_fds=True,
        )
        self._reader = threading.Thread(
            target=self._read_replies, name="zygote-reader", daemon=True
        )
        self._reader.start()
        return self

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and not self._dead

    def spawn(
        self,
        task_id: str,
        cwd: str,
        env: dict[str, str],
        log_path: str,
        mode: str = "code",
        context: dict[str, Any] | None = None,
    ) -> tuple[int, Future[int]]:
        """Fork a child for the step; returns its pid and a future of its exit code.

        ``context`` (JSON): the task record and its inputs' artifact records, which the
        child then need not read from the store.

        Raises:
            ZygoteError: the zygote is gone or could not fork.
        """
        if not self.alive or self._proc is None or self._proc.stdin is None:
            raise ZygoteError("the step zygote is not running")
        pending: Future[int] = Future()
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
            self._spawned[request_id] = pending
            line = json.dumps(
                {
                    "id": request_id,
                    "task_id": task_id,
                    "cwd": cwd,
                    "env": env,
                    "log": log_path,
                    "mode": mode,
                    "context": context,
                }
            )
            try:
                self._proc.stdin.write(line.encode() + b"\n")
                self._proc.stdin.flush()
            except OSError as exc:
                self._spawned.pop(request_id, None)
                raise ZygoteError(f"the step zygote is gone: {exc}") from exc
        pid = pending.result()
        with self._lock:
            exit_future = self._exits.setdefault(pid, Future())
            if pid in self._early_exits:
                exit_future.set_result(self._early_exits.pop(pid))
        return pid, exit_future

    def _read_replies(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            try:
                reply = json.loads(raw)
            except ValueError:
                continue
            with self._lock:
                if "exit" in reply:
                    future = self._exits.get(reply["pid"])
                    if future is None:
                        self._early_exits[reply["pid"]] = int(reply["exit"])
                    else:
                        future.set_result(int(reply["exit"]))
                    continue
                pending = self._spawned.pop(reply.get("id"), None)
            if pending is None:
                continue
            if "pid" in reply:
                pending.set_result(int(reply["pid"]))
            else:
                pending.set_exception(ZygoteError(reply.get("error", "fork failed")))
        self._dead = True
        with self._lock:
            for future in list(self._spawned.values()):
                future.set_exception(ZygoteError("the step zygote exited"))
            self._spawned.clear()
            for future in self._exits.values():
                if not future.done():
                    future.set_result(-int(signal.SIGKILL))

    def close(self) -> None:
        """Stop the server (its running children go on until they end)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_prewarmed: Zygote | None = None
_prewarm_lock = threading.Lock()


def prewarm() -> None:
    """Start a zygote now, for the next local run to take (it warms up meanwhile)."""
    global _prewarmed
    if not hasattr(os, "fork") or os.environ.get("AGENT_PIPELINE_NO_ZYGOTE"):
        return
    with _prewarm_lock:
        if _prewarmed is None or not _prewarmed.alive:
            _prewarmed = Zygote().start()


def take() -> Zygote:
    """The prewarmed zygote (or a fresh one); the caller owns and closes it."""
    global _prewarmed
    with _prewarm_lock:
        zygote, _prewarmed = _prewarmed, None
    if zygote is not None and zygote.alive:
        return zygote
    return Zygote().start()


# -- server side ------------------------------------------------------------------------
def _preload() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    from agent.store.factory import get_backend

    backend = get_backend()  # creates the schema once; the children find it done
    release = getattr(backend, "release_connections", None)
    if release is not None:
        release()  # no connection may cross a fork


#: Children forked ahead of requests: each waits with its store connection open, so a
#: step starts without paying for the fork, the copy-on-write faults and the connect.
READY_CHILDREN = 1
#: Exit code of a forked child that never got its request (never mistaken for success).
NO_REQUEST_EXIT_CODE = 70


class _Server:
    """The zygote's state: live children, ready children, the reply stream."""

    def __init__(self, replies: Any, wake: tuple[int, int]):
        self.replies = replies
        self.wake = wake
        self.children: set[int] = set()
        self.ready: list[tuple[int, int]] = []  # (pid, write end of its request pipe)

    def reply(self, message: dict[str, Any]) -> None:
        _write_all(self.replies.fileno(), json.dumps(message).encode() + b"\n")

    def refill(self) -> None:
        while len(self.ready) < READY_CHILDREN:
            try:
                self.ready.append(self._prefork())
            except OSError:
                return

    def _prefork(self) -> tuple[int, int]:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(write_end)
            code = 1
            try:
                code = _ready_child(read_end, self)
            finally:
                _exit_child(code)
        os.close(read_end)
        self.children.add(pid)
        return pid, write_end

    def start(self, line: bytes) -> None:
        """Hand a request to a ready child (or a fresh one) and reply with its pid."""
        request = json.loads(line)
        try:
            pid, write_end = self.ready.pop(0) if self.ready else self._prefork()
            _write_all(write_end, line + b"\n")
            os.close(write_end)
        except OSError as exc:
            self.reply({"id": request["id"], "error": str(exc)})
            return
        self.reply({"id": request["id"], "pid": pid})

    def reap(self) -> None:
        for pid, code in reap_exited(self.children):
            self.ready = [(p, fd) for p, fd in self.ready if p != pid]
            self.reply({"pid": pid, "exit": code})


def serve() -> None:
    """The zygote's loop: hand requests to children, reap them, report their exit codes."""
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt replies
    _preload()
    gc.freeze()  # the preloaded objects stay out of the children's collections (fewer COW copies)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    server = _Server(replies, (wake_r, wake_w))
    selector = selectors.DefaultSelector()
    selector.register(requests.fileno(), selectors.EVENT_READ, "request")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    server.refill()
    buffer = b""
    while True:
        for key, _ in selector.select():
            if key.data == "child":
                os.read(wake_r, 4096)
                server.reap()
                continue
            chunk = os.read(requests.fileno(), 65536)
            if not chunk:  # the run ended: ready children see EOF, running ones go on alone
                server.reap()
                os._exit(0)
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    server.start(line)
            server.refill()


def _ready_child(read_end: int, server: _Server) -> int:
    """A forked child: detach, connect to the store, wait for its request, run it."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    for fd in (*server.wake, *(w for _, w in server.ready)):
        os.close(fd)
    server.replies.close()
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    _warm_connection()
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(read_end, 65536)
        if not chunk:  # the zygote ended (or failed) before handing over a whole request
            os._exit(NO_REQUEST_EXIT_CODE)
        line += chunk
    os.close(read_end)
    return _run_request(json.loads(line))


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all is written (a signal may cut a large pipe write short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _warm_connection() -> None:
    """Open this child's store connection and walk the read paths a step takes, while it
    waits for a request: the first reads after a fork cost ~5 ms of copy-on-write faults."""
    try:
        from agent.store.factory import get_backend

        backend = get_backend()
        recent = backend.query_tasks(limit=1)
        if recent:
            backend.get_task(recent[0].id)
            backend.get_artifacts(recent[0].id)
    except Exception:  # the step will connect (and report a broken store) itself
        return


def _run_request(request: dict[str, Any]) -> int:
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    env = request.get("env")
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    cwd = request.get("cwd") or os.getcwd()
    os.chdir(cwd)
    if request.get("mode") == "execute":
        return _execute(request["task_id"])
    from agent.pipeline.step_runtime import preload_context, run_task_code

    preload_context(request.get("context"))
    return run_task_code(request["task_id"], cwd)


def _exit_child(code: int) -> None:
    """End a step child as a normal interpreter exit would: exit handlers (the SDK sends
    its buffered reports there), flushed streams; then ``os._exit``."""
    from agent.pipeline.step_runtime import end_process

    end_process(code)


def _execute(task_id: str) -> int:
    """Run a task from its repository with this interpreter (``agent execute --no-env``)."""
    from agent.execution.runner import execute_task
    from agent.store.factory import get_backend

    status = execute_task(get_backend(), task_id, no_env=True)
    return 0 if str(status) in ("completed",) else 1


if __name__ == "__main__":
    serve()
