"""Every argument of ``PipelineDecorator.component`` and ``pipeline`` (items 1, 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import Task, TaskTypes
from agent.automation.controller import PipelineDecorator
from tests.pipeline.support import artifact_value, pipeline_tasks, steps_of


def double_it(x):
    return x * 2


@PipelineDecorator.component(
    return_values=["score, weights"],
    name="evaluate",
    task_type=TaskTypes.qc,
    docker="python:3.11-slim",
    docker_args="--cpus 1",
    docker_bash_setup_script="echo setup",
    packages=["six>=1.0"],
    execution_queue="gpu",
    monitor_metrics=[("eval", "score"), (("eval", "loss"), ("summary", "final_loss"))],
    monitor_artifacts=[("table", "pipeline_table")],
    monitor_models=["weights_*"],
    helper_functions=[double_it],
)
def evaluate_model(numbers, offset: int = 0):
    import json
    import os
    import tempfile

    from agent import OutputModel, Task

    task = Task.current_task()
    logger = task.get_logger()
    logger.report_scalar("eval", "score", double_it(sum(numbers)) + offset, 0)
    logger.report_scalar("eval", "loss", 0.25, 0)
    task.upload_artifact("table", {"rows": len(numbers)})
    for version in (1, 2):
        path = os.path.join(tempfile.mkdtemp(), "weights.json")
        with open(path, "w") as fh:
            json.dump({"version": version}, fh)
        OutputModel(task=task, name=f"weights_{version}").update_weights(path)
    return double_it(sum(numbers)) + offset, "w"


@PipelineDecorator.component(return_values=["numbers"], cache=True)
def numbers_from(array):
    import numpy  # noqa: F401  (detected as a requirement)

    return [int(v) for v in array]


@PipelineDecorator.component(return_values=["summary"])
def summarize(values: list, *, label: str = "sum"):
    return f"{label}={sum(values)}"


@PipelineDecorator.pipeline(
    name="components", project="tests", version="2.0", add_pipeline_tags=True,
    target_project="tests/steps", return_value="summary",
)  # fmt: skip
def components_pipeline(offset: int = 1, label: str = "sum"):
    import numpy as np

    numbers = numbers_from(np.arange(4))
    score, weights = evaluate_model(numbers, offset=offset)
    return summarize([score, 10], label=label)


@pytest.mark.parametrize("mode", ["debug", "local"])
def test_component_arguments_end_up_on_the_step_task(home, store, mode):
    getattr(PipelineDecorator, "debug_pipeline" if mode == "debug" else "run_locally")()
    components_pipeline(offset=1)
    pipe = pipeline_tasks(store, "components")[0]
    assert pipe.status == "completed", pipe.status_message
    assert pipe.hyperparams["Args"] == {"offset": 1, "label": "sum"}
    assert pipe.runtime["version"] == "2.0"
    steps = steps_of(store, pipe.id)
    step = steps["evaluate"]
    assert step.type == "qc" and step.project == "tests/steps"
    assert f"pipe: {pipe.id}" in step.tags
    assert step.container == {
        "image": "python:3.11-slim", "arguments": "--cpus 1", "setup_script": "echo setup",
    }  # fmt: skip
    assert step.script.requirements == ["six>=1.0"]
    assert "def double_it(x):" in step.script.code
    assert step.hyperparams["kwargs"]["offset"] == 1
    assert step.hyperparams["kwargs"]["numbers"] == {
        "__artifact__": {"task_id": steps["numbers_from"].id, "name": "numbers"}
    }
    assert sorted(step.artifacts) == ["score", "table", "weights"]
    assert artifact_value(store, step.id, "score") == 13
    assert steps["numbers_from"].script.requirements[0].startswith("numpy==")
    # a non-JSON argument travels as an artifact of the pipeline task
    array_ref = steps["numbers_from"].hyperparams["kwargs"]["array"]["__artifact__"]
    assert array_ref == {"task_id": pipe.id, "name": "numbers_from_array"}
    # monitors
    scalars = store.get_scalars(pipe.id)
    assert scalars["eval"]["score"] == [(0, 13.0)]
    assert scalars["summary"]["final_loss"] == [(0, 0.25)]
    assert artifact_value(store, pipe.id, "pipeline_table") == {"rows": 4}
    pipe_models = Task.get_task(pipe.id).models["output"]
    assert pipe_models.keys() == ["weights_2"]
    weights = json.loads(Path(pipe_models["weights_2"].get_weights()).read_text())
    assert weights == {"version": 2}
    assert artifact_value(store, pipe.id, "summary") == "sum=23"
    queues = {n["name"]: n["queue"] for n in pipe.runtime["pipeline"]["nodes"]}
    assert queues["evaluate"] == "gpu"


def test_a_component_called_outside_a_pipeline_is_the_plain_function():
    assert summarize([1, 2], label="s") == "s=3"


def test_requirements_from_a_file(home, store, tmp_path):
    from agent.pipeline.components import resolve_packages

    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\nnumpy>=1.0\n-r extra.txt\n")
    (tmp_path / "extra.txt").write_text("pandas\n")
    assert resolve_packages(str(requirements), "") == ["numpy>=1.0", "pandas"]
    assert resolve_packages(None, "def f():\n    import os\n") == []


def test_stored_arguments_win_when_the_pipeline_runs_under_an_agent(home, store, monkeypatch):
    """A pipeline task's Args, edited before it runs, beat the call's arguments."""
    from agent.core.models import Script
    from agent.pipeline.pipeline_task import create_pipeline_task

    task = create_pipeline_task(store, "components", "tests", Script(), {"offset": 1, "label": "x"})
    store.update_task(task.id, hyperparams={"Args": {"offset": "5", "label": "total"}})
    store.enqueue(task.id, "services")
    store.claim(["services"], "test-worker")
    monkeypatch.setenv("AGENT_TASK_ID", task.id)
    PipelineDecorator.debug_pipeline()
    components_pipeline(offset=1)
    done = store.get_task(task.id)
    assert done.status == "completed" and done.hyperparams["Args"]["offset"] == 5
    assert artifact_value(store, task.id, "summary") == "total=27"


class Point:
    """A helper class: steps that pickle and unpickle it carry its source."""

    def __init__(self, x: int, y: int):
        self.x, self.y = x, y


@PipelineDecorator.component(return_values=["point"], helper_functions=[Point])
def make_point(x: int):
    return Point(x, 2 * x)


@PipelineDecorator.component(return_values=["total"], helper_functions=[Point])
def point_total(point):
    return point.x + point.y


@PipelineDecorator.pipeline(name="points", project="tests", version="1", return_value="total")
def points(x: int = 3):
    return point_total(make_point(x))


@pytest.mark.parametrize("mode", ["debug", "local"])
def test_steps_pass_instances_of_helper_classes(home, store, mode):
    getattr(PipelineDecorator, "debug_pipeline" if mode == "debug" else "run_locally")()
    points(x=3)
    pipe = pipeline_tasks(store, "points")[0]
    assert pipe.status == "completed", pipe.status_message
    assert artifact_value(store, pipe.id, "total") == 9


@PipelineDecorator.component(return_values=["text"])
def echo(text: str):
    return text


@PipelineDecorator.pipeline(name="literal", project="tests", version="1", return_value="text")
def literal_text(text: str = "cost: ${price.usd} per ${unit}"):
    return echo(text)


def test_a_components_text_arguments_are_not_references(home, store):
    PipelineDecorator.debug_pipeline()
    literal_text()
    pipe = pipeline_tasks(store, "literal")[0]
    assert artifact_value(store, pipe.id, "text") == "cost: ${price.usd} per ${unit}"
