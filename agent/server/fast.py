"""The busiest endpoints, answered without FastAPI's per-request machinery.

Daemons and controllers call create, enqueue, claim, status changes and log appends all
the time, and FastAPI spends more on each of those (its middleware and dependency
machinery, ``jsonable_encoder``) than the store does. :class:`FastPaths` is an ASGI
layer in front of the FastAPI app that answers these requests itself, with the same
request models (:mod:`agent.server.schemas`), the same store calls and the same JSON.

It takes a request only when it answers exactly as FastAPI would: a JSON body that the
endpoint's model accepts and a query string it knows. Anything else (a body that does
not validate, an unexpected parameter, any other path) goes on to FastAPI untouched, so
errors look the same; and the endpoints stay in :mod:`agent.server.routes`, so the
OpenAPI schema, the docs and every other endpoint are unchanged.

On SQLite a store call is a fraction of a millisecond of CPU under the GIL, so it runs on
the event loop: handing it to a worker thread and back costs more than the call itself,
and on a busy machine every handoff can stall the loop (a write by another process on the
same database file makes the loop wait its turn, as any writer waits). A claim that has to wait for a
task waits as a coroutine, woken by the enqueue (:mod:`agent.store.wakeups`), so a
thousand idle daemons hold no thread. On PostgreSQL a call mostly waits on the network,
so calls run side by side on the loop too, each in a greenlet whose waits on PostgreSQL
the loop awaits (:mod:`agent.store.on_loop`): no thread and no hand-off per call. Log
appends keep a lane of their own, which stores those that wait together
(:mod:`agent.server.log_lane`), and where greenlet is missing
the store calls run in a few worker threads (:data:`STORE_THREADS`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.core.errors import AgentError
from agent.core.models import Task, Worker
from agent.server import log_lane
from agent.server import schemas as s
from agent.server.errors import (
    UNSTORABLE,
    agent_error_response,
    internal_error_response,
    unstorable_response,
)
from agent.server.routes import task_from_body
from agent.store import on_loop, wakeups
from agent.store.sql import SqlBackend
from agent.store.sql_queues import check_stop_ids
from agent.store.wakeups import PollBackoff

log = logging.getLogger("agent.server")
API = "/api/v1"
_TASK_PATH = f"{API}/tasks/"
#: Runs the store call of a request, given the request's ``receive`` (a long poll hears
#: the client leave through it); returns what to answer as JSON.
Call = Callable[[Receive], Awaitable[Any]]
#: Takes the query parameters and the decoded JSON body: the Call, or None to let FastAPI answer.
Handler = Callable[[dict[str, str], Any], Call | None]
_INT32 = re.compile(r"-?[0-9]{1,10}")
#: Pause between two looks at the queues of a claim waiting in the server, which an
#: enqueue through the server wakes at once: the looks are for enqueues that bypass it
#: (a thousand idle daemons looking every 5 to 50 ms were over 10,000 queries a second).
SERVER_POLL_S = 0.5
#: Worker threads of the store calls on PostgreSQL where they cannot run on the loop
#: (no greenlet). Few: each call is short, and more threads fight the event loop for the
#: GIL. With 1,000 simulated agents (bench/fleet.py) 32 threads answered 480 requests/s,
#: p50 heartbeat 464 ms; 8 threads 729 requests/s, 135 ms; 4 threads 783, 144 ms.
STORE_THREADS = 8
#: Store calls of log appends at once, each a batch of the appends waiting
#: (:mod:`agent.server.log_lane`): on the loop, or on worker threads of their own.
LOG_LANE = log_lane.LANES


class FastPaths:
    """ASGI middleware answering the hot endpoints of ``backend`` (see the module doc)."""

    def __init__(self, app: ASGIApp, backend: SqlBackend):
        self.app = app
        self.backend = backend
        self._inline = backend.is_sqlite  # see the module doc
        self._on_loop = not self._inline and on_loop.available()
        # Not anyio's to_thread: its capacity limiter, cancel scope and context copy cost
        # more CPU than a short store call on PostgreSQL does.
        self._threads = (
            None if self._inline or self._on_loop else ThreadPoolExecutor(STORE_THREADS, "store")
        )
        self._log_threads = (
            None if self._inline or self._on_loop else ThreadPoolExecutor(LOG_LANE, "logs")
        )
        self._log_lane: log_lane.LogLane | None = None  # made on the loop, on first use
        self._paths: dict[str, Handler] = {
            f"{API}/tasks": self._create_task,
            f"{API}/queues/claim": self._claim,
            f"{API}/tasks/wait-for-stop": self._wait_for_stop,
            f"{API}/workers/heartbeat": self._heartbeat,
        }
        # POST /tasks/{task_id}/<action> -> handler(task_id, body).
        self._task_actions: dict[str, Callable[[str, Any], Call | None]] = {
            "enqueue": self._enqueue,
            "status": self._set_status,
            "logs": self._append_logs,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        messages = await _read_request(receive)
        call = _parse(route, scope, messages)
        if call is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        try:
            content = await call(receive)
        except AgentError as exc:
            response = agent_error_response(exc)
        except UNSTORABLE as exc:
            response = unstorable_response(exc)
        except Exception:  # in front of FastAPI's error middleware: answer as it would
            log.exception("%s %s failed", scope["method"], scope["path"])
            response = internal_error_response()
        else:
            await _send_json(send, content)
            return
        await response(scope, receive, send)

    def _route(self, scope: Scope) -> Handler | None:
        """The handler for this request, or None when FastAPI is to answer it."""
        if scope["type"] != "http" or scope["method"] != "POST" or not _is_json(scope):
            return None
        path: str = scope["path"]
        handler = self._paths.get(path)
        if handler is not None:
            return handler
        if not path.startswith(_TASK_PATH):
            return None
        task_id, _, action = path[len(_TASK_PATH) :].partition("/")
        action_handler = self._task_actions.get(action)
        if action_handler is None or not 0 < len(task_id) <= 64:
            return None
        return functools.partial(self._task_action, action_handler, task_id)

    @staticmethod
    def _task_action(
        handler: Callable[[str, Any], Call | None], task_id: str, query: dict[str, str], body: Any
    ) -> Call | None:
        return None if query else handler(task_id, body)  # FastAPI would ignore a parameter

    # -- handlers: validate as FastAPI would, or answer None ------------------------------
    def _create_task(self, query: dict[str, str], body: Any) -> Call | None:
        if not set(query) <= {"queue", "priority"}:
            return None
        queue = query.get("queue")
        if queue is not None and not 0 < len(queue) <= 255:
            return None
        priority = 0
        if "priority" in query:
            if not _INT32.fullmatch(query["priority"]):
                return None
            priority = int(query["priority"])
            if abs(priority) > s.INT32_MAX:
                return None
        model = _validate(s.TaskIn, body)
        if model is None:
            return None
        task = task_from_body(model)
        return self._quick(task_dict, self.backend.create_task, task, queue, priority)

    def _claim(self, query: dict[str, str], body: Any) -> Call | None:
        request = _validate(s.ClaimRequest, body)
        if query or request is None:
            return None
        queues, worker, lease = request.queues, request.worker_id, request.lease_s

        async def claim(receive: Receive) -> dict[str, Any]:
            if request.timeout <= 0:
                task = await self._store(self.backend.claim, queues, worker, 0.0, lease)
            else:
                deadline = time.monotonic() + request.timeout
                task = await self._wait_and_claim(queues, worker, deadline, lease, receive)
            return {"task": task_dict(task) if task else None}

        return claim

    def _wait_for_stop(self, query: dict[str, str], body: Any) -> Call | None:
        request = _validate(s.StopWait, body)
        if query or request is None:
            return None
        stops = self.backend.task_stops

        async def wait(_receive: Receive) -> dict[str, Any]:
            task_ids = check_stop_ids(request.task_ids)
            # As SqlBackend.wait_for_stop, waiting as a coroutine (a fleet's waits hold
            # no thread); only the look at the tasks runs as a store call.
            with stops.waiting_async(task_ids) as waiter:
                stopped = await self._store(self.backend.stopped_tasks, task_ids)
                if not stopped and request.timeout > 0 and task_ids:
                    await waiter.wait(request.timeout)
                    stopped = dict(waiter.stopped)
            return {"stopped": stopped}

        return wait

    def _heartbeat(self, query: dict[str, str], body: Any) -> Call | None:
        request = _validate(s.HeartbeatRequest, body)
        if query or request is None:
            return None
        beat = self.backend.heartbeat
        return self._quick(_worker_dict, beat, request.worker_id, request.stats, request.lease_s)

    def _enqueue(self, task_id: str, body: Any) -> Call | None:
        request = _validate(s.EnqueueRequest, body)
        if request is None:
            return None
        return self._quick(
            task_dict, self.backend.enqueue, task_id, request.queue, request.priority
        )

    def _set_status(self, task_id: str, body: Any) -> Call | None:
        change = _validate(s.StatusChange, body)
        if change is None:
            return None
        return self._quick(
            task_dict,
            self.backend.set_status,
            task_id, change.status, change.message, change.expected,
        )  # fmt: skip

    def _append_logs(self, task_id: str, body: Any) -> Call | None:
        request = _validate(s.LogAppend, body)
        if request is None:
            return None
        lines = [
            line if isinstance(line, str) else line.model_dump(exclude_none=True)
            for line in request.lines
        ]
        if self._inline:  # SQLite: each append is a fraction of a millisecond
            return self._quick(_last_seq, self.backend.append_logs, task_id, lines)

        async def append(_receive: Receive) -> dict[str, Any]:
            if self._log_lane is None:
                self._log_lane = log_lane.LogLane(self._append_many, LOG_LANE)
            return _last_seq(await self._log_lane.append(task_id, lines))

        return append

    # -- running store calls --------------------------------------------------------------
    def _quick(self, answer: Callable[[Any], Any], method: Callable[..., Any], *args: Any) -> Call:
        """The Call of a store call that never waits: ``answer(method(*args))``."""

        async def call(_receive: Receive) -> Any:
            return answer(await self._store(method, *args))

        return call

    async def _append_many(self, appends: list[tuple[str, Any]]) -> list[int | Exception]:
        """The log lane's store call: on the loop, or on a log thread."""
        if self._on_loop:
            return await on_loop.run(self.backend.append_logs_many, appends)
        call = functools.partial(self.backend.append_logs_many, appends)
        return await asyncio.get_running_loop().run_in_executor(self._log_threads, call)

    async def _wait_and_claim(
        self, queues: list[str], worker: str, deadline: float, lease: float, receive: Receive
    ) -> Task | None:
        """SqlBackend.claim's wait, as a coroutine (a fleet's idle claims hold no thread):
        only each look at the queues is a store call. Enqueues through this server wake
        the wait at once, and so do other server processes' through PostgreSQL's
        LISTEN/NOTIFY, so it looks again on its own only every :data:`SERVER_POLL_S`
        (for enqueues that bypass the server), or :data:`LISTENING_POLL_S` while it hears
        the other processes.

        While it hears every enqueue, a claim on queues a look found empty a moment ago
        (:meth:`~agent.store.wakeups.ClaimSignals.known_empty`) waits at once, without a
        look of its own: a daemon back for its next task, while its peers wait already.

        A client that leaves (a daemon stopping, or killed, while it long-polls) ends the
        wait: no task is taken for a claim nobody reads."""
        listening = self.backend.hears_enqueues()
        poll = wakeups.LISTENING_POLL_S if listening else SERVER_POLL_S
        backoff = PollBackoff(deadline, poll, poll)
        look = self.backend.claim_look
        signals = self.backend.claim_signals
        left = asyncio.ensure_future(_client_left(receive))
        try:
            with signals.waiting_async(queues) as waiter:
                queues = list(waiter.queues)
                skip = signals.known_empty(queues) if listening else 0.0
                while not left.done():
                    given = waiter.take()
                    if given or not skip:
                        before = signals.signalled(queues)
                        try:
                            task, unused = await self._store(look, queues, worker, lease, given)
                        except BaseException:
                            waiter.hand_on(given)  # for another claimer to look
                            signals.forget_empty(queues)
                            raise
                        waiter.hand_on(unused)
                        if task is not None:
                            return task
                        if listening and not given:  # a woken look may have met a locked head
                            signals.seen_empty(queues, before)
                    pause = backoff.next_pause()
                    if pause is None:
                        return None
                    if skip:  # no look of its own: only as long as the queues are known empty
                        pause, skip = min(pause, skip), 0.0
                    await waiter.wait(pause, left)
                return None
        finally:
            left.cancel()

    async def _store(self, method: Callable[..., Any], *args: Any) -> Any:
        """``method(*args)``: inline on SQLite, else on the loop (or a worker thread)."""
        if self._inline:
            return method(*args)
        if self._on_loop:
            return await on_loop.run(method, *args)
        call = functools.partial(method, *args)
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)


