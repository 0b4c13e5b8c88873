"""The ``agent`` command: a click group and the error boundary around it.

Exit codes: 0 success, 1 unexpected error, 2 usage error or an
:class:`~agent.core.errors.AgentError` (unknown id, illegal move, ...), 130 interrupted.
Expected errors print one line, ``error: ...``, on stderr; set ``AGENT_DEBUG=1`` to
see tracebacks.

Heavy modules (sqlalchemy, fastapi, rich) are imported inside the commands, so
``agent --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, NoReturn

import click

from agent.cli.cluster import queues_command, workers_command
from agent.cli.control import abort_command, clone_command, enqueue_command
from agent.cli.lazy import LazyCommand, LazyGroup
from agent.cli.logs import logs_command
from agent.cli.registry import datasets_command, models_command
from agent.cli.task_commands import show_command, tasks_command
from agent.core.errors import AgentError

#: Subcommands that other packages provide, loaded only when invoked.
PLUGIN_COMMANDS: dict[str, LazyCommand] = {
    "server": LazyCommand(
        "agent.server.cli:server_command", "Serve the HTTP API (and web UI) over the store."
    ),
    "daemon": LazyCommand(
        "agent.daemon.cli:daemon_command", "Pull tasks from queues and run them (the agent)."
    ),
    "execute": LazyCommand("agent.execution.cli:execute_command", "Run one task here, now."),
    "build": LazyCommand("agent.execution.cli:build_command", "Build a task's environment only."),
    "run": LazyCommand(
        "agent.execution.cli:run_command", "Make a task from a local script and enqueue it."
    ),
    "slurm": LazyCommand(
        "agent.slurm.cli:slurm_command", "Run queued tasks as Slurm batch jobs (the glue)."
    ),
    "ui": LazyCommand("agent.ui.cli:ui_command", "Serve the web UI over this store."),
}

EXIT_UNEXPECTED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def debug_enabled() -> bool:
    """True when ``AGENT_DEBUG`` asks for tracebacks."""
    return os.environ.get("AGENT_DEBUG", "").lower() not in ("", "0", "false", "no")


def report_error(exc: BaseException) -> int:
    """Print ``exc`` for a user (one line on stderr) and return the exit code."""
    if isinstance(exc, (click.exceptions.Abort, KeyboardInterrupt)):
        return EXIT_INTERRUPTED
    if debug_enabled():
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        _echo_error(f"{_one_line(exc.format_message()).rstrip('.')}{hint}")
        return EXIT_ERROR
    if isinstance(exc, click.ClickException):
        _echo_error(_one_line(exc.format_message()))
        return exc.exit_code
    if isinstance(exc, AgentError):
        _echo_error(_one_line(str(exc)) or type(exc).__name__)
        return EXIT_ERROR
    _echo_error(f"unexpected {type(exc).__name__}: {_one_line(str(exc))}")
    if not debug_enabled():
        click.echo("hint: rerun with AGENT_DEBUG=1 to see the traceback", err=True)
    return EXIT_UNEXPECTED


def _echo_error(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


class AgentCLI(LazyGroup):
    """The top-level group; in standalone mode it reports errors via :func:`report_error`."""

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except SystemExit:
            raise
        except BaseException as exc:  # the CLI's outermost boundary: every error ends here
            sys.exit(report_error(exc))
        sys.exit(result if isinstance(result, int) else 0)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        number = version("pipeline-agent")
    except PackageNotFoundError:
        number = "unknown (not installed)"
    click.echo(f"agent (pipeline-agent) {number}")
    ctx.exit()


@click.group(
    cls=AgentCLI,
    lazy_commands=PLUGIN_COMMANDS,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run ML pipelines on your own machines.

    Without AGENT_API_URL the commands use the embedded store in $AGENT_HOME
    (default ~/.agent); with it, the server at that URL.

    \b
    Examples:
      agent tasks --status in_progress
      agent show 3f2a1b4c
      agent logs 3f2a --follow
      agent clone 3f2a --set Args/lr=0.01 --queue default
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


for _command in (
    tasks_command,
    show_command,
    logs_command,
    abort_command,
    enqueue_command,
    clone_command,
    queues_command,
    workers_command,
    models_command,
    datasets_command,
):
    cli.add_command(_command)


def main() -> NoReturn:
    """Console-script entry point (``agent``)."""
    cli.main(prog_name="agent")
    raise AssertionError("unreachable: cli.main exits")  # pragma: no cover


if __name__ == "__main__":
    main()
