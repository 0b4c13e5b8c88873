"""Remote mode with real agents: a services-mode daemon runs controllers, two default
daemons run steps. Concurrency (item 3), controllers on services (7), pipelines of
pipelines (8), cloning with new arguments (10)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent import Task
from agent.pipeline import PipelineController
from tests.pipeline.support import (
    agent_env,
    artifact_value,
    make_repo,
    run_script,
    steps_of,
    wait_finished,
)
from tests.pipeline.test_controller import LOAD, TOTAL

pytestmark = pytest.mark.slow

CONTROLLER = """
from agent.pipeline import PipelineController

pipe = PipelineController(name="remote-ctl", project="ctl", version="1")
pipe.add_parameter("count", 4)
pipe.add_step("load", base_task_id="{load}", parameter_override={{"General/count": "${{pipeline.count}}"}})
pipe.add_step(
    "total",
    base_task_id="{total}",
    parameter_override={{"General/numbers_url": "${{load.artifacts.numbers.url}}"}},
    monitor_artifacts=["total"],
)
pipe.start()
print("controller finished", pipe.is_successful())
"""


def _enqueued_id(output: str) -> str:
    match = re.search(r"as task ([0-9a-f]{32})", output)
    assert match, output
    return match.group(1)


def _completed(remote, task_id: str, timeout: float = 180):
    task = wait_finished(remote.store, task_id, timeout)
    if task.status != "completed":
        log = "\n".join(line.text for line in remote.store.get_logs(task_id))
        raise AssertionError(f"{task.status}: {task.status_message}\n{log}\n{remote.logs()}")
    return task


def _clone(remote, task_id: str, *sets: str) -> str:
    args = [sys.executable, "-m", "agent.cli.main", "clone", task_id, "--queue", "services"]
    for item in sets:
        args += ["--set", item]
    out = subprocess.run(
        args, env=agent_env(remote.home), capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def test_independent_components_run_at_the_same_time_on_agents(tmp_path, remote):
    repo = make_repo(tmp_path / "repo", {"rendezvous.py": "rendezvous.py"})
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    script = repo / "rendezvous.py"
    script.write_text(
        script.read_text().replace('where: str = "/tmp"', f'where: str = "{meeting}"')
    )
    proc = run_script(script, remote.home, "remote")
    pipe = _completed(remote, _enqueued_id(proc.stdout))
    assert artifact_value(remote.store, pipe.id, "both") == ["ping saw pong", "pong saw ping"]


def test_controller_runs_on_services_and_clones_with_new_arguments(tmp_path, remote):
    bases = {}
    for name, code in (("load", LOAD), ("total", TOTAL)):
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(code))
        bases[name] = Task.create(project_name="ctl", task_name=name, script=str(path)).id
    script = tmp_path / "controller.py"
    script.write_text(CONTROLLER.format(**bases))
    proc = run_script(script, remote.home, "remote")
    first = _completed(remote, _enqueued_id(proc.stdout))
    assert artifact_value(remote.store, first.id, "total") == 6
    steps = steps_of(remote.store, first.id)
    assert all(s.worker and s.queue == "default" for s in steps.values())

    again = _completed(remote, _clone(remote, first.id, "Args/count=5"))
    assert remote.store.get_task(again.id).hyperparams["Args"]["count"] == 5
    assert artifact_value(remote.store, again.id, "total") == 10


def test_decorator_pipeline_clone_runs_with_new_arguments(tmp_path, remote):
    repo = make_repo(tmp_path / "repo", {"basic.py": "basic.py", "sibling.py": "sibling.py"})
    run_script(repo / "basic.py", remote.home, "local")  # a local run, cloned to the agents
    first = remote.store.query_tasks(type="controller", name="basic")[0]
    assert artifact_value(remote.store, first.id, "result") == 28
    again = _completed(remote, _clone(remote, first.id, "Args/count=5"))
    assert artifact_value(remote.store, again.id, "result") == 60  # (0+1+4+9+16) * 2
    statuses = {n: t.status for n, t in steps_of(remote.store, again.id).items()}
    assert statuses == {
        "make_numbers": "completed",
        "split_half": "completed",
        "total": "completed",
    }


def test_a_pipeline_is_a_step_of_another_pipeline(tmp_path, remote):
    repo = make_repo(tmp_path / "repo", {"basic.py": "basic.py", "sibling.py": "sibling.py"})
    proc = run_script(repo / "basic.py", remote.home, "remote")
    inner = _completed(remote, _enqueued_id(proc.stdout))

    outer = PipelineController(name="outer", project="ctl", version="1", default_queue="default")
    outer.add_step("inner", base_task_id=inner.id, parameter_override={"Args/count": 3})
    outer.add_function_step("beside", _square, {"value": 7}, ["square"])
    assert outer.start_locally()  # controller here, steps on their queues
    steps = steps_of(remote.store, outer.id)
    sub = steps["inner"]
    assert sub.type == "controller" and sub.queue == "services" and sub.status == "completed"
    assert sub.hyperparams["Args"]["count"] == 3
    assert artifact_value(remote.store, sub.id, "result") == 10  # (0 + 1 + 4) * 2
    assert sorted(steps_of(remote.store, sub.id)) == ["make_numbers", "split_half", "total"]
    assert artifact_value(remote.store, steps["beside"].id, "square") == 49


def _square(value: int) -> int:
    return value * value


def test_components_run_inside_a_given_repository(tmp_path, remote):
    """``repo=`` (a local path): the step runs in that repository's checkout."""
    data_repo = make_repo(tmp_path / "data-repo", {"data/numbers.txt": "1\n2\n3\n"})
    pipeline = tmp_path / "with_repo.py"
    pipeline.write_text(WITH_REPO.format(repo=data_repo))
    results = {}
    for mode in ("local", "remote"):
        proc = run_script(pipeline, remote.home, mode)
        if mode == "remote":
            task = _completed(remote, _enqueued_id(proc.stdout))
        else:
            task = remote.store.query_tasks(type="controller", name="with-repo")[0]
        results[mode] = artifact_value(remote.store, task.id, "total")
        step = steps_of(remote.store, task.id)["read_numbers"]
        assert step.script.repository == str(data_repo)
        assert step.script.commit and step.script.working_dir == "."
    assert results == {"local": 6, "remote": 6}


WITH_REPO = """
import os
from agent.automation.controller import PipelineDecorator


@PipelineDecorator.component(return_values=["total"], repo="{repo}")
def read_numbers():
    with open("data/numbers.txt") as fh:
        return sum(int(line) for line in fh if line.strip())


@PipelineDecorator.pipeline(name="with-repo", project="tests", version="1", return_value="total",
                            default_queue="default")
def with_repo():
    return read_numbers()


if __name__ == "__main__":
    if os.environ.get("PIPELINE_MODE") == "local":
        PipelineDecorator.run_locally()
    with_repo()
"""


def test_rendezvous_runs_in_local_mode(tmp_path, home, store):
    """The same concurrency check with local step processes (no agents)."""
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    script = Path(__file__).parent / "pipelines" / "rendezvous.py"
    target = tmp_path / "rendezvous.py"
    target.write_text(
        script.read_text().replace('where: str = "/tmp"', f'where: str = "{meeting}"')
    )
    run_script(target, home, "local")
    pipe = store.query_tasks(type="controller", name="rendezvous")[0]
    assert pipe.status == "completed"
    assert artifact_value(store, pipe.id, "both") == ["ping saw pong", "pong saw ping"]
