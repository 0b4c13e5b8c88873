"""A click group whose subcommands from other packages load only when invoked.

``agent --help`` lists them from a table without importing them, so the help stays
fast and keeps working while a package (``agent.daemon``, ``agent.execution``, ...)
is missing or broken; only invoking such a command reports that it is not available.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import click

from agent.core.errors import AgentError


class CommandUnavailable(AgentError):
    """A subcommand whose module cannot be imported in this installation."""


class LazyCommand(NamedTuple):
    """Where a subcommand lives (``"package.module:attr"``) and its one-line help."""

    target: str
    help: str


class LazyGroup(click.Group):
    """A :class:`click.Group` that also serves commands named in ``lazy_commands``."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, LazyCommand] | None = None, **kw):
        super().__init__(*args, **kw)
        self.lazy_commands: dict[str, LazyCommand] = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy_commands:
            command = load_command(cmd_name, self.lazy_commands[cmd_name].target)
            if not getattr(command, "unavailable", False):
                self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, but lazy commands show their table help and stay unimported."""
        limit = formatter.width - 6 - max((len(n) for n in self.list_commands(ctx)), default=0)
        rows = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is not None:
                if not command.hidden:
                    rows.append((name, command.get_short_help_str(limit)))
            else:
                rows.append((name, self.lazy_commands[name].help))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def load_command(name: str, target: str) -> click.Command:
    """Import ``module:attr``; on failure, a stand-in command that reports why."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return unavailable_command(
                name, f"module {module_name} is missing from this installation", exc
            )
        return unavailable_command(name, f"{module_name} needs {exc.name!r}: {exc}", exc)
    except ImportError as exc:
        return unavailable_command(name, f"{module_name} failed to import: {exc}", exc)
    command = getattr(module, attr, None)
    if not isinstance(command, click.Command):
        return unavailable_command(name, f"{module_name} has no click command {attr!r}", None)
    return command


def unavailable_command(name: str, reason: str, cause: BaseException | None) -> click.Command:
    """A command that takes any arguments (even ``--help``) and fails with ``reason``."""

    def fail(args: tuple[str, ...]) -> None:
        raise CommandUnavailable(f"'agent {name}' is not available: {reason}") from cause

    command = click.Command(
        name,
        callback=fail,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
        help=f"(not available: {reason})",
    )
    command.unavailable = True  # type: ignore[attr-defined]
    return command
