"""Three modes, one data path: debug, local and remote runs give the same results, and a
step can import the modules next to the pipeline file in each of them (item 4)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.pipeline.support import (
    artifact_value,
    make_repo,
    pipeline_tasks,
    run_script,
    steps_of,
    wait_finished,
)

EXPECTED = 28  # (0 + 1 + 4 + 9) * 2


def _run(repo: Path, home: Path, store, mode: str, **env: str):
    run_script(repo / "basic.py", home, mode, **env)
    pipe = pipeline_tasks(store, "basic")[0]
    assert pipe.status == "completed", pipe.status_message
    return pipe


def test_debug_and_local_modes_record_the_same_tasks_and_results(tmp_path, home, store):
    repo = make_repo(tmp_path / "repo", {"basic.py": "basic.py", "sibling.py": "sibling.py"})
    results = {}
    for mode in ("debug", "local"):
        pipe = _run(repo, home, store, mode, AGENT_PIPELINE_FORCE_RERUN="1")
        results[mode] = artifact_value(store, pipe.id, "result")
        steps = steps_of(store, pipe.id)
        assert sorted(steps) == ["make_numbers", "split_half", "total"]
        assert all(s.status == "completed" for s in steps.values())
        assert sorted(steps["split_half"].artifacts) == ["left", "right"]
        assert steps["total"].hyperparams["kwargs"]["scale"] == 2
        # the steps record the pipeline file's repository, so an agent can check it out
        assert steps["make_numbers"].script.repository == str(repo)
        assert steps["make_numbers"].script.commit == pipe.script.commit
    assert results == {"debug": EXPECTED, "local": EXPECTED}


def test_local_mode_finds_an_untracked_sibling_module(tmp_path, home, store):
    repo = make_repo(tmp_path / "repo", {"basic.py": "basic.py"})
    (repo / "sibling.py").write_text(_sibling_source())
    pipe = _run(repo, home, store, "local")
    assert artifact_value(store, pipe.id, "result") == EXPECTED
    # the untracked module travels in the diff, for agents
    assert "sibling.py" in pipe.script.diff


def _sibling_source() -> str:
    return (Path(__file__).parent / "pipelines" / "sibling.py").read_text()


def _enqueued_id(output: str) -> str:
    match = re.search(r"as task ([0-9a-f]{32})", output)
    assert match, output
    return match.group(1)


@pytest.mark.slow
def test_remote_mode_gives_the_same_results(tmp_path, remote):
    repo = make_repo(tmp_path / "repo", {"basic.py": "basic.py", "sibling.py": "sibling.py"})
    proc = run_script(repo / "basic.py", remote.home, "remote")
    pipe_id = _enqueued_id(proc.stdout)
    pipe = wait_finished(remote.store, pipe_id, 180)
    assert pipe.status == "completed", f"{pipe.status_message}\n{remote.logs()}"
    assert artifact_value(remote.store, pipe_id, "result") == EXPECTED
    steps = steps_of(remote.store, pipe_id)
    assert {s.queue for s in steps.values()} == {"default"}
    assert all(s.worker for s in steps.values())  # run by the agents


def test_a_remote_launch_with_no_services_agent_says_so(tmp_path, home, store):
    repo = make_repo(tmp_path / "repo", {"basic.py": "basic.py", "sibling.py": "sibling.py"})
    proc = run_script(repo / "basic.py", home, "remote")
    pipe = store.get_task(_enqueued_id(proc.stdout))
    assert (pipe.status, pipe.queue) == ("queued", "services")
    assert (
        "warning: no agent serves queue 'services' "
        "(start one: agent daemon --queue services --services-mode)"
    ) in proc.stderr


def test_local_mode_without_fork_spawns_each_step(tmp_path, home, store):
    """Where fork is unavailable (or AGENT_PIPELINE_NO_ZYGOTE=1): one interpreter per step."""
    repo = make_repo(tmp_path / "repo", {"basic.py": "basic.py", "sibling.py": "sibling.py"})
    pipe = _run(repo, home, store, "local", AGENT_PIPELINE_NO_ZYGOTE="1")
    assert artifact_value(store, pipe.id, "result") == EXPECTED


# -- steps wrapped in the user's own decorators (every mode) --------------------------------
def _decorated_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"decorated.py": "decorated.py"})


def test_user_decorators_travel_with_the_step_in_debug_and_local_mode(tmp_path, home, store):
    repo = _decorated_repo(tmp_path)
    for mode in ("debug", "local"):
        proc = run_script(repo / "decorated.py", home, mode, AGENT_PIPELINE_FORCE_RERUN="1")
        pipe = pipeline_tasks(store, "decorated")[0]
        assert pipe.status == "completed", pipe.status_message
        assert artifact_value(store, pipe.id, "r") == 6, mode  # times(3)(x + 1), x = 1
        step = steps_of(store, pipe.id)["doubled"]
        log = "\n".join(line.text for line in store.get_logs(step.id))
        assert "doubled took" in (log if mode == "local" else proc.stdout), mode  # @timed ran
    proc = run_script(repo / "decorated.py", home, "local", args=("controller",))
    assert "controller True" in proc.stdout
    ctl = pipeline_tasks(store, "decorated-ctl")[0]
    assert artifact_value(store, ctl.id, "value") == 15
    step = steps_of(store, ctl.id)["shifted"]
    assert "shifted took" in "\n".join(line.text for line in store.get_logs(step.id))


@pytest.mark.slow
def test_user_decorators_travel_with_the_step_in_remote_mode(tmp_path, remote):
    repo = _decorated_repo(tmp_path)
    for kind in ("decorator", "controller"):
        args = ("controller",) if kind == "controller" else ()
        proc = run_script(repo / "decorated.py", remote.home, "remote", args=args)
        pipe = wait_finished(remote.store, _enqueued_id(proc.stdout), 180)
        assert pipe.status == "completed", f"{pipe.status_message}\n{remote.logs()}"
        name, artifact, expected = {
            "decorator": ("doubled", "r", 6),
            "controller": ("shifted", "value", 15),
        }[kind]
        assert artifact_value(remote.store, pipe.id, artifact) == expected
        step = steps_of(remote.store, pipe.id)[name]
        assert step.worker, "the step ran on an agent"
        log = "\n".join(line.text for line in remote.store.get_logs(step.id))
        assert f"{name} took" in log
