"""ServerFileStore: blobs kept by ``agent server``, over its HTTP file endpoints.

``PUT {api_url}/api/v1/files/{key}`` takes the raw bytes as the body (streamed from
the file, never read whole into memory), ``GET`` streams them back, ``HEAD`` tells
whether they exist and ``DELETE`` removes them; ``GET {api_url}/api/v1/files?prefix=P``
lists the keys and sizes of the files under a prefix. Every request carries
``Authorization: Bearer {token}``. The server side is
:func:`agent.files.server_routes.make_files_router`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from agent.core.errors import AgentError, Conflict, InvalidInput, NotFound
from agent.files.base import (
    CHUNK_SIZE,
    FILES_API_PATH,
    StorageError,
    StoredFile,
    atomic_writer,
    safe_key,
    safe_prefix,
    source_file,
)

#: (connect, read) timeouts in seconds of each request.
DEFAULT_TIMEOUT = (10.0, 300.0)


def normalize_api_url(url: str) -> str:
    """The server's API URL without a trailing ``/`` or ``/api/v1/files`` part."""
    url = url.rstrip("/")
    if url.endswith(FILES_API_PATH):
        url = url[: -len(FILES_API_PATH)]
    return url


def is_our_server_url(url: str) -> bool:
    """Whether ``url`` is a file URL of the configured server (the one our token is for)."""
    from agent.config import load_settings

    settings = load_settings()
    for base in (settings.api_url, settings.files_url):
        if base and base.startswith(("http://", "https://")):
            if url.startswith(normalize_api_url(base) + FILES_API_PATH + "/"):
                return True
    return False


