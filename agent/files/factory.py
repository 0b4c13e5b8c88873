"""From a URL to the file store behind it: :func:`store_for_url` for a destination,
:func:`open_uri` for a URI a store returned.

Apart from :mod:`agent.files.base` because it imports the stores, which import the base.
S3 (boto3) and the server's store (requests) are imported when a URL names them.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from agent.core.errors import InvalidInput
from agent.files.base import FILES_API_PATH, FileStore, file_url_to_path, safe_key, safe_name
from agent.files.local import LocalFileStore


def store_for_url(url: str, token: str | None = None) -> FileStore:
    """The store for a destination URL, as in ``AGENT_FILES_URL``.

    Args:
        url: a directory path or ``file://`` URL, ``s3://bucket[/prefix]``, or the
            server's API URL ``http(s)://host:port``.
        token: bearer token for the server; default ``AGENT_API_TOKEN`` (or agent.toml).

    Raises:
        InvalidInput: the URL has a scheme no store handles.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "s3":
        from agent.files.s3 import S3FileStore

        return S3FileStore(url)
    if scheme in ("http", "https"):
        from agent.files.server import ServerFileStore

        return ServerFileStore(url, token=token)
    if scheme in ("", "file") or _is_windows_drive(url):
        return LocalFileStore(file_url_to_path(url))
    raise InvalidInput(
        f"no file store for {url!r}: use a directory, file://, s3://bucket/prefix or the "
        "server's http(s):// URL"
    )


def _is_windows_drive(url: str) -> bool:
    return len(url) > 2 and url[1] == ":" and url[0].isalpha() and url[2] in "/\\"


def open_uri(uri: str, token: str | None = None) -> tuple[FileStore, str]:
    """The store that can read an artifact URI, and the key within it.

    Works for the URIs stores return: ``file://`` URLs (or plain paths),
    ``s3://bucket/key`` and ``{api_url}/api/v1/files/{key}``.

    Raises:
        InvalidInput: the URI is of no known store.
    """
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "s3":
        from agent.files.s3 import S3FileStore, split_s3_url

        bucket, key = split_s3_url(uri)
        return S3FileStore(f"s3://{bucket}"), safe_key(key)
    if scheme in ("http", "https"):
        return _open_server_uri(uri, token)
    path = file_url_to_path(uri)
    return LocalFileStore(path.parent), safe_name(path.name, "file name")


def _open_server_uri(uri: str, token: str | None) -> tuple[FileStore, str]:
    from agent.files.server import ServerFileStore

    marker = FILES_API_PATH + "/"
    base, sep, quoted_key = uri.partition(marker)
    if not sep:
        raise InvalidInput(f"{uri!r} is not a file URL of the agent server (no {marker!r} in it)")
    return ServerFileStore(base, token=token), safe_key(unquote(quoted_key))
