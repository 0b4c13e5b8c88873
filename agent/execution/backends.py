"""Execution backends: where and with which interpreter a task's process runs.

One small interface, :class:`ExecutionBackend`: ``prepare`` gets the task ready
to start (an environment, an image) and ``start`` launches it, returning a
:class:`TaskHandle`. The runner does the rest (code, monitoring, statuses).

- :class:`ProcessBackend`: this interpreter, nothing installed (``agent execute --no-env``).
- :class:`VenvBackend`: a cached venv per requirement set (:class:`~agent.execution.env.EnvCache`).
- ``DockerBackend`` (``docker.py``): the task's image.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import agent
from agent.core.models import Task
from agent.execution.env import EnvCache
from agent.execution.process import OnLines, TaskProcess, launch

Log = Callable[[str], None]

#: Never handed to a task: the daemon's git credentials.
PRIVATE_VARS = ("AGENT_GIT_USER", "AGENT_GIT_PASS")


@runtime_checkable
class TaskHandle(Protocol):
    """A started task, whatever runs it (``TaskProcess``, a container ...)."""

    def poll(self) -> int | None:
        """Exit code, or None while it runs."""

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` s; the exit code, or None if still running."""

    def kill_tree(self, grace: float = 10.0) -> int:
        """Stop it and everything it started: SIGTERM, ``grace`` s, SIGKILL; the exit code."""


@dataclass
class Prepared:
    """A task ready to start: its command line, directory and environment changes."""

    argv: list[str]
    cwd: Path
    env_vars: dict[str, str] = field(default_factory=dict)
    unset_vars: tuple[str, ...] = ()
    cleanup: Callable[[], None] | None = None
    #: The interpreter when ``argv`` is ``python <entry point> ...`` (a warm start may fork it).
    python: str | None = None
    #: Its environment was there before this task (not just built): a warm start may serve it.
    warm: bool = False

    def release(self) -> None:
        """Free what ``prepare`` holds (the environment's in-use lock); idempotent."""
        cleanup, self.cleanup = self.cleanup, None
        if cleanup is not None:
            cleanup()


@runtime_checkable
class ExecutionBackend(Protocol):
    """How a task's process is made. ``workdir`` is the task's working directory
    (its code is there); ``task.script.entry_point`` is relative to it."""

    name: str

    def prepare(self, task: Task, workdir: Path, log: Log) -> Prepared:
        """Get ready to run ``task`` (build or find its environment). Raises EnvError."""

    def start(
        self, prepared: Prepared, env_vars: Mapping[str, str], on_lines: OnLines
    ) -> TaskHandle:
        """Launch it with ``env_vars`` added; output lines go to ``on_lines``."""


def task_argv(python: str, task: Task) -> list[str]:
    """``python <entry_point> [args]`` (or ``<binary> ...`` for a non-Python binary).

    The script's arguments are ``task.runtime["argv"]`` (what ``agent run`` records):
    a list, or one string split as a shell would.
    """
    binary = task.script.binary or "python"
    program = python if Path(binary).name.startswith("python") else binary
    args = (task.runtime or {}).get("argv") or []
    if isinstance(args, str):
        args = shlex.split(args)
    return [program, task.script.entry_point, *(str(arg) for arg in args)]


def task_environment(prepared: Prepared, env_vars: Mapping[str, str]) -> dict[str, str]:
    """The daemon's environment, adjusted for ``prepared``, plus ``env_vars``."""
    env = {k: v for k, v in os.environ.items() if k not in (*prepared.unset_vars, *PRIVATE_VARS)}
    env.update(prepared.env_vars)
    env.update(env_vars)
    return env


def start_process(
    prepared: Prepared, env_vars: Mapping[str, str], on_lines: OnLines
) -> TaskProcess:
    """Launch ``prepared`` as a local process with the daemon's environment, adjusted."""
    return launch(prepared.argv, prepared.cwd, task_environment(prepared, env_vars), on_lines)


def _python_of(argv: list[str], python: str) -> str | None:
    """``python`` when ``argv`` runs a script with it (not another binary)."""
    return python if argv and argv[0] == python else None


class ProcessBackend:
    """Run with this (or a given) interpreter, installing nothing."""

    name = "process"

    def __init__(self, python: str = sys.executable):
        self.python = python

    def prepare(self, task: Task, workdir: Path, log: Log) -> Prepared:
        if task.script.requirements:
            log(
                f"no environment build: not installing {len(task.script.requirements)} requirement(s)"
            )
        agent_dir = str(Path(agent.__file__).resolve().parent.parent)
        pythonpath = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), agent_dir) if p)
        argv = task_argv(self.python, task)
        return Prepared(
            argv=argv,
            cwd=Path(workdir),
            env_vars={"PYTHONPATH": pythonpath},
            python=_python_of(argv, self.python),
            warm=True,
        )

    def start(
        self, prepared: Prepared, env_vars: Mapping[str, str], on_lines: OnLines
    ) -> TaskProcess:
        return start_process(prepared, env_vars, on_lines)


class VenvBackend:
    """Run in a cached venv with the task's requirements (built on first use)."""

    name = "venv"

    def __init__(
        self,
        env_cache: EnvCache,
        find_links: str | None = None,
        index_url: str | None = None,
        no_index: bool = False,
    ):
        self.env_cache = env_cache
        self.install_options: dict[str, Any] = {
            "find_links": find_links,
            "index_url": index_url,
            "no_index": no_index,
        }

    def prepare(self, task: Task, workdir: Path, log: Log) -> Prepared:
        env = self.env_cache.get(task.script.requirements, log=log, **self.install_options)
        log(f"{'reusing' if env.reused else 'built'} environment {env.key[:12]} ({env.path})")
        argv = task_argv(str(env.python), task)
        return Prepared(
            argv=argv,
            cwd=Path(workdir),
            env_vars={
                "VIRTUAL_ENV": str(env.path),
                "PATH": os.pathsep.join([str(env.bin_dir), os.environ.get("PATH", "")]),
            },
            unset_vars=("PYTHONPATH", "PYTHONHOME"),  # the task's requirements must win
            cleanup=env.release,
            python=_python_of(argv, str(env.python)),
            warm=env.reused,
        )

    def start(
        self, prepared: Prepared, env_vars: Mapping[str, str], on_lines: OnLines
    ) -> TaskProcess:
        return start_process(prepared, env_vars, on_lines)


def backend_from_settings(settings: Any, no_env: bool = False) -> ExecutionBackend:
    """``ProcessBackend`` for ``no_env``, else a ``VenvBackend`` over ``$AGENT_HOME/venvs``.

    Reads ``[agent]`` keys ``package_manager`` (uv|pip), ``venv_cache_size``,
    ``find_links``, ``index_url`` and ``no_index``.
    """
    if no_env:
        return ProcessBackend()
    table = getattr(settings, "agent", None) or {}
    cache = EnvCache(
        Path(settings.home) / "venvs",
        max_envs=int(table.get("venv_cache_size", 20)),
        package_manager=str(table.get("package_manager", "uv")),
    )
    return VenvBackend(
        cache,
        find_links=table.get("find_links"),
        index_url=table.get("index_url"),
        no_index=bool(table.get("no_index", False)),
    )
