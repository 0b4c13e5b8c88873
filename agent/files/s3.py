"""S3FileStore: blobs in an S3 (or S3-compatible: MinIO, Ceph, ...) bucket via boto3.

The endpoint comes from ``AGENT_S3_ENDPOINT_URL`` (else ``AWS_ENDPOINT_URL``, else
AWS itself), credentials and region from the usual AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``AWS_DEFAULT_REGION``, ...). The bucket
must exist: a store never creates one, it says that it is missing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)
from botocore.loaders import Loader

from agent.core.errors import AgentError, InvalidInput, NotFound
from agent.files.base import (
    StorageError,
    StoredFile,
    atomic_writer,
    safe_key,
    safe_prefix,
    source_file,
)

#: Environment variables naming the S3 endpoint, first set wins.
ENDPOINT_ENV_VARS = ("AGENT_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL")

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_DENIED_CODES = frozenset(
    {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")`` (the key may be empty).

    Raises:
        InvalidInput: not an ``s3://`` URL, or no bucket in it.
    """
    if not url.lower().startswith("s3://"):
        raise InvalidInput(f"{url!r} is not an S3 URL: expected s3://bucket/prefix")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket:
        raise InvalidInput(f"S3 URL {url!r} names no bucket: expected s3://bucket/prefix")
    return bucket, key


def endpoint_url() -> str | None:
    """The S3 endpoint from the environment, or None for AWS itself."""
    for name in ENDPOINT_ENV_VARS:
        value = os.environ.get(name)
        if value:
            return value
    return None


def make_s3_client(endpoint: str | None = None) -> Any:
    """A boto3 S3 client for ``endpoint`` (default: :func:`endpoint_url`)."""
    endpoint = endpoint or endpoint_url()
    # Path-style addressing for custom endpoints: MinIO & co. rarely have wildcard DNS.
    s3_config = {"addressing_style": "path"} if endpoint else {}
    config = Config(
        s3=s3_config,
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )
    # A session of its own per client (sessions are not thread-safe and cache their
    # credentials), all reading botocore's service models through the process's loader.
    session = botocore.session.Session()
    session.register_component("data_loader", shared_loader(session))
    return boto3.session.Session(botocore_session=session).client(
        "s3", endpoint_url=endpoint, config=config
    )


class _SearchPaths(list[str]):
    """A loader's search paths, each once: every boto3 Session appends its data path."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


_loader: Loader | None = None
_loader_lock = threading.Lock()


def shared_loader(session: botocore.session.Session) -> Loader:
    """The process's botocore loader, made on first use with ``session``'s data path
    (``AWS_DATA_PATH``). It reads botocore's JSON service and endpoint models once and
    keeps them: a loader of each client's own reads them again, ~0.2 s a client."""
    global _loader
    with _loader_lock:
        if _loader is None:
            data_path = session.get_config_variable("data_path") or ""
            paths = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)]
            _loader = Loader(extra_search_paths=_SearchPaths(p for p in paths if p))
        return _loader


#: Environment that decides who a client is; a change gets a fresh shared client.
_CLIENT_ENV_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)
_shared_clients: dict[tuple[str | None, ...], Any] = {}
_shared_clients_lock = threading.Lock()


def _forget_clients_after_fork() -> None:
    # A forked child must not share the parent's pooled connections, nor inherit its locks
    # in whatever state another thread left them. The loader holds only read models: kept.
    global _shared_clients_lock, _loader_lock
    _shared_clients.clear()
    _shared_clients_lock = threading.Lock()
    _loader_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_clients_after_fork)


def shared_s3_client() -> Any:
    """The process's S3 client for the current endpoint and AWS environment.

    Making a client costs tens of milliseconds and boto3 clients are thread-safe, so
    stores share one instead of making one per artifact.
    """
    endpoint = endpoint_url()
    identity = (endpoint, *(os.environ.get(name) for name in _CLIENT_ENV_VARS))
    with _shared_clients_lock:
        client = _shared_clients.get(identity)
        if client is None:
            client = _shared_clients[identity] = make_s3_client(endpoint)
        return client


