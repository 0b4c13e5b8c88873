"""Secrets out of everything recorded or printed: url credentials, url tokens, known values.

A repository url may carry credentials in its user info (``https://user:token@host``,
``ssh://user:password@host``, ``git+ssh://...``) or in its query string
(``?access_token=``, ``?private_token=``, ``?token=``, ``?password=``, a presigned url's
``X-Amz-Signature=``, ...). :func:`strip_url_credentials` gives the url a task record
keeps; :func:`redact` masks the same in any text (log lines, status messages, git's own
errors, which echo the url), plus every value handed to :func:`register_secret`.
:class:`RedactingFormatter` does it for a process's own logging.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

#: Schemes whose user name is a login (``ssh://git@host``), not a secret: kept in records.
SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
# scheme://userinfo@ ; the user info runs to the url's last "@" before its path.
_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]*://)([^/\s?#@]+(?:@[^/\s?#@]+)*)@")
# The names of query parameters that hold a secret: *token, *secret, *password, ...
_SECRET_PARAM = (
    r"[\w.\-]*(?:token|secret|password|passwd|pwd|signature|credential)|api[_\-]?key|key|sig"
)
_SECRET_QUERY = re.compile(rf"(?i)([?&;](?:{_SECRET_PARAM})=)([^&#;\s\"'<>]+)")
_IS_SECRET_PARAM = re.compile(rf"(?i)(?:{_SECRET_PARAM})")


def register_secret(value: str | None) -> None:
    """Have :func:`redact` mask ``value`` from now on (values under 4 chars are ignored)."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def _redact_userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match.group(1), match.group(2)
    if scheme[:-3].lower() in SSH_SCHEMES and ":" not in userinfo:
        return match.group(0)  # ssh://git@host: a login name, not a secret
    return f"{scheme}***@"


def redact(text: str) -> str:
    """``text`` without url credentials (``https://user:tok@h`` -> ``https://***@h``,
    ``?access_token=tok`` -> ``?access_token=***``) and without any value given to
    :func:`register_secret`."""
    if "@" in text:
        text = _USERINFO.sub(_redact_userinfo, text)
    if "=" in text:
        text = _SECRET_QUERY.sub(r"\1***", text)
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def split_url_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``(url as a record keeps it, user, secret)`` of a url.

    The record's url has no password, no secret query parameter, and no user name
    either for http(s) (where the "user" is often a token); an ssh login name stays.
    ``secret`` is the password, else the url's token parameter (``access_token``,
    ``private_token``, ``token``, ...); both are None when the url carries none. A text
    that is not a url (a local path, ``git@host:path``) comes back as it is.
    """
    parts = urlsplit(url)
    if not parts.scheme or "://" not in url:
        return url, None, None
    user = password = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        name, colon, secret = userinfo.partition(":")
        user, password = unquote(name), (unquote(secret) if colon else None)
        keep_user = parts.scheme.lower() in SSH_SCHEMES and name
        netloc = f"{name}@{host}" if keep_user else host
    query, token = _strip_secret_params(parts.query)
    clean = urlunsplit(parts._replace(netloc=netloc, query=query))
    return clean, user, password if password is not None else token


def strip_url_credentials(url: str) -> str:
    """The url as a task record keeps it: see :func:`split_url_credentials`."""
    return split_url_credentials(url)[0] if url else url


def _strip_secret_params(query: str) -> tuple[str, str | None]:
    if not query or "=" not in query:
        return query, None
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = [(name, value) for name, value in pairs if not _IS_SECRET_PARAM.fullmatch(name)]
    if len(kept) == len(pairs):
        return query, None
    token = next(value for name, value in pairs if _IS_SECRET_PARAM.fullmatch(name))
    return urlencode(kept), token


class RedactingFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose every line (tracebacks too) is :func:`redact`-ed."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_redacted_logging(level: int = logging.INFO) -> None:
    """``logging.basicConfig`` of a long-running process (daemon, server): one line
    per record on stderr, with secrets masked by :class:`RedactingFormatter`. Like
    ``basicConfig``, it leaves a logging that is set up already alone."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
