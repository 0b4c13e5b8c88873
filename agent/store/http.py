"""HttpBackend: the Backend protocol over ``agent server``'s HTTP API.

Retries (tenacity, exponential backoff with jitter) follow what a request may have
done on the server:

- a request that never left (connection refused, connect timeout) is always retried;
- an idempotent request (reads, ``update_task``, heartbeats, ``create_queue``, ...) is
  also retried after a dropped connection, a read timeout or a 502/503/504;
- a request that may have been applied and must not be applied twice (create,
  enqueue, claim, status changes, log and scalar appends) is retried only when it
  never left: after that, the error goes to the caller.

4xx answers are never retried: they come back as the AgentError subclass the server
named (``{"error": {"type": "NotFound", ...}}``), so code behaves the same over HTTP
as on the SQL store.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePath
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from agent.core.errors import (
    ERRORS_BY_NAME,
    AgentError,
    Conflict,
    IllegalTransition,
    InvalidInput,
    NotFound,
)
from agent.core.models import (
    Artifact,
    LogLine,
    Model,
    Queue,
    Task,
    Worker,
    artifact_from_dict,
    logline_from_dict,
    model_from_dict,
    queue_from_dict,
    scalar_from_json,
    scalar_to_json,
    worker_from_dict,
)
from agent.core.values import cut_log_line
from agent.store.base import DEFAULT_LEASE_S
from agent.store.transport import Answer, JsonTransport, TransportError

#: Longest long-poll the server grants one claim request; longer waits loop.
MAX_CLAIM_POLL_S = 60.0
#: Extra read time over a claim's long-poll before the client gives up on the answer.
CLAIM_READ_MARGIN_S = 15.0
#: Statuses a proxy or a restarting server answers; worth another try.
RETRY_STATUSES = frozenset({502, 503, 504})
_ERROR_BY_STATUS = {400: InvalidInput, 404: NotFound, 409: Conflict, 422: InvalidInput}


class ServerUnavailable(AgentError):
    """The agent server could not be reached (or kept answering 502/503/504)."""

    http_status = 503


class _RetryableStatus(Exception):
    def __init__(self, answer: Answer):
        super().__init__(f"HTTP {answer.status}")
        self.answer = answer


class HttpBackend:
    """The :class:`~agent.store.base.Backend` of a remote ``agent server``.

    Args:
        url: the server's base URL, e.g. ``http://10.0.0.5:8008``.
        token: bearer token (``AGENT_API_TOKEN``); None = send none.
        timeout: seconds to wait for an answer (a claim waits its long-poll longer).
        retries: attempts per request, the first included.
        max_backoff: longest pause between two attempts, in seconds.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 6,
        max_backoff: float = 5.0,
    ):
        self.url = url.rstrip("/")
        self.api = f"{self.url}/api/v1"
        self.timeout = float(timeout)
        self.retries = max(1, int(retries))
        self.max_backoff = max_backoff
        self._transport = _transport(self.url, token, min(10.0, self.timeout))
        #: What a request's path goes after: the base URL's path (``/api/v1``, or more
        #: behind a reverse proxy that serves the API under a prefix).
        self._base = urlsplit(self.api).path

    def __repr__(self) -> str:
        return f"HttpBackend({self.url!r})"

    # -- plumbing -----------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool,
        read_timeout: float | None = None,
        interrupts: int | None = None,
    ) -> Any:
        """Send one request (with retries); the decoded JSON answer, or None for 204.
        ``interrupts``: see JsonTransport.request (an interrupted request raises
        _Interrupted, and is not retried)."""
        data = None if body is None else json.dumps(body, default=_jsonable).encode()
        if params:
            path = f"{path}?{urlencode(params, doseq=True)}"
        timeout = read_timeout or self.timeout
        try:
            try:  # the first attempt outside tenacity: it costs more than a local request
                answer = self._send(method, path, data, timeout, interrupts)
            except (TransportError, _RetryableStatus) as exc:
                if isinstance(exc, TransportError) and exc.interrupted:
                    raise _Interrupted() from exc
                if self.retries == 1 or not _worth_retry(exc, idempotent):
                    raise
                answer = self._retry(method, path, data, timeout, idempotent)
        except TransportError as exc:
            raise ServerUnavailable(
                f"cannot reach the agent server at {self.url} ({exc.reason}); "
                "is `agent server` running? check AGENT_API_URL"
            ) from exc
        except _RetryableStatus as exc:
            raise ServerUnavailable(
                f"the agent server at {self.url} answered {exc.answer.status} "
                f"to {method} {path}; try again later"
            ) from exc
        if answer.status >= 400:
            raise _error_from(answer)
        if answer.status == 204 or not answer.data:
            return None
        return answer.json()

    def _retry(
        self, method: str, path: str, data: bytes | None, timeout: float, idempotent: bool
    ) -> Answer:
        """The attempts after a failed first one, with backoff."""
        retrying = Retrying(
            stop=stop_after_attempt(self.retries - 1),
            wait=wait_exponential(multiplier=0.1, max=self.max_backoff) + wait_random(0, 0.1),
            retry=retry_if_exception(lambda exc: _worth_retry(exc, idempotent)),
            reraise=True,
        )
        time.sleep(0.1 + random.random() * 0.1)
        for attempt in retrying:
            with attempt:
                answer = self._send(method, path, data, timeout)
        return answer

    def _send(
        self,
        method: str,
        path: str,
        data: bytes | None,
        timeout: float,
        interrupts: int | None = None,
    ) -> Answer:
        answer = self._transport.request(method, self._base + path, data, timeout, interrupts)
        if answer.status in RETRY_STATUSES:
            raise _RetryableStatus(answer)
        return answer

    def close(self) -> None:
        self._transport.close()

    def server_config(self) -> dict[str, Any]:
        """The server's ``/api/v1/config``: ``files_url`` (default artifact destination), ..."""
        return self._call("GET", "/config", idempotent=True)

    # -- projects -----------------------------------------------------------
    def list_projects(self) -> list[str]:
        return self._call("GET", "/projects", idempotent=True)["projects"]

    def create_project(self, name: str) -> str:
        return self._call("POST", "/projects", body={"name": name}, idempotent=True)["name"]

    # -- tasks --------------------------------------------------------------
    def create_task(self, task: Task, queue: str | None = None, priority: int = 0) -> Task:
        params = None if queue is None else {"queue": queue, "priority": int(priority)}
        data = self._call(
            "POST", "/tasks", body=task.to_json_dict(), params=params, idempotent=False
        )
        return Task.from_dict(data)

    def get_task(self, task_id: str) -> Task:
        return Task.from_dict(self._call("GET", _task_path(task_id), idempotent=True))

    def update_task(self, task_id: str, **fields: Any) -> Task:
        data = self._call("PATCH", _task_path(task_id), body=fields, idempotent=True)
        return Task.from_dict(data)

    def merge_runtime(self, task_id: str, values: dict[str, Any]) -> Task:
        path = _task_path(task_id, "runtime")
        return Task.from_dict(self._call("POST", path, body={"values": values}, idempotent=True))

    def set_status(
        self,
        task_id: str,
        status: str,
        message: str | None = None,
        expected: Sequence[str] | None = None,
    ) -> Task:
        body = {
            "status": status,
            "message": message,
            "expected": None if expected is None else list(expected),
        }
        data = self._call("POST", _task_path(task_id, "status"), body=body, idempotent=False)
        return Task.from_dict(data)

    def clone_task(
        self,
        task_id: str,
        name: str | None = None,
        parent: str | None = None,
        project: str | None = None,
    ) -> Task:
        body = {"name": name, "parent": parent, "project": project}
        data = self._call("POST", _task_path(task_id, "clone"), body=body, idempotent=False)
        return Task.from_dict(data)

    def query_tasks(
        self,
        project: str | None = None,
        name: str | None = None,
        status: str | Sequence[str] | None = None,
        tag: str | None = None,
        type: str | None = None,
        parent: str | None = None,
        runtime: dict[str, Any] | None = None,
        limit: int = 1000,
        id_prefix: str | None = None,
        offset: int = 0,
        text: str | None = None,
    ) -> list[Task]:
        if status is not None and not isinstance(status, str):
            status = list(status)
        body = dict(
            project=project, name=name, status=status, tag=tag, type=type, parent=parent,
            runtime=runtime, limit=max(1, min(int(limit), 100_000)), id_prefix=id_prefix,
            offset=max(0, int(offset)), text=text,
        )  # fmt: skip
        data = self._call("POST", "/tasks/query", body=body, idempotent=True)
        return [Task.from_dict(item) for item in data["tasks"]]

    def delete_task(self, task_id: str) -> None:
        self._call("DELETE", _task_path(task_id), idempotent=False)

    # -- queues -------------------------------------------------------------
    def create_queue(self, name: str) -> Queue:
        return queue_from_dict(self._call("POST", "/queues", body={"name": name}, idempotent=True))

    def get_queue(self, name: str) -> Queue:
        data = self._call("GET", "/queues/by-name", params={"name": name}, idempotent=True)
        return queue_from_dict(data)

    def list_queues(self) -> list[Queue]:
        data = self._call("GET", "/queues", idempotent=True)
        return [queue_from_dict(item) for item in data["queues"]]

    def enqueue(self, task_id: str, queue: str, priority: int = 0) -> Task:
        body = {"queue": queue, "priority": int(priority)}
        data = self._call("POST", _task_path(task_id, "enqueue"), body=body, idempotent=False)
        return Task.from_dict(data)

    def dequeue(self, task_id: str) -> Task:
        return Task.from_dict(self._call("POST", _task_path(task_id, "dequeue"), idempotent=False))

    def queue_entries(self, queue: str) -> list[str]:
        data = self._call("GET", "/queues/entries", params={"name": queue}, idempotent=True)
        return data["task_ids"]

    def move_queue_entry(self, task_id: str, position: int) -> list[str]:
        body = {"position": int(position)}
        path = _task_path(task_id, "queue-position")
        return self._call("POST", path, body=body, idempotent=True)["task_ids"]

    def claim(
        self,
        queues: Sequence[str],
        worker_id: str,
        timeout: float = 0.0,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> Task | None:
        """Long-poll the server; waits longer than one poll allows loop until ``timeout``."""
        queues = [queues] if isinstance(queues, str) else list(queues)
        body = {"queues": queues, "worker_id": worker_id, "lease_s": lease_s}
        data = self._long_poll(
            "/queues/claim",
            body,
            timeout,
            lambda answer: answer["task"],
            interrupted={"task": None},
        )
        return None if data["task"] is None else Task.from_dict(data["task"])

    def interrupt_claims(self) -> None:
        """End this backend's waiting claims: their connections are shut down, so the
        server stops waiting for them (and takes no task for them) as well."""
        self._transport.interrupt()

    def wait_for_stop(self, task_ids: Sequence[str], timeout: float = 0.0) -> dict[str, str | None]:
        """Long-poll the server (a read: retried like one); loops as :meth:`claim` does."""
        if isinstance(task_ids, str):
            raise InvalidInput("wait_for_stop takes a list of task ids, not one id")
        if not task_ids:
            return {}
        body = {"task_ids": list(task_ids)}
        data = self._long_poll(
            "/tasks/wait-for-stop", body, timeout, lambda answer: answer["stopped"], True
        )
        return data["stopped"]

    def _long_poll(
        self,
        path: str,
        body: dict[str, Any],
        timeout: float,
        answered: Callable[[Any], Any],
        idempotent: bool = False,
        interrupted: Any = None,
    ) -> Any:
        """POST ``body`` with a ``timeout`` of at most :data:`MAX_CLAIM_POLL_S` until the
        answer is ``answered`` (truthy) or ``timeout`` seconds have passed; the last answer.
        With ``interrupted`` (an answer), the transport's ``interrupt`` ends the wait with it."""
        deadline = time.monotonic() + max(0.0, float(timeout))
        interrupts = None if interrupted is None else self._transport.interrupts
        while True:
            wait = min(max(0.0, deadline - time.monotonic()), MAX_CLAIM_POLL_S)
            try:
                data = self._call(
                    "POST",
                    path,
                    body={**body, "timeout": wait},
                    idempotent=idempotent,
                    read_timeout=wait + CLAIM_READ_MARGIN_S,
                    interrupts=interrupts if wait > 0 else None,
                )
            except _Interrupted:
                return interrupted
            if answered(data) or time.monotonic() >= deadline:
                return data

    # -- workers ------------------------------------------------------------
    def register_worker(
        self,
        worker_id: str,
        queues: Sequence[str],
        name: str = "",
        stats: dict[str, Any] | None = None,
    ) -> Worker:
        body = {"worker_id": worker_id, "queues": list(queues), "name": name, "stats": stats}
        return worker_from_dict(self._call("POST", "/workers", body=body, idempotent=True))

    def heartbeat(
        self, worker_id: str, stats: dict[str, Any] | None = None, lease_s: float = DEFAULT_LEASE_S
    ) -> Worker:
        body = {"worker_id": worker_id, "stats": stats, "lease_s": lease_s}
        data = self._call("POST", "/workers/heartbeat", body=body, idempotent=True)
        return worker_from_dict(data)

    def unregister_worker(self, worker_id: str) -> None:
        body = {"worker_id": worker_id}
        self._call("POST", "/workers/unregister", body=body, idempotent=True)

    def list_workers(self, alive_within: float | None = None) -> list[Worker]:
        params = None if alive_within is None else {"alive_within": alive_within}
        data = self._call("GET", "/workers", params=params, idempotent=True)
        return [worker_from_dict(item) for item in data["workers"]]

    def get_worker_stats(self, after: float = 0.0) -> dict[str, list[tuple[float, dict[str, Any]]]]:
        data = self._call("GET", "/workers/stats", params={"after": after}, idempotent=True)
        return {w: [(ts, stats) for ts, stats in kept] for w, kept in data["workers"].items()}

    def reap_expired(self) -> list[str]:
        return self._call("POST", "/workers/reap", idempotent=True)["task_ids"]

    # -- logs and metrics ---------------------------------------------------
    def append_logs(self, task_id: str, lines: Iterable[str | tuple[float, str, str]]) -> int:
        # In requests well under the server's body limit; an over-long line is cut here,
        # as the store would cut it, rather than sent whole.
        batches = _log_batches([_log_line(line) for line in lines])
        last = 0
        for batch in batches:
            answer = self._call(
                "POST", _task_path(task_id, "logs"), body={"lines": batch}, idempotent=False
            )
            last = answer["last_seq"]
        return last

    def get_logs(
        self,
        task_id: str,
        after: int = 0,
        limit: int = 10000,
        before: int | None = None,
        newest: bool = False,
        contains: str | None = None,
    ) -> list[LogLine]:
        params: dict[str, Any] = {
            "after": max(0, int(after)), "limit": max(1, min(int(limit), 100_000)),
        }  # fmt: skip
        if before is not None:
            params["before"] = max(0, int(before))
        if newest:
            params["newest"] = "true"
        if contains:
            params["contains"] = contains
        data = self._call("GET", _task_path(task_id, "logs"), params=params, idempotent=True)
        return [logline_from_dict(item) for item in data["lines"]]

    def report_scalars(self, task_id: str, points: Iterable[tuple[str, str, int, float]]) -> None:
        body = {
            "points": [
                {
                    "title": title,
                    "series": series,
                    "iteration": iteration,
                    "value": scalar_to_json(value),
                }
                for title, series, iteration, value in points
            ]
        }
        self._call("POST", _task_path(task_id, "scalars"), body=body, idempotent=False)

    def get_scalars(self, task_id: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
        data = self._call("GET", _task_path(task_id, "scalars"), idempotent=True)["scalars"]
        return {
            title: {
                name: [(int(i), scalar_from_json(v)) for i, v in points]
                for name, points in series.items()
            }
            for title, series in data.items()
        }

    def report_plot(
        self, task_id: str, title: str, series: str, iteration: int, figure: dict[str, Any]
    ) -> None:
        body = {"title": title, "series": series, "iteration": iteration, "figure": figure}
        self._call("POST", _task_path(task_id, "plots"), body=body, idempotent=True)

    def get_plots(self, task_id: str) -> list[dict[str, Any]]:
        return self._call("GET", _task_path(task_id, "plots"), idempotent=True)["plots"]

    # -- artifacts ----------------------------------------------------------
    def add_artifact(self, task_id: str, artifact: Artifact) -> Artifact:
        body = dataclasses.asdict(artifact)
        data = self._call("POST", _task_path(task_id, "artifacts"), body=body, idempotent=True)
        return artifact_from_dict(data)

    def get_artifacts(self, task_id: str) -> dict[str, Artifact]:
        data = self._call("GET", _task_path(task_id, "artifacts"), idempotent=True)
        return {name: artifact_from_dict(item) for name, item in data["artifacts"].items()}

    def find_artifact_by_hash(self, sha256: str) -> Artifact | None:
        if not sha256:
            return None
        path = f"/artifacts/by-hash/{quote(sha256, safe='')}"
        data = self._call("GET", path, idempotent=True)
        return artifact_from_dict(data["artifact"]) if data["artifact"] else None

    # -- models -------------------------------------------------------------
    def create_model(self, model: Model) -> Model:
        body = dataclasses.asdict(model)
        # a retried create finds the model made by the first try (ids are fresh uuids)
        return model_from_dict(self._call("POST", "/models", body=body, idempotent=True))

    def get_model(self, model_id: str) -> Model:
        return model_from_dict(self._call("GET", _model_path(model_id), idempotent=True))

    def update_model(self, model_id: str, **fields: Any) -> Model:
        data = self._call("PATCH", _model_path(model_id), body=fields, idempotent=True)
        return model_from_dict(data)

    def query_models(
        self,
        project: str | None = None,
        name: str | None = None,
        task: str | None = None,
        ids: Sequence[str] | None = None,
        sha256: str | None = None,
        only_published: bool = False,
        include_archived: bool = False,
        limit: int | None = None,
    ) -> list[Model]:
        if ids is not None and not ids:
            return []
        given = {"project": project, "name": name, "task": task, "sha256": sha256, "limit": limit}
        params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if ids is not None:
            params["ids"] = list(ids)
        if only_published:
            params["only_published"] = "true"
        if include_archived:
            params["include_archived"] = "true"
        data = self._call("GET", "/models", params=params, idempotent=True)
        return [model_from_dict(item) for item in data["models"]]

    def delete_model(self, model_id: str) -> None:
        self._call("DELETE", _model_path(model_id), idempotent=True)


# -- helpers ---------------------------------------------------------------------------
def _model_path(model_id: str) -> str:
    return f"/models/{quote(str(model_id), safe='')}"


class _Interrupted(Exception):
    """A long poll ended by JsonTransport.interrupt (see HttpBackend.interrupt_claims)."""


def _transport(url: str, token: str | None, connect_timeout: float) -> JsonTransport:
    """The connection pool to ``url``, with what requests would take from the
    environment (proxies and NO_PROXY, the CA bundle, ~/.netrc), read once."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": f"pipeline-agent/{os.getpid()}",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif netrc_auth := requests.utils.get_netrc_auth(url):
        user = ":".join(netrc_auth).encode()
        headers["Authorization"] = "Basic " + base64.b64encode(user).decode()
    settings = requests.Session().merge_environment_settings(url, {}, None, None, None)
    verify = settings["verify"]
    ca_bundle = None if verify is False else (requests.certs.where() if verify is True else verify)
    proxy = requests.utils.select_proxy(url, settings["proxies"])
    return JsonTransport(url, headers, connect_timeout, ca_bundle=ca_bundle, proxy=proxy)


def _task_path(task_id: str, action: str | None = None) -> str:
    path = f"/tasks/{quote(str(task_id), safe='')}"
    return f"{path}/{action}" if action else path


def _worth_retry(exc: BaseException, idempotent: bool) -> bool:
    if isinstance(exc, TransportError) and not exc.sent:
        return True
    return idempotent and isinstance(exc, (TransportError, _RetryableStatus))


def _error_from(answer: Answer) -> AgentError:
    """The AgentError the server's error answer names."""
    status = answer.status
    try:
        error = answer.json()["error"]
        kind, message = str(error["type"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        error, kind, message = {}, "", (answer.text[:500] or answer.reason or "")
    cls = ERRORS_BY_NAME.get(kind) or _ERROR_BY_STATUS.get(status, AgentError)
    if cls is IllegalTransition:
        exc: AgentError = IllegalTransition(str(error.get("current")), str(error.get("new")))
        exc.args = (message,)
        return exc
    if status >= 500:
        message = f"the agent server failed ({status}): {message}"
    elif status == 401:
        message = f"the agent server refused the request (401): {message}"
    return cls(message)


#: Characters of log text per request (a JSON-escaped character can take 6 bytes, and the
#: server's default body limit is 32 MiB).
LOG_BATCH_CHARS = 4 << 20


def _log_line(line: str | tuple[float, str, str] | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(line, str):
        return cut_log_line(line)
    if isinstance(line, dict):
        return {**line, "text": cut_log_line(str(line.get("text", "")))}
    ts, level, text = line
    return {"ts": ts, "level": level, "text": cut_log_line(str(text))}


def _log_batches(lines: list[str | dict[str, Any]]) -> list[list[str | dict[str, Any]]]:
    """``lines`` in order, split into batches of at most :data:`LOG_BATCH_CHARS` of text
    (one batch, maybe empty, for a short list: an empty append still answers last_seq)."""
    batches: list[list[str | dict[str, Any]]] = [[]]
    size = 0
    for line in lines:
        length = len(line) if isinstance(line, str) else len(str(line.get("text", "")))
        if batches[-1] and size + length > LOG_BATCH_CHARS:
            batches.append([])
            size = 0
        batches[-1].append(line)
        size += length
    return batches


def _jsonable(value: Any) -> Any:
    """JSON for what ``json`` cannot encode (as the SQL store's ``default=str``, mostly)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return str(value)
