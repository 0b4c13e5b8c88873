"""The examples run as written (item 11)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.pipeline.support import REPO_ROOT, agent_env, artifact_value, steps_of, wait_finished

EXAMPLES = REPO_ROOT / "examples"


def _run(home, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, *args], env=agent_env(home), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_iris_pipeline_gives_the_same_accuracy_in_debug_and_local_mode(home, store):
    accuracies = {}
    for mode in ("--debug", "--local"):
        out = _run(home, str(EXAMPLES / "iris_pipeline.py"), mode)
        assert "pipeline completed" in out
        pipe = store.query_tasks(type="controller", name="pipeline")[0]
        assert pipe.status == "completed", pipe.status_message
        steps = steps_of(store, pipe.id)
        assert sorted(steps) == ["step_four", "step_one", "step_three", "step_two"]
        assert sorted(steps["step_two"].artifacts) == ["X_test", "X_train", "y_test", "y_train"]
        accuracies[mode] = artifact_value(store, steps["step_four"].id, "accuracy")
        assert f"Accuracy={100 * accuracies[mode]}%" in out
    assert accuracies["--debug"] == accuracies["--local"] > 25
    # the second run found every step in the cache
    assert {t.status for t in steps.values()} == {"cached"}


def test_pipeline_from_tasks_runs_locally(home, store):
    out = _run(home, str(EXAMPLES / "pipeline_from_tasks.py"), "--local")
    assert "succeeded" in out
    pipe = store.query_tasks(type="controller")[0]
    steps = steps_of(store, pipe.id)
    assert [n["name"] for n in pipe.runtime["pipeline"]["nodes"]] == [
        "make_dataset", "fit_line", "evaluate",
    ]  # fmt: skip
    model = artifact_value(store, steps["fit_line"].id, "model")
    assert abs(model["slope"] - 2.0) < 0.05
    assert artifact_value(store, pipe.id, "mse") < 0.05
    assert "slope" in store.get_scalars(pipe.id)["fit"]


@pytest.mark.slow
def test_pipeline_from_tasks_runs_on_agents(remote):
    out = _run(remote.home, str(EXAMPLES / "pipeline_from_tasks.py"))
    task_id = re.search(r"as task ([0-9a-f]{32})", out).group(1)
    pipe = wait_finished(remote.store, task_id, 180)
    assert pipe.status == "completed", f"{pipe.status_message}\n{remote.logs()}"
    steps = steps_of(remote.store, pipe.id)
    assert all(s.worker and s.queue == "default" for s in steps.values())
    assert artifact_value(remote.store, pipe.id, "mse") < 0.05
