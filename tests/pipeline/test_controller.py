"""PipelineController over existing tasks and functions (item 7), DAG report (item 9)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent import Task
from agent.pipeline import PipelineController, PipelineDefinitionError
from tests.pipeline.support import artifact_value, steps_of

LOAD = """
from agent import Task

task = Task.init(project_name="ctl", task_name="load")
params = {"count": 3}
task.connect(params)
task.upload_artifact("numbers", list(range(int(params["count"]))))
"""

TOTAL = """
import json
from agent import StorageManager, Task

task = Task.init(project_name="ctl", task_name="total")
params = {"numbers_url": "", "source": ""}
task.connect(params)
with open(StorageManager.get_local_copy(params["numbers_url"])) as fh:
    numbers = json.load(fh)
total = sum(numbers)
task.get_logger().report_scalar("result", "total", total, 0)
task.upload_artifact("total", total)
print("source task", params["source"])
"""


def base_task(tmp_path: Path, name: str, code: str) -> Task:
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(code))
    return Task.create(project_name="ctl", task_name=name, script=str(script))


@pytest.fixture
def bases(home, tmp_path) -> dict[str, Task]:
    return {"load": base_task(tmp_path, "load", LOAD), "total": base_task(tmp_path, "total", TOTAL)}


def two_steps(bases: dict[str, Task], **total_options) -> PipelineController:
    pipe = PipelineController(name="from-tasks", project="ctl", version="1")
    pipe.add_parameter("count", 4, "how many numbers")
    pipe.add_step(
        "load",
        base_task_id=bases["load"].id,
        parameter_override={"General/count": "${pipeline.count}"},
    )
    pipe.add_step(
        "total",
        base_task_id=bases["total"].id,
        parameter_override={
            "General/numbers_url": "${load.artifacts.numbers.url}",
            "General/source": "${load.id}",
        },
        monitor_metrics=[("result", "total")],
        monitor_artifacts=[("total", "pipeline_total")],
        **total_options,
    )
    return pipe


def test_steps_from_tasks_run_locally_with_references(bases, store):
    pipe = two_steps(bases)
    assert pipe.start_locally(run_pipeline_steps_locally=True)
    assert pipe.is_successful()
    task = store.get_task(pipe.id)
    assert task.status == "completed"
    assert task.hyperparams["Args"] == {"count": 4}
    steps = steps_of(store, pipe.id)
    load, total = steps["load"], steps["total"]
    assert load.runtime["cloned_from"] == bases["load"].id
    assert load.hyperparams["General"]["count"] == 4
    assert total.hyperparams["General"]["numbers_url"] == load.artifacts["numbers"].uri
    assert total.hyperparams["General"]["source"] == load.id
    assert artifact_value(store, total.id, "total") == 6
    # monitors copy the step's scalar and artifact onto the pipeline task
    assert store.get_scalars(pipe.id)["result"]["total"] == [(0, 6.0)]
    assert artifact_value(store, pipe.id, "pipeline_total") == 6
    # the DAG report: the referenced step became a parent
    dag = task.runtime["pipeline"]
    assert dag["edges"] == [["load", "total"]]
    node = dag["nodes"][1]
    assert set(node) == {
        "name",
        "task_id",
        "status",
        "parents",
        "started",
        "completed",
        "cached",
        "queue",
    }
    assert (
        node["task_id"] == total.id
        and node["status"] == "completed"
        and node["parents"] == ["load"]
    )
    assert pipe.get_pipeline_dag()["total"].executed == total.id


def test_a_cycle_an_unknown_parent_or_a_bad_reference_fail_before_any_step(bases, store):
    before = len(store.query_tasks())

    cycle = PipelineController(name="bad", project="ctl")
    cycle.add_step("a", base_task_id=bases["load"].id, parents=["b"])
    cycle.add_step("b", base_task_id=bases["load"].id, parents=["a"])
    with pytest.raises(PipelineDefinitionError, match="cycle"):
        cycle.start_locally(run_pipeline_steps_locally=True)

    unknown = PipelineController(name="bad", project="ctl")
    unknown.add_step("a", base_task_id=bases["load"].id, parents=["nowhere"])
    with pytest.raises(PipelineDefinitionError, match="unknown parent"):
        unknown.start_locally(run_pipeline_steps_locally=True)

    for override, message in (
        ("${ghost.id}", "names no step"),
        ("${pipeline.missing}", "names no pipeline argument"),
        ("${a.whatever.x}", "unknown field"),
    ):
        bad = PipelineController(name="bad", project="ctl")
        bad.add_step("a", base_task_id=bases["load"].id)
        bad.add_step("b", base_task_id=bases["load"].id, parameter_override={"General/x": override})
        with pytest.raises(PipelineDefinitionError, match=message):
            bad.start_locally(run_pipeline_steps_locally=True)

    assert len(store.query_tasks()) == before


def test_pre_execute_callback_false_skips_the_step_and_its_subtree(bases, store):
    seen = []

    def veto(pipeline, node, parameters):
        seen.append((node.name, dict(parameters)))
        return False

    pipe = PipelineController(name="veto", project="ctl")
    pipe.add_parameter("count", 2)
    pipe.add_step("load", base_task_id=bases["load"].id, pre_execute_callback=veto)
    pipe.add_step(
        "total",
        base_task_id=bases["total"].id,
        parameter_override={"General/numbers_url": "${load.artifacts.numbers.url}"},
    )
    pipe.start_locally(run_pipeline_steps_locally=True)
    dag = pipe.get_pipeline_dag()
    assert dag["load"].status == "skipped" and dag["total"].status == "skipped"
    assert seen == [("load", {})]


def double(value: int) -> int:
    return value * 2


def add(a: int, b: int) -> int:
    return a + b


def report_to_pipeline(value: int) -> int:
    from agent.pipeline import PipelineController

    PipelineController.get_logger().report_scalar("from_step", "value", value, 1)
    PipelineController.upload_artifact("from_step", {"value": value})
    return value


@pytest.mark.parametrize("local_steps", [True])
def test_function_steps_cache_and_report_to_the_pipeline(home, store, local_steps):
    def build() -> PipelineController:
        pipe = PipelineController(name="functions", project="ctl", version="1")
        pipe.add_parameter("start", 5)
        pipe.add_function_step(
            "double",
            double,
            function_kwargs={"value": "${pipeline.start}"},
            function_return=["doubled"],
            cache_executed_step=True,
        )
        pipe.add_function_step(
            "add",
            add,
            function_kwargs={"a": "${double.doubled}", "b": 1},
            function_return=["sum"],
            cache_executed_step=True,
        )
        pipe.add_function_step(
            "report",
            report_to_pipeline,
            function_kwargs={"value": "${add.sum}"},
            function_return=["value"],
        )
        return pipe

    first = build()
    first.start_locally(run_pipeline_steps_locally=local_steps)
    assert first.is_successful()
    steps = steps_of(store, first.id)
    assert artifact_value(store, steps["add"].id, "sum") == 11
    assert steps["add"].hyperparams["kwargs"]["a"] == {
        "__artifact__": {"task_id": steps["double"].id, "name": "doubled"}
    }
    assert store.get_scalars(first.id)["from_step"]["value"] == [(1, 11.0)]
    assert artifact_value(store, first.id, "from_step") == {"value": 11}

    second = build()
    second.start_locally(run_pipeline_steps_locally=local_steps)
    statuses = {name: t.status for name, t in steps_of(store, second.id).items()}
    assert statuses == {"double": "cached", "add": "cached", "report": "completed"}
    assert second.is_successful()  # cached steps count as success
    assert store.get_task(second.id).status == "completed"


def test_steps_fan_out_and_run_concurrently(home, store, tmp_path):
    from tests.pipeline.flows import fail  # noqa: F401  (flows registers nothing here)

    pipe = PipelineController(name="fan", project="ctl")
    for index in range(4):
        pipe.add_function_step(f"double_{index}", double, {"value": index}, ["doubled"])
    pipe.add_function_step(
        "join",
        add,
        {"a": "${double_2.doubled}", "b": "${double_3.doubled}"},
        ["sum"],
        parents=["double_0", "double_1"],
    )
    pipe.start_locally(run_pipeline_steps_locally=True)
    assert pipe.is_successful()
    assert sorted(pipe.get_pipeline_dag()["join"].parents) == [
        "double_0",
        "double_1",
        "double_2",
        "double_3",
    ]
    assert artifact_value(store, steps_of(store, pipe.id)["join"].id, "sum") == 10


# -- ClearML details that pipeline code touches (issue 8, item 9) ----------------------------
def test_clearmls_import_paths():
    from agent.automation import PipelineController as Controller
    from agent.automation import PipelineDecorator as Decorator
    from agent.automation.controller import PipelineController as Same

    assert Controller is Same is PipelineController
    assert Decorator.component and Controller.Node.__name__ == "Node"


def test_pre_execute_callback_gets_resolved_overrides_it_may_change(bases, store):
    seen: dict[str, dict] = {}

    def before(pipeline, node, param_override):
        seen[node.name] = dict(param_override)
        assert isinstance(node, PipelineController.Node)
        assert node.base_task_id == bases[node.name].id and node.job is None
        if node.name == "load":
            param_override["General/count"] = 6  # this run of the step counts to 6

    def after(pipeline, node):
        seen[f"{node.name} done"] = {
            "executed": node.executed,
            "job_task": node.job.task_id(),
            "completed": node.job.is_completed(),
            "task_name": node.job.task.name,
            "job_type": node.job_type,
            "started": node.job_started is not None,
        }

    pipe = two_steps(bases, pre_execute_callback=before, post_execute_callback=after)
    pipe._specs["load"].pre_execute_callback = before
    assert pipe.start_locally(run_pipeline_steps_locally=True)
    steps = steps_of(store, pipe.id)
    assert seen["load"] == {"General/count": 4}  # ${pipeline.count}, resolved
    assert seen["total"]["General/source"] == steps["load"].id  # ${load.id}
    assert seen["total"]["General/numbers_url"].startswith("file://")  # the artifact's URL
    assert steps["load"].hyperparams["General"]["count"] == 6
    assert artifact_value(store, pipe.id, "pipeline_total") == sum(range(6))
    done = seen["total done"]
    assert done["executed"] == done["job_task"] == steps["total"].id
    assert done["completed"] and done["task_name"] == "total" and done["started"]
    node = pipe.get_pipeline_dag()["total"]
    assert node.parameters["General/source"] == "${load.id}"  # as given
    assert node.monitor_artifacts == [("total", "pipeline_total")] and node.parents == ["load"]


def test_output_uri_of_pipeline_components_and_task_init_is_where_artifacts_go(
    home, store, tmp_path
):
    from agent.pipeline import PipelineDecorator

    elsewhere, pipeline_dir = tmp_path / "bucket-a", tmp_path / "bucket-b"

    @PipelineDecorator.component(return_values=["x"], output_uri=str(elsewhere))
    def make():
        return [1, 2, 3]

    @PipelineDecorator.component(return_values=["y"])
    def grow(x):
        return x + [4]

    @PipelineDecorator.pipeline(name="uri", project="ctl", output_uri=str(pipeline_dir))
    def run():
        return grow(make())

    PipelineDecorator.debug_pipeline()
    run()
    pipe = store.query_tasks(type="controller", name="uri")[0]
    steps = steps_of(store, pipe.id)
    assert steps["make"].output_uri == str(elsewhere)
    assert steps["make"].artifacts["x"].uri.startswith(elsewhere.as_uri())
    assert steps["grow"].artifacts["y"].uri.startswith(pipeline_dir.as_uri())  # the default
    assert artifact_value(store, steps["grow"].id, "y") == [1, 2, 3, 4]

    task = Task.init(project_name="ctl", task_name="uri-init", output_uri=str(elsewhere))
    try:
        assert task.upload_artifact("z", {"a": 1}).url.startswith(elsewhere.as_uri())
    finally:
        task.close()
