"""The examples run as written (item 11)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline.support import REPO_ROOT, agent_env, artifact_value, steps_of, wait_finished

EXAMPLES = REPO_ROOT / "examples"


def _run(home, *args: str, cwd=None, **env: str) -> str:
    proc = subprocess.run(
        [sys.executable, *args],
        env=agent_env(home, **env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
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
        assert f"Accuracy={100 * accuracies[mode]}% ({accuracies[mode]} test samples correct" in out
        assert "accuracy_score(normalize=False) counts them" in out
        if mode == "--debug":  # steps run in this process: their prints are here too
            assert f"{accuracies[mode]} of 32 test samples correct (" in out
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


TABULAR_STEPS = [
    "create_dataset", "preprocess_dataset", "select_best_model", "train_model",
    "train_model_1", "verify_dataset_integrity",
]  # fmt: skip


def _check_tabular_pipeline(store, pipe) -> None:
    """What the tabular example made: two dataset versions (the second a child of the
    first), its steps completed, and the best trained model as the pipeline's output model."""
    import joblib
    import pandas as pd

    from agent import Dataset, InputModel, Task

    assert pipe.status == "completed", pipe.status_message
    steps = steps_of(store, pipe.id)
    assert sorted(steps) == TABULAR_STEPS
    assert {s.status for s in steps.values()} == {"completed"}

    versions = {d["name"]: d for d in Dataset.list_datasets(dataset_project="tabular_pipe_demo")}
    assert sorted(versions) == ["mock", "mock v2"]
    assert versions["mock v2"]["parents"] == [versions["mock"]["id"]]
    child = Dataset.get(dataset_id=versions["mock v2"]["id"])
    assert child.list_files() == ["dataset.csv"] and child.list_modified_files() == ["dataset.csv"]
    head = Task.get_task(task_id=child.id).get_reported_plots()
    assert [(p["title"], p["series"]) for p in head] == [("sample", "head")]
    [histogram] = Task.get_task(task_id=steps["verify_dataset_integrity"].id).get_reported_plots()
    assert histogram["title"] == "histogram" and len(histogram["figure"]["data"][0]["y"]) == 10

    scores = [artifact_value(store, steps[n].id, "return_object") for n in TABULAR_STEPS[3:5]]
    best = min(scores, key=lambda m: m["error"])["model_id"]
    assert artifact_value(store, steps["select_best_model"].id, "return_object") == best
    assert [m.id for m in Task.get_task(task_id=pipe.id).models["output"]] == [best]
    model = joblib.load(InputModel(model_id=best).get_weights())
    frame = pd.read_csv(Path(child.get_local_copy()) / "dataset.csv")
    features = frame[["fnlwgt", "education-yrs", "capital-gain", "capital-loss", "hours-per-week"]]
    assert model.predict(features.head(3)).shape == (3,)


@pytest.mark.parametrize("mode", ["--debug", "--local"])
def test_tabular_pipeline_makes_datasets_and_selects_the_best_model(home, store, mode, tmp_path):
    # here steps run in the script's folder, and write dataset.csv and a_model.pkl there
    script = Path(shutil.copy(EXAMPLES / "tabular_pipeline.py", tmp_path))
    out = _run(home, str(script), mode, cwd=tmp_path, MPLBACKEND="Agg")
    assert "pipeline completed" in out and "PASSED" in out
    _check_tabular_pipeline(store, store.query_tasks(type="controller")[0])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tabular_pipeline_runs_on_bare_node_agents(remote, tmp_path):
    out = _run(remote.home, str(EXAMPLES / "tabular_pipeline.py"), cwd=tmp_path)
    task_id = re.search(r"as task ([0-9a-f]{32})", out).group(1)
    pipe = wait_finished(remote.store, task_id, 540)
    assert pipe.status == "completed", f"{pipe.status_message}\n{remote.logs()}"
    steps = steps_of(remote.store, pipe.id)
    assert all(s.worker and s.queue == "default" for s in steps.values())
    _check_tabular_pipeline(remote.store, pipe)
