"""The ``agent`` group: help, version, lazy plugin commands, the error boundary."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from agent.cli import main as cli_main
from agent.cli.lazy import LazyCommand, LazyGroup
from agent.cli.main import PLUGIN_COMMANDS, AgentCLI, cli
from agent.core.errors import Conflict

BUILTIN = [
    "abort", "clone", "datasets", "enqueue", "logs", "models", "queues", "show", "tasks", "workers",
]  # fmt: skip
PLUGINS = ["build", "daemon", "execute", "run", "server", "slurm", "ui"]


def test_help_lists_every_command(invoke):
    result = invoke("--help")
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line]
    assert listed == sorted(BUILTIN + PLUGINS)


def test_no_arguments_prints_help(invoke):
    result = invoke()
    assert result.exit_code == 0
    assert "Commands:" in result.stdout


def test_plugin_table_names_the_agreed_targets():
    assert {name: entry.target for name, entry in PLUGIN_COMMANDS.items()} == {
        "server": "agent.server.cli:server_command",
        "daemon": "agent.daemon.cli:daemon_command",
        "execute": "agent.execution.cli:execute_command",
        "build": "agent.execution.cli:build_command",
        "run": "agent.execution.cli:run_command",
        "slurm": "agent.slurm.cli:slurm_command",
        "ui": "agent.ui.cli:ui_command",
    }


def test_help_and_version_import_nothing_heavy(run_agent):
    probe = textwrap.dedent(
        """
        import sys
        from agent.cli.main import cli
        for args in (["--help"], ["--version"]):
            try:
                cli.main(args, prog_name="agent")
            except SystemExit as exc:
                assert exc.code == 0, exc.code
        heavy = [m for m in ("sqlalchemy", "fastapi", "uvicorn", "rich", "agent.store.sql",
                             "agent.server.cli", "agent.daemon.cli", "agent.execution.cli")
                 if m in sys.modules]
        print("HEAVY", heavy, file=sys.stderr)
        assert not heavy, heavy
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "agent (pipeline-agent)" in done.stdout


def _group_with(lazy: dict[str, LazyCommand]) -> click.Group:
    @click.group(cls=AgentCLI, lazy_commands=lazy)
    def group() -> None:
        """Test group."""

    return group


def test_lazy_command_loads_only_when_invoked(tmp_path, monkeypatch):
    (tmp_path / "fake_plugin_mod.py").write_text(
        textwrap.dedent(
            """
            import click

            @click.command()
            @click.option("--who", default="world")
            def hello_command(who):
                click.echo(f"hello {who}")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    group = _group_with({"hello": LazyCommand("fake_plugin_mod:hello_command", "Say hello.")})
    runner = CliRunner()

    listing = runner.invoke(group, ["--help"])
    assert "hello  Say hello." in listing.output
    assert "fake_plugin_mod" not in sys.modules

    result = runner.invoke(group, ["hello", "--who", "you"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello you\n"


@pytest.mark.parametrize(
    "target, reason",
    [
        ("agent.no_such_module.cli:cmd", "module agent.no_such_module.cli is missing"),
        ("agent.cli.main:no_such_attr", "has no click command 'no_such_attr'"),
    ],
)
def test_missing_plugin_fails_only_when_invoked(target, reason, capsys):
    group = _group_with({"ghost": LazyCommand(target, "A command not built yet.")})
    with pytest.raises(SystemExit) as exit_help:
        group.main(["--help"], prog_name="agent")
    assert exit_help.value.code == 0
    assert "ghost  A command not built yet." in capsys.readouterr().out

    for args in (["ghost"], ["ghost", "--help"], ["ghost", "--queue", "x"]):
        with pytest.raises(SystemExit) as exit_run:
            group.main(args, prog_name="agent")
        assert exit_run.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: 'agent ghost' is not available")
        assert reason in err


def test_lazy_group_also_serves_plain_commands():
    group = LazyGroup(name="g", lazy_commands={})

    @group.command("plain")
    def plain() -> None:
        click.echo("plain ran")

    assert CliRunner().invoke(group, ["plain"]).output == "plain ran\n"


def test_agent_error_is_one_line_exit_2(invoke, monkeypatch):
    def refuse():
        raise Conflict("task 1234abcd is completed\nsecond line")

    monkeypatch.setattr("agent.cli.task_commands.current_backend", refuse)
    result = invoke("tasks")
    assert result.exit_code == 2
    assert result.stderr == "error: task 1234abcd is completed; second line\n"
    assert result.stdout == ""


def test_unexpected_error_gets_a_hint_not_a_traceback(invoke, monkeypatch):
    def crash():
        raise RuntimeError("boom")

    monkeypatch.setattr("agent.cli.task_commands.current_backend", crash)
    result = invoke("tasks")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "error: unexpected RuntimeError: boom",
        "hint: rerun with AGENT_DEBUG=1 to see the traceback",
    ]

    monkeypatch.setenv("AGENT_DEBUG", "1")
    debug = invoke("tasks")
    assert debug.exit_code == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "error: unexpected RuntimeError: boom" in debug.stderr


@pytest.mark.parametrize(
    "args",
    [["no-such-command"], ["tasks", "--no-such-option"], ["tasks", "--limit", "zero"], ["show"]],
)
def test_usage_errors_are_one_line_exit_2(invoke, args):
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "--help" in result.stderr


def test_report_error_maps_abort_to_130_quietly(capsys):
    assert cli_main.report_error(click.exceptions.Abort()) == 130
    assert capsys.readouterr().err == ""


def test_subprocess_unknown_id_is_one_line_exit_2(run_agent, agent_home):
    done = run_agent("show", "feedfacefeedface")
    assert done.returncode == 2
    assert done.stderr == (
        "error: no task with id or id prefix 'feedfacefeedface' (list them with `agent tasks`)\n"
    )
    assert done.stdout == ""


def test_subprocess_version_and_json(run_agent, agent_home):
    version = run_agent("--version")
    assert version.returncode == 0 and version.stdout.startswith("agent (pipeline-agent) ")
    listing = run_agent("tasks", "--json")
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout) == []


def test_every_command_the_readme_inspects_with_takes_json(invoke):
    # README: "Every command here takes `--json`", under its Inspecting block.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Inspecting", 1)[1].split("## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    commands = sorted(set(re.findall(r"\bagent ([a-z]+)", block)))
    assert {"tasks", "show", "logs", "abort", "enqueue", "clone", "queues", "workers"} <= set(
        commands
    )
    assert "Every command here takes `--json`" in section
    lacking = [name for name in commands if "--json" not in invoke(name, "--help").stdout]
    assert lacking == []


def test_cli_object_is_the_console_script_target():
    assert isinstance(cli, AgentCLI)
    assert callable(cli_main.main)


def test_python_dash_m_agent_cli_runs_the_group(agent_home):
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "queues", "--json"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
