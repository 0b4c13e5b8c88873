"""Secrets in every url form: what a record keeps and what a line shows."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.core.secrets import redact, split_url_credentials, strip_url_credentials


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("see https://u:p4ss@host/r.git now", "see https://***@host/r.git now"),
        ("https://ghp_tokenonly@github.com/o/r", "https://***@github.com/o/r"),
        ("http://u:p@ss@host/r.git", "http://***@host/r.git"),  # an "@" in the password
        ("ssh://git:pw-1234@host/r.git", "ssh://***@host/r.git"),
        ("git+ssh://bob:pw-1234@host:22/r.git", "git+ssh://***@host:22/r.git"),
        ("ssh://git@github.com/o/r", "ssh://git@github.com/o/r"),  # a login, no secret
        (
            "fatal: unable to access 'https://h/r.git?access_token=abc123': 403",
            "fatal: unable to access 'https://h/r.git?access_token=***': 403",
        ),
        ("https://h/r.git?private_token=abc123&ref=x", "https://h/r.git?private_token=***&ref=x"),
        ("https://h/r?x=1&token=abc123", "https://h/r?x=1&token=***"),
        ("https://h/db?user=me&password=hunter22", "https://h/db?user=me&password=***"),
        (
            "s3://b/k?X-Amz-Signature=f00d&X-Amz-Credential=AKIA",
            "s3://b/k?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("https://h/r.git?ref=main&monkey=1", "https://h/r.git?ref=main&monkey=1"),
        ("plain text, a@b and x=1", "plain text, a@b and x=1"),
    ],
)
def test_redact_masks_every_url_form(text: str, shown: str) -> None:
    assert redact(text) == shown


@pytest.mark.parametrize(
    ("url", "kept", "user", "secret"),
    [
        ("https://bob:pw-1234@h.example/r.git", "https://h.example/r.git", "bob", "pw-1234"),
        ("https://ghp_tok@github.com/o/r.git", "https://github.com/o/r.git", "ghp_tok", None),
        ("ssh://git:pw-1234@h.example/r.git", "ssh://git@h.example/r.git", "git", "pw-1234"),
        (
            "git+ssh://bob:pw@h.example:2222/r.git",
            "git+ssh://bob@h.example:2222/r.git",
            "bob",
            "pw",
        ),
        ("https://h.example/r.git?private_token=t0k", "https://h.example/r.git", None, "t0k"),
        (
            "https://h.example/r.git?access_token=t0k&ref=x",
            "https://h.example/r.git?ref=x",
            None,
            "t0k",
        ),
        ("https://u%40corp:p%3Aw@h.example/r.git", "https://h.example/r.git", "u@corp", "p:w"),
        ("ssh://git@github.com/o/r.git", "ssh://git@github.com/o/r.git", "git", None),
        ("git@github.com:o/r.git", "git@github.com:o/r.git", None, None),
        ("/home/me/src/repo", "/home/me/src/repo", None, None),
    ],
)
def test_the_record_keeps_a_url_without_secrets(
    url: str, kept: str, user: str | None, secret: str | None
) -> None:
    assert split_url_credentials(url) == (kept, user, secret)
    assert strip_url_credentials(url) == kept


def test_daemon_logging_masks_urls_in_messages_and_tracebacks() -> None:
    # The daemon's and server's own logging, set up as `agent daemon` does, in a real process.
    code = (
        "import logging\n"
        "from agent.core.secrets import setup_redacted_logging\n"
        "setup_redacted_logging()\n"
        "log = logging.getLogger('agent.daemon')\n"
        "log.warning('cannot clone %s', 'https://bob:hunter22@h/r.git')\n"
        "try:\n"
        "    raise RuntimeError('fetch ssh://git:hunter22@h/r.git?token=hunter22 failed')\n"
        "except RuntimeError:\n"
        "    log.exception('task t1: internal error')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "cannot clone https://***@h/r.git" in proc.stderr
    assert "RuntimeError: fetch ssh://***@h/r.git?token=*** failed" in proc.stderr
    assert "hunter22" not in proc.stderr
