"""RepoCache, describe_repo and redaction against real git repositories."""

from __future__ import annotations

import base64
import os
import shutil
import threading
from pathlib import Path

import pytest
from exec_support import TOKEN, HttpGitServer, SourceRepo, git

from agent.config import load_settings
from agent.execution.repo import (
    COMMIT_NOT_FOUND,
    DIFF_DOES_NOT_APPLY,
    NOT_A_REPOSITORY,
    REPOSITORY_UNREACHABLE,
    GitCredentials,
    RepoCache,
    RepoError,
    describe_repo,
    over_https,
    redact,
    register_secret,
    split_credentials,
)
from agent.execution.runner import repo_cache_from_settings


@pytest.fixture
def cache(tmp_path: Path) -> RepoCache:
    return RepoCache(tmp_path / "vcs-cache")


def dirty(repo: SourceRepo) -> None:
    """Uncommitted work: a modified tracked file and a staged new file."""
    (repo.path / "lib" / "helper.py").write_text("def greeting():\n    return 'hello, dirty'\n")
    (repo.path / "lib" / "extra.py").write_text("VALUE = 42\n")
    git(repo.path, "add", "lib/extra.py")


def test_describe_repo_of_a_dirty_checkout(source_repo: SourceRepo) -> None:
    dirty(source_repo)
    (source_repo.path / "untracked.txt").write_text("not in the diff")

    info = describe_repo(source_repo.path / "sub")

    assert info["repository"] == str(source_repo.path.resolve())  # no remote: the path
    assert info["branch"] == "main"
    assert info["commit"] == source_repo.commits[-1]
    assert info["working_dir"] == "sub"
    assert "hello, dirty" in info["diff"] and "VALUE = 42" in info["diff"]
    assert "untracked.txt" not in info["diff"]


@pytest.mark.parametrize(
    ("remote", "recorded"),
    [
        (f"https://bob:{TOKEN}@example.com/x.git", "https://example.com/x.git"),
        (f"ssh://bob:{TOKEN}@example.com/x.git", "ssh://bob@example.com/x.git"),
        (f"git+ssh://bob:{TOKEN}@example.com:2222/x.git", "git+ssh://bob@example.com:2222/x.git"),
        (f"https://example.com/x.git?private_token={TOKEN}", "https://example.com/x.git"),
        (f"https://example.com/x.git?access_token={TOKEN}", "https://example.com/x.git"),
        (f"https://example.com/x.git?token={TOKEN}", "https://example.com/x.git"),
    ],
)
def test_describe_repo_strips_credentials_from_the_remote(
    source_repo: SourceRepo, remote: str, recorded: str
) -> None:
    git(source_repo.path, "remote", "add", "origin", remote)
    info = describe_repo(source_repo.path / "train.py")
    assert info["repository"] == recorded
    assert info["working_dir"] == "."


def test_describe_repo_outside_git(tmp_path: Path) -> None:
    with pytest.raises(RepoError) as err:
        describe_repo(tmp_path)
    assert err.value.reason == NOT_A_REPOSITORY


def test_checkout_applies_the_uncommitted_diff(
    source_repo: SourceRepo, cache: RepoCache, tmp_path: Path
) -> None:
    dirty(source_repo)
    info = describe_repo(source_repo.path)
    dest = tmp_path / "task"

    cache.checkout(info["repository"], info["commit"], dest, diff=info["diff"], log=lambda _: None)

    assert (
        dest / "lib" / "helper.py"
    ).read_text() == "def greeting():\n    return 'hello, dirty'\n"
    assert (dest / "lib" / "extra.py").read_text() == "VALUE = 42\n"
    assert git(dest, "rev-parse", "HEAD") == info["commit"]
    assert git(dest, "remote", "get-url", "origin") == info["repository"]


def test_checkout_of_an_older_commit_on_a_branch(
    source_repo: SourceRepo, cache: RepoCache, tmp_path: Path
) -> None:
    first = source_repo.commits[0]
    source_repo.commit({"lib/helper.py": "def greeting():\n    return 'v2'\n"})

    dest = cache.checkout(str(source_repo.path), first[:10], tmp_path / "t", branch="main")

    assert "hello from v1" in (dest / "lib" / "helper.py").read_text()
    assert git(dest, "rev-parse", "HEAD") == first
    assert git(dest, "symbolic-ref", "--short", "HEAD") == "main"