def _worker_dict(worker: Worker) -> dict[str, Any]:
    # As Worker.to_dict, without its deep copy of the stats (a fleet's every heartbeat).
    return {f.name: getattr(worker, f.name) for f in dataclasses.fields(worker)}


def _last_seq(seq: int) -> dict[str, Any]:
    return {"last_seq": seq}


def task_dict(task: Task) -> dict[str, Any]:
    return task.to_json_dict()


def _parse(route: Handler, scope: Scope, messages: list[Message]) -> Call | None:
    if messages[-1]["type"] != "http.request":  # the client left while sending
        return None
    query = _query(scope["query_string"])
    if query is None:
        return None
    try:
        body = json.loads(b"".join(m.get("body", b"") for m in messages))
    except (ValueError, RecursionError):  # FastAPI answers these (422, 400)
        return None
    return route(query, body)


def _validate(model: type[BaseModel], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError:
        return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


def _query(query_string: bytes) -> dict[str, str] | None:
    """The query parameters, as Starlette parses them; None if one is repeated."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    query = dict(pairs)
    return query if len(query) == len(pairs) else None


async def _read_request(receive: Receive) -> list[Message]:
    """The messages of the request body, up to its end (or the client's disconnect)."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


async def _client_left(receive: Receive) -> None:
    """Returns when the client has gone (its request body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives the messages already read, then the rest from the client."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _send_json(send: Send, content: Any) -> None:
    # As Starlette's JSONResponse renders it.
    body = json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