class S3FileStore:
    """Blobs under ``s3://bucket/prefix``: key ``a/b`` is the object ``prefix/a/b``.

    Args:
        url: ``s3://bucket`` or ``s3://bucket/prefix``.
        client: a boto3 S3 client to use; default :func:`shared_s3_client` at first
            use (nothing is contacted in the constructor).
    """

    def __init__(self, url: str, client: Any = None):
        bucket, prefix = split_s3_url(url)
        prefix = prefix.strip("/")
        if prefix:
            safe_key(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._client = client
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3FileStore({self.url!r})"

    @property
    def client(self) -> Any:
        """The boto3 client, picked on first use."""
        with self._client_lock:
            if self._client is None:
                self._client = shared_s3_client()
            return self._client

    def uri(self, key: str) -> str:
        """``s3://bucket/prefix/key``."""
        return f"s3://{self.bucket}/{self._object_key(key)}"

    def key_of(self, uri: str) -> str:
        """The key of an ``s3://`` URI of this store; a bare key is returned checked.

        Raises:
            InvalidInput: the URI is in another bucket or outside the prefix.
        """
        if "://" not in uri:
            return safe_key(uri)
        base = self.url + "/"
        if not uri.startswith(base):
            raise InvalidInput(f"{uri!r} is not inside this store ({self.url})")
        return safe_key(uri[len(base) :])

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> str:
        """Upload a local file (multipart for large ones); returns its ``s3://`` URI."""
        src = source_file(local_path)
        obj = self._object_key(key)
        with self._errors("upload to", obj), src.open("rb") as fh:
            self.client.upload_fileobj(fh, self.bucket, obj)
        return self.uri(key)

    def put_bytes(self, data: bytes, key: str) -> str:
        """Upload ``data``; returns its ``s3://`` URI."""
        obj = self._object_key(key)
        with self._errors("upload to", obj):
            self.client.put_object(Bucket=self.bucket, Key=obj, Body=data)
        return self.uri(key)

    def get_file(self, uri: str, dest_path: str | os.PathLike[str]) -> Path:
        """Download to ``dest_path`` (an existing directory gets the blob's name)."""
        key = self.key_of(uri)
        obj = self._object_key(key)
        dest = Path(dest_path)
        if dest.is_dir():
            dest = dest / Path(key).name
        with self._errors("download", obj), atomic_writer(dest) as fh:
            self.client.download_fileobj(self.bucket, obj, fh)
        return dest

    def exists(self, uri: str) -> bool:
        """Whether the object exists (a missing bucket is an error, not False)."""
        obj = self._object_key(self.key_of(uri))
        with self._errors("check", obj):
            try:
                self.client.head_object(Bucket=self.bucket, Key=obj)
            except ClientError as exc:
                if _error_code(exc) in _MISSING_CODES and self._bucket_exists():
                    return False
                raise
        return True

    def delete(self, uri: str) -> None:
        """Delete the object; a missing object is fine, a missing bucket is not."""
        obj = self._object_key(self.key_of(uri))
        with self._errors("delete", obj):
            self.client.delete_object(Bucket=self.bucket, Key=obj)

    def local_path(self, uri: str) -> None:
        """Always None: S3 objects cannot be read in place."""
        return None

    def list_files(self, prefix: str = "") -> list[StoredFile]:
        """The objects whose keys (below the store's prefix) start with ``prefix``.

        Folder markers (keys ending in ``/``, made by some consoles) are left out.
        """
        safe_prefix(prefix)
        base = f"{self.prefix}/" if self.prefix else ""
        found = []
        with self._errors("list", base + prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(base) :]
                    if key and not key.endswith("/"):
                        found.append(StoredFile(key, int(obj.get("Size", 0))))
        return sorted(found, key=lambda f: f.key)

    def _object_key(self, key: str) -> str:
        key = safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, action: str, obj: str) -> Iterator[None]:
        """Turn boto errors into AgentErrors that say what failed and what to do."""
        where = f"s3://{self.bucket}/{obj}"
        try:
            yield
        except ClientError as exc:
            raise self._client_error(exc, f"cannot {action} {where}") from exc
        except NoCredentialsError as exc:
            raise StorageError(
                f"cannot {action} {where}: no AWS credentials found; set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            ) from exc
        except EndpointConnectionError as exc:
            raise StorageError(
                f"cannot {action} {where}: S3 endpoint unreachable ({exc}); check "
                "AGENT_S3_ENDPOINT_URL / AWS_ENDPOINT_URL and the network"
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot {action} {where}: {exc}") from exc

    def _client_error(self, exc: ClientError, what: str) -> AgentError:
        code = _error_code(exc)
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        if code == "NoSuchBucket" or (code in _MISSING_CODES and not self._bucket_exists()):
            return self._missing_bucket(what)
        if code in _MISSING_CODES:
            return NotFound(f"{what}: no such object")
        if code in _DENIED_CODES:
            return StorageError(
                f"{what}: access denied ({code}: {message}); check the AWS credentials "
                "and the bucket's policy"
            )
        return StorageError(f"{what}: S3 error {code}: {message}")

    def _missing_bucket(self, what: str) -> NotFound:
        where = endpoint_url() or "AWS"
        return NotFound(
            f"{what}: bucket {self.bucket!r} does not exist at {where}; create it first "
            f"(e.g. `aws s3 mb s3://{self.bucket}`) or fix the files URL"
        )

    def _bucket_exists(self) -> bool:
        """False only when S3 says the bucket is missing (unknown counts as existing)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            return _error_code(exc) not in ("404", "NoSuchBucket", "NotFound")
        except BotoCoreError:
            return True
        return True


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
