"""The fleet case: agents on bare nodes (a venv with only pipeline-agent, see
:mod:`tests.bare_node`) run pipelines launched from the user's machine (this test process's
Python, which has pandas and scikit-learn). What a step needs travels with it: its
requirements are resolved at launch, where the libraries are installed, and the agent
builds each step's venv from them."""

from __future__ import annotations

import importlib.metadata
import subprocess
import textwrap

import pytest

from tests.bare_node import bare_python
from tests.pipeline.support import (
    REPO_ROOT,
    agent_env,
    artifact_value,
    launch_remote,
    make_repo,
    steps_of,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.slow


def _launch(remote, script, *args: str) -> str:
    return launch_remote(script, agent_env(remote.home), *args)


def test_the_daemons_run_on_a_bare_node(remote):
    probe = (
        "import importlib.util as u; print([u.find_spec(m) is None for m in ('sklearn', 'pandas')])"
    )
    out = subprocess.run([str(bare_python()), "-c", probe], capture_output=True, text=True)
    assert out.stdout.strip() == "[True, True]"  # nothing of the user's libraries there
    assert all(d.proc and d.proc.args[0] == str(bare_python()) for d in remote.daemons)


@pytest.mark.timeout(600)
def test_iris_pipeline_runs_remotely_on_bare_nodes(remote):
    pipeline_id = _launch(remote, REPO_ROOT / "examples" / "iris_pipeline.py")
    pipe = wait_finished(remote.store, pipeline_id, 540)
    assert pipe.status == "completed", f"{pipe.status_message}\n{remote.logs()}"

    steps = steps_of(remote.store, pipe.id)
    assert sorted(steps) == ["step_four", "step_one", "step_three", "step_two"]
    version = importlib.metadata.version
    sklearn = f"scikit-learn=={version('scikit-learn')}"
    pandas = f"pandas=={version('pandas')}"
    for name in ("step_one", "step_two", "step_three"):
        assert {sklearn, pandas} <= set(steps[name].script.requirements), name
    # step_four imports only scikit-learn, but its input X_test is a DataFrame: loading it
    # needs pandas, which the artifact recorded where it was made
    assert sklearn in steps["step_four"].script.requirements
    assert pandas in steps["step_four"].script.requirements
    assert artifact_value(remote.store, steps["step_four"].id, "accuracy") == 32
    assert all(s.status in ("completed", "cached") for s in steps.values())
    # the controller marks the pipeline completed, then prints its result and exits; the
    # daemon forwards that last output after the status changed
    wait_for(
        lambda: any("Accuracy=3200" in line.text for line in remote.store.get_logs(pipe.id)),
        60,
        "the controller's last output in the pipeline's log",
    )


PIPELINE = """
from agent.automation.controller import PipelineDecorator


@PipelineDecorator.component(return_values=["n"], packages=[])
def undeclared():
    import sklearn  # the user's machine has it; the step declared nothing

    return 1


@PipelineDecorator.pipeline(name="undeclared", project="bare", version="1")
def main():
    print(undeclared())


if __name__ == "__main__":
    main()
"""


def test_an_undeclared_import_fails_with_a_clear_message_on_a_bare_node(remote, tmp_path):
    repo = make_repo(tmp_path / "repo", {"pipe.py": textwrap.dedent(PIPELINE)})
    pipeline_id = _launch(remote, repo / "pipe.py")
    pipe = wait_finished(remote.store, pipeline_id, 180)
    assert pipe.status == "failed"
    step = steps_of(remote.store, pipe.id)["undeclared"]
    assert step.status == "failed"
    assert step.script.requirements == []
    assert "No module named 'sklearn'" in step.status_message
    assert "packages=['scikit-learn']" in step.status_message


DATA_PIPELINE = """
from agent.automation.controller import PipelineDecorator


@PipelineDecorator.component(return_values=["dataset_id"], cache=False)
def make_dataset():
    import os
    import tempfile

    import pandas as pd
    from sklearn.datasets import load_iris

    from agent import Dataset

    folder = tempfile.mkdtemp()
    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=iris.feature_names).assign(target=iris.target)
    frame.to_csv(os.path.join(folder, "iris.csv"), index=False)
    dataset = Dataset.create(dataset_name="iris", dataset_project="bare")
    dataset.add_files(folder)
    dataset.finalize(auto_upload=True)
    return dataset.id


@PipelineDecorator.component(return_values=["accuracy"], monitor_models=["*"])
def train(dataset_id):
    import os

    import joblib
    import matplotlib.pyplot as plt
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from agent import Dataset

    folder = Dataset.get(dataset_id=dataset_id).get_local_copy()
    frame = pd.read_csv(os.path.join(folder, "iris.csv"))
    X, y = frame.drop(columns=["target"]), frame["target"]
    model = LogisticRegression(max_iter=500).fit(X, y)
    joblib.dump(model, "iris_model.pkl")  # registered as the step's output model
    plt.scatter(X.iloc[:, 0], X.iloc[:, 1], c=model.predict(X))
    plt.title("predictions")
    plt.show()  # reported as a plot of the step
    return float(model.score(X, y))


@PipelineDecorator.pipeline(name="data to model", project="bare", version="1")
def main():
    print("accuracy", train(make_dataset()))


if __name__ == "__main__":
    main()
"""


@pytest.mark.timeout(600)
def test_a_dataset_version_trains_a_model_that_the_pipeline_reports(remote, tmp_path):
    """Step one makes a dataset version; step two trains on its local copy on another
    node, and the model that ``joblib.dump`` saved is registered and reported upward."""
    import joblib

    from agent import Dataset, InputModel

    repo = make_repo(tmp_path / "repo", {"pipe.py": textwrap.dedent(DATA_PIPELINE)})
    pipeline_id = _launch(remote, repo / "pipe.py")
    pipe = wait_finished(remote.store, pipeline_id, 540)
    assert pipe.status == "completed", f"{pipe.status_message}\n{remote.logs()}"
    steps = steps_of(remote.store, pipe.id)
    assert any(r.startswith("joblib==") for r in steps["train"].script.requirements)

    dataset_id = artifact_value(remote.store, steps["make_dataset"].id, "dataset_id")
    dataset = Dataset.get(dataset_id=dataset_id)
    assert dataset.list_files() == ["iris.csv"] and dataset.is_final()

    [model] = remote.store.query_models(task=steps["train"].id)
    assert model.name == "train - iris_model" and model.framework == "ScikitLearn"
    pipeline_models = remote.store.query_models(ids=list(_output_links(remote, pipe.id)))
    assert [m.id for m in pipeline_models] == [model.id]  # monitor_models=["*"]
    [plot] = remote.store.get_plots(steps["train"].id)
    assert plot["title"] == "predictions" and plot["figure"]["media"]["kind"] == "plot_image"
    fitted = joblib.load(InputModel(model_id=model.id).get_weights())
    accuracy = artifact_value(remote.store, steps["train"].id, "accuracy")
    assert accuracy > 0.9 and fitted.n_features_in_ == 4


def _output_links(remote, task_id: str) -> list[str]:
    from agent.sdk.model import model_links

    return list(model_links(remote.store.get_task(task_id).runtime, "output").values())
