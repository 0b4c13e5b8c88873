"""``agent daemon`` options: usage errors, and flags > environment > agent.toml."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from agent.cli.main import cli
from agent.config import load_settings
from agent.daemon.cli import DaemonConfig, _as_list
from agent.daemon.runners import RunnerSpec, gpu_env
from tests.daemon.daemon_support import log_text, make_task, wait_for


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["daemon", *args])


def test_help_lists_the_options():
    result = _invoke("--help")
    assert result.exit_code == 0
    for option in ("--queue", "--order-fairness", "--services-mode", "--docker", "--gpus",
                   "--cpu-only", "--foreground", "--detached", "--stop", "--worker-id",
                   "--venv-cache-size", "--lease"):  # fmt: skip
        assert option in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "no queue"),
        (("--queue", "q", "--gpus", "0", "--cpu-only"), "exclude each other"),
        (("--queue", "q", "--detached", "--foreground"), "exclude each other"),
    ],
)
def test_usage_errors(home, args, message):
    result = _invoke(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_stop_without_daemons(home):
    result = _invoke("--stop")
    assert result.exit_code == 0 and "no agent daemon is running" in result.output


def test_flags_beat_environment_beat_file(home, monkeypatch):
    (home / "agent.toml").write_text('[agent]\nqueues = ["file"]\nlease = 30\ngpus = "3"\n')
    config = DaemonConfig(load_settings())
    assert config.get((), "queues", _as_list) == ["file"]
    monkeypatch.setenv("AGENT_QUEUES", "env1,env2")
    assert config.get((), "queues", _as_list) == ["env1", "env2"]
    assert config.get(("flag",), "queues", _as_list) == ["flag"]
    assert config.get(None, "lease", float) == 30.0
    assert config.get(None, "heartbeat", float, 5.0) == 5.0


def test_gpu_env():
    assert gpu_env(None, False) == {}
    assert gpu_env("0, 2", False) == {
        "CUDA_VISIBLE_DEVICES": "0,2",
        "NVIDIA_VISIBLE_DEVICES": "0,2",
    }
    assert gpu_env("0,2", False, in_container=True)["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert gpu_env("all", False) == {"NVIDIA_VISIBLE_DEVICES": "all"}
    assert gpu_env(None, True) == {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "none"}


def test_runner_spec_pickles_without_its_connections(home):
    import pickle

    spec = RunnerSpec(worker_id="w", no_env=True, extra_env={"A": "1"})
    runner = spec()
    assert runner.extra_env == {"A": "1"} and spec._built is not None
    copy = pickle.loads(pickle.dumps(spec))
    assert copy._built is None and copy.worker_id == "w"


@pytest.mark.timeout(60)
def test_daemon_takes_its_queues_from_agent_toml(home, store, start_daemon):
    (home / "agent.toml").write_text('[agent]\nqueues = ["from-file"]\n')
    task = make_task(store, "print('configured')", "from-file")
    start_daemon()
    wait_for(lambda: store.get_task(task.id).status == "completed", what="the task")
    assert "configured" in log_text(store, task.id)