class ServerFileStore:
    """Blobs on ``agent server``: key ``a/b`` is ``{api_url}/api/v1/files/a/b``.

    Args:
        api_url: the server's URL, e.g. ``http://127.0.0.1:8008``.
        token: bearer token; None = ``AGENT_API_TOKEN`` (or ``api_token`` in agent.toml),
            looked up on the first request; ``""`` = send none.
        timeout: (connect, read) timeouts in seconds.
    """

    def __init__(
        self,
        api_url: str,
        token: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ):
        self.api_url = normalize_api_url(api_url)
        self.url = self.api_url
        self.timeout = timeout
        self._token = token
        self._token_known = token is not None
        self._session: requests.Session | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ServerFileStore({self.api_url!r})"

    def uri(self, key: str) -> str:
        """``{api_url}/api/v1/files/{key}`` (the key URL-quoted)."""
        return f"{self.api_url}{FILES_API_PATH}/{quote(safe_key(key), safe='/')}"

    def key_of(self, uri: str) -> str:
        """The key of a file URL of this server; a bare key is returned checked.

        Raises:
            InvalidInput: the URL is not under this server's file endpoints.
        """
        if "://" not in uri:
            return safe_key(uri)
        base = f"{self.api_url}{FILES_API_PATH}/"
        if not uri.startswith(base):
            raise InvalidInput(f"{uri!r} is not a file URL of this server ({base})")
        return safe_key(unquote(uri[len(base) :]))

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> str:
        """Upload a local file, streamed; returns its URL."""
        src = source_file(local_path)
        uri = self.uri(key)
        with src.open("rb") as fh:
            response = self._request("PUT", uri, "upload", data=fh)
        _check_size(response, src.stat().st_size, uri)
        return uri

    def put_bytes(self, data: bytes, key: str) -> str:
        """Upload ``data``; returns its URL."""
        uri = self.uri(key)
        response = self._request("PUT", uri, "upload", data=data)
        _check_size(response, len(data), uri)
        return uri

    def get_file(self, uri: str, dest_path: str | os.PathLike[str]) -> Path:
        """Download (streamed) to ``dest_path``; an existing directory gets the blob's name."""
        key = self.key_of(uri)
        url = self.uri(key)
        dest = Path(dest_path)
        if dest.is_dir():
            dest = dest / Path(key).name
        response = self._request("GET", url, "download", stream=True)
        try:
            with response, atomic_writer(dest) as fh:
                for chunk in response.iter_content(CHUNK_SIZE):
                    fh.write(chunk)
        except requests.RequestException as exc:
            raise StorageError(f"cannot download {url}: the transfer broke off ({exc})") from exc
        return dest

    def exists(self, uri: str) -> bool:
        """Whether the server holds the blob."""
        url = self.uri(self.key_of(uri))
        response = self._request("HEAD", url, "check", allow_missing=True)
        return response.status_code != 404

    def delete(self, uri: str) -> None:
        """Delete the blob on the server; a missing blob is fine."""
        url = self.uri(self.key_of(uri))
        self._request("DELETE", url, "delete", allow_missing=True)

    def local_path(self, uri: str) -> None:
        """Always None: the server's files are not readable in place from here."""
        return None

    def list_files(self, prefix: str = "") -> list[StoredFile]:
        """The server's files whose keys start with ``prefix``, sorted by key."""
        url = f"{self.api_url}{FILES_API_PATH}"
        params = {"prefix": safe_prefix(prefix)}
        with self._request("GET", url, "list", params=params) as response:
            try:
                files = response.json()["files"]
                return [StoredFile(str(f["key"]), int(f["size"])) for f in files]
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(
                    f"cannot list {url}?prefix={prefix}: the server's answer is not a file "
                    f"listing ({exc.__class__.__name__}); is it an agent server?"
                ) from exc

    @property
    def session(self) -> requests.Session:
        """The HTTP session, made on first use (retries failed connects only)."""
        with self._lock:
            if self._session is None:
                self._session = _make_session()
            return self._session

    def close(self) -> None:
        """Close the HTTP session's connections."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def _headers(self) -> dict[str, str]:
        if not self._token_known:
            from agent.config import load_settings

            self._token = load_settings().api_token
            self._token_known = True
        headers = {"Content-Type": "application/octet-stream"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _request(
        self, method: str, url: str, action: str, allow_missing: bool = False, **kwargs: Any
    ) -> requests.Response:
        try:
            response = self.session.request(
                method, url, headers=self._headers(), timeout=self.timeout, **kwargs
            )
        except requests.ConnectionError as exc:
            raise StorageError(
                f"cannot {action} {url}: the agent server at {self.api_url} is unreachable "
                f"({exc.__class__.__name__}); is `agent server` running? check AGENT_FILES_URL"
            ) from exc
        except requests.RequestException as exc:
            raise StorageError(f"cannot {action} {url}: {exc}") from exc
        if response.ok or (allow_missing and response.status_code == 404):
            return response
        response.close()
        raise _status_error(response, f"cannot {action} {url}")


def _make_session() -> requests.Session:
    session = requests.Session()
    # Only connection failures are retried: a body (a file being streamed) may have been
    # half sent when anything later fails, and is not rewound.
    retry = Retry(total=2, connect=2, read=0, redirect=0, status=0, other=0, backoff_factor=0.1)
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _status_error(response: requests.Response, what: str) -> AgentError:
    status = response.status_code
    detail = _detail(response)
    if status in (401, 403):
        return StorageError(
            f"{what}: the server refused access ({status}: {detail}); check AGENT_API_TOKEN"
        )
    if status == 404:
        return NotFound(f"{what}: no such file on the server")
    if status in (400, 422):
        return InvalidInput(f"{what}: {detail}")
    if status == 409:
        return Conflict(f"{what}: {detail}")
    return StorageError(f"{what}: the server answered {status}: {detail}")


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason or ""
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:200]


def _check_size(response: requests.Response, expected: int, uri: str) -> None:
    """Compare the size the server says it stored with what we sent."""
    try:
        stored = response.json().get("size")
    except (ValueError, AttributeError):
        return
    if stored is not None and stored != expected:
        raise StorageError(
            f"upload of {uri} was cut short: sent {expected} bytes, the server stored {stored}"
        )