def test_fetches_only_when_the_commit_is_missing(
    source_repo: SourceRepo, cache: RepoCache, tmp_path: Path
) -> None:
    lines: list[str] = []
    url = str(source_repo.path)

    def fetches() -> int:
        return sum(line.startswith("fetching") for line in lines)

    cache.checkout(url, source_repo.commits[0], tmp_path / "a", log=lines.append)
    cache.checkout(url, source_repo.commits[0], tmp_path / "b", log=lines.append)
    assert sum(line.startswith("cloning") for line in lines) == 1
    assert fetches() == 0

    second = source_repo.commit({"new.py": "print('new')\n"})
    cache.checkout(url, second, tmp_path / "c", log=lines.append)
    assert fetches() == 1
    assert (tmp_path / "c" / "new.py").exists()

    cache.checkout(url, second, tmp_path / "d", log=lines.append)
    cache.checkout(url, source_repo.commits[0], tmp_path / "e", log=lines.append)
    assert fetches() == 1
    assert list(cache.root.glob("*.git")) == [cache.mirror_path(url)]


def test_two_tasks_share_one_clone(
    source_repo: SourceRepo, cache: RepoCache, tmp_path: Path
) -> None:
    lines: list[str] = []
    errors: list[BaseException] = []

    def one(name: str) -> None:
        try:
            cache.checkout(
                str(source_repo.path), source_repo.commits[0], tmp_path / name, log=lines.append
            )
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(f"t{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(line.startswith("cloning") for line in lines) == 1
    assert not any(line.startswith("fetching") for line in lines)


def test_unreachable_repository(cache: RepoCache, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-repo"
    with pytest.raises(RepoError) as err:
        cache.checkout(str(missing), "a" * 40, tmp_path / "t", log=lambda _: None)
    assert err.value.reason == REPOSITORY_UNREACHABLE
    assert str(err.value).startswith("repository unreachable: cannot clone")
    assert str(missing) in str(err.value)
    assert not list(cache.root.glob("*.git*"))  # no half-made mirror left behind


def test_missing_commit(source_repo: SourceRepo, cache: RepoCache, tmp_path: Path) -> None:
    lines: list[str] = []
    with pytest.raises(RepoError) as err:
        cache.checkout(str(source_repo.path), "deadbeef" * 5, tmp_path / "t", log=lines.append)
    assert err.value.reason == COMMIT_NOT_FOUND
    assert "deadbeef" * 5 in str(err.value)
    assert str(source_repo.path) in str(err.value)


def test_diff_that_does_not_apply(
    source_repo: SourceRepo, cache: RepoCache, tmp_path: Path
) -> None:
    (source_repo.path / "lib" / "helper.py").write_text("changed\n")
    diff = git(source_repo.path, "diff", "HEAD") + "\n"
    source_repo.commit({"lib/helper.py": "something else entirely\n"})

    with pytest.raises(RepoError) as err:
        cache.checkout(
            str(source_repo.path), source_repo.commits[-1], tmp_path / "t", diff=diff, log=print
        )
    assert err.value.reason == DIFF_DOES_NOT_APPLY
    assert "lib/helper.py" in str(err.value)


def test_credentials_travel_outside_urls(http_git_server: HttpGitServer, tmp_path: Path) -> None:
    lines: list[str] = []
    cache = RepoCache(tmp_path / "cache")
    url = http_git_server.url_with("bob", TOKEN)

    dest = cache.checkout(url, http_git_server.commit, tmp_path / "t", log=lines.append)

    assert (dest / "train.py").exists()
    assert any(http_git_server.url in line for line in lines)
    stored = "\n".join(lines) + _all_text(cache.root) + _all_text(dest / ".git")
    assert TOKEN not in stored
    assert "bob:" not in stored


def test_configured_credentials(http_git_server: HttpGitServer, tmp_path: Path) -> None:
    cache = RepoCache(tmp_path / "cache", credentials=GitCredentials("bob", TOKEN))
    dest = cache.checkout(http_git_server.url, http_git_server.commit, tmp_path / "t", log=print)
    assert (dest / "train.py").exists()
    assert TOKEN not in _all_text(cache.root)


def test_credentials_from_the_agent_toml_git_table(
    http_git_server: HttpGitServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "agent.toml").write_text(f'[agent.git]\nuser = "bob"\npassword = "{TOKEN}"\n')
    monkeypatch.setenv("AGENT_HOME", str(home))
    monkeypatch.delenv("AGENT_GIT_USER", raising=False)
    monkeypatch.delenv("AGENT_GIT_PASS", raising=False)
    lines: list[str] = []

    cache = repo_cache_from_settings(load_settings())
    dest = cache.checkout(
        http_git_server.url, http_git_server.commit, tmp_path / "t", log=lines.append
    )

    assert (dest / "train.py").exists()
    assert TOKEN not in "\n".join(lines) + _all_text(cache.root) + _all_text(dest / ".git")


def test_a_token_parameter_is_used_and_never_stored(
    http_git_server: HttpGitServer, tmp_path: Path
) -> None:
    lines: list[str] = []
    cache = RepoCache(tmp_path / "cache")
    url = http_git_server.url.replace("http://", "http://bob@") + f"?access_token={TOKEN}"

    dest = cache.checkout(url, http_git_server.commit, tmp_path / "t", log=lines.append)

    assert (dest / "train.py").exists()
    assert git(dest, "remote", "get-url", "origin") == http_git_server.url
    assert TOKEN not in "\n".join(lines) + _all_text(cache.root) + _all_text(dest / ".git")


def test_git_command_lines_never_hold_the_credentials(
    http_git_server: HttpGitServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real git behind a wrapper that writes down each command line (what `ps` shows).
    argv_log = tmp_path / "argv.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "git"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {argv_log}\nexec {shutil.which("git")} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cache = RepoCache(tmp_path / "cache", credentials=GitCredentials("bob", TOKEN))

    cache.checkout(http_git_server.url, http_git_server.commit, tmp_path / "t", log=print)
    cache.ensure_commit(http_git_server.url, "", log=print)  # no commit: fetches

    command_lines = argv_log.read_text()
    assert "clone --mirror" in command_lines and "fetch" in command_lines
    assert TOKEN not in command_lines
    assert base64.b64encode(f"bob:{TOKEN}".encode()).decode() not in command_lines


def test_without_configured_credentials_git_uses_the_netrc(
    http_git_server: HttpGitServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "user-home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login bob password {TOKEN}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    cache = RepoCache(tmp_path / "cache", credentials=GitCredentials.from_settings(None))

    dest = cache.checkout(http_git_server.url, http_git_server.commit, tmp_path / "t", log=print)

    assert (dest / "train.py").exists()
    assert TOKEN not in _all_text(cache.root)


@pytest.mark.parametrize(
    ("url", "https"),
    [
        ("git@github.com:o/r.git", "https://github.com/o/r.git"),
        ("ssh://git@gitlab.example.com:2222/g/r.git", "https://gitlab.example.com/g/r.git"),
        ("git+ssh://bob@h.example/r.git", "https://h.example/r.git"),
        ("https://h.example/r.git", "https://h.example/r.git"),
        ("/srv/git/r.git", "/srv/git/r.git"),
    ],
)
def test_ssh_urls_go_over_https_with_credentials(url: str, https: str) -> None:
    assert over_https(url) == https


def test_wrong_credentials_are_unreachable_and_redacted(
    http_git_server: HttpGitServer, tmp_path: Path
) -> None:
    cache = RepoCache(tmp_path / "cache")
    with pytest.raises(RepoError) as err:
        cache.checkout(
            http_git_server.url_with("bob", "wrong-pass-123"), "", tmp_path / "t", log=print
        )
    assert err.value.reason == REPOSITORY_UNREACHABLE
    assert "wrong-pass-123" not in str(err.value)


def test_credentials_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_GIT_USER", "alice")
    monkeypatch.setenv("AGENT_GIT_PASS", "env-pass-xyz")
    creds = GitCredentials.from_settings(None)
    assert creds == GitCredentials("alice", "env-pass-xyz")
    assert "env-pass-xyz" not in repr(creds)
    assert redact("pass is env-pass-xyz") == "pass is ***"


def test_redact() -> None:
    assert redact("see https://u:p4ss@host/r.git now") == "see https://***@host/r.git now"
    assert redact("https://ghp_tokenonly@github.com/o/r") == "https://***@github.com/o/r"
    assert redact("ssh://git@github.com/o/r") == "ssh://git@github.com/o/r"
    assert redact("plain text") == "plain text"
    register_secret("s3cret-value")
    assert redact("x=s3cret-value;") == "x=***;"


def test_split_credentials() -> None:
    clean, creds = split_credentials("https://bob:pw-1234@h.example/r.git")
    assert clean == "https://h.example/r.git"
    assert creds == GitCredentials("bob", "pw-1234")
    assert split_credentials("git@github.com:o/r.git") == ("git@github.com:o/r.git", None)
    assert split_credentials("ssh://git@h.example/r.git") == ("ssh://git@h.example/r.git", None)
    assert split_credentials("ssh://git:pw-1234@h.example/r.git") == (
        "ssh://git@h.example/r.git",
        GitCredentials("git", "pw-1234"),
    )
    assert split_credentials("https://h.example/r.git?private_token=t0k-1") == (
        "https://h.example/r.git",
        GitCredentials("oauth2", "t0k-1"),
    )


def _all_text(root: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file()
    )
