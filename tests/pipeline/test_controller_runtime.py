"""Running pipelines: stop, time limits, external abort, reports to the pipeline task,
the DAG while it runs, callbacks (items 5, 7, 9)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from agent.automation.controller import PipelineDecorator
from agent.pipeline import PipelineController
from tests.pipeline.support import artifact_value, steps_of, wait_for


def wait_for_path(path: str, timeout: float = 60.0) -> str:
    import os
    import time

    open(path + ".started", "w").close()
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            raise TimeoutError(path)
        time.sleep(0.05)
    return "arrived"


def sleep_for(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def save_model(path: str) -> str:
    from agent.pipeline import PipelineController

    with open(path, "w") as fh:
        fh.write("weights")
    PipelineController.upload_model("final_weights", path)
    return "saved"


def read_own_dag(value: int) -> str:
    """Wait until the pipeline's DAG shows this step running after its parent."""
    import time

    from agent import Task

    me = Task.current_task()
    deadline = time.time() + 20
    while time.time() < deadline:
        dag = Task.get_task(me.parent).data.runtime.get("pipeline", {})
        nodes = {n["name"]: n for n in dag.get("nodes", [])}
        mine, parent = nodes.get("watch", {}), nodes.get("first", {})
        if mine.get("status") == "in_progress" and parent.get("status") == "completed":
            return f"{mine['task_id'] == me.id}"
        time.sleep(0.05)
    raise AssertionError(f"the DAG never showed this step running: {dag}")


def plus_one(value: int) -> int:
    return value + 1


def test_the_dag_is_reported_while_the_pipeline_runs(home, store):
    pipe = PipelineController(name="live-dag", project="ctl")
    pipe.add_function_step("first", plus_one, {"value": 1}, ["value"])
    pipe.add_function_step("watch", read_own_dag, {"value": "${first.value}"}, ["seen"])
    assert pipe.start_locally(run_pipeline_steps_locally=True)
    watch = steps_of(store, pipe.id)["watch"]
    assert artifact_value(store, watch.id, "seen") == "True"


def test_time_limit_stops_a_step_and_fails_the_pipeline(home, store):
    pipe = PipelineController(name="limited", project="ctl")
    pipe.add_function_step("slow", sleep_for, {"seconds": 60}, ["slept"], time_limit=1)
    started = time.monotonic()
    assert not pipe.start_locally(run_pipeline_steps_locally=True)
    assert time.monotonic() - started < 20
    node = pipe.get_pipeline_dag()["slow"]
    assert node.status == "failed" and "time limit" in node.status_message
    assert store.get_task(node.task_id).status == "stopped"
    assert store.get_task(pipe.id).status == "failed"


def test_stop_ends_the_running_steps(home, store, tmp_path):
    pipe = PipelineController(name="stoppable", project="ctl")
    target = str(tmp_path / "never")
    pipe.add_function_step("waiting", wait_for_path, {"path": target}, ["value"])
    pipe.add_function_step("after", plus_one, {"value": "${waiting.value}"}, ["value"])
    runner = threading.Thread(
        target=pipe.start_locally, kwargs={"run_pipeline_steps_locally": True}
    )
    runner.start()
    wait_for(lambda: Path(target + ".started").exists(), 30, "the step to start")
    assert pipe.is_running()
    pipe.stop()
    runner.join(30)
    assert not pipe.is_running() and not pipe.is_successful()
    dag = pipe.get_pipeline_dag()
    assert dag["waiting"].status == "stopped" and dag["after"].status == "skipped"
    assert store.get_task(pipe.id).status == "stopped"


def test_aborting_the_pipeline_task_stops_its_steps(home, store, tmp_path):
    """``agent abort PIPELINE`` sets the pipeline task stopped: the controller notices."""
    pipe = PipelineController(name="aborted", project="ctl")
    target = str(tmp_path / "never")
    pipe.add_function_step("waiting", wait_for_path, {"path": target}, ["value"])
    runner = threading.Thread(
        target=pipe.start_locally, kwargs={"run_pipeline_steps_locally": True}
    )
    runner.start()
    wait_for(lambda: Path(target + ".started").exists(), 30, "the step to start")
    store.set_status(pipe.id, "stopped", "aborted by a test")
    runner.join(30)
    assert not runner.is_alive()
    step = steps_of(store, pipe.id)["waiting"]
    assert step.status == "stopped"
    assert store.get_task(pipe.id).status == "stopped"


def test_a_step_uploads_a_model_to_the_pipeline(home, store, tmp_path):
    pipe = PipelineController(name="models", project="ctl")
    pipe.add_function_step("train", save_model, {"path": str(tmp_path / "w.bin")}, ["status"])
    assert pipe.start_locally(run_pipeline_steps_locally=True)
    from agent import Task

    model = Task.get_task(pipe.id).models["output"]["final_weights"]
    assert Path(model.get_weights()).read_text() == "weights"
    assert (tmp_path / "w.bin").exists()  # the user's file stays


@PipelineDecorator.component(return_values=["thread"])
def thread_name():
    import threading

    return threading.current_thread().name


@PipelineDecorator.pipeline(name="debug-thread", project="ctl", version="1", return_value="thread")
def debug_thread():
    return thread_name()


def test_debug_mode_runs_components_in_the_calling_thread(home, store):
    """Synchronous, in process: a breakpoint in a component stops the caller's thread."""
    PipelineDecorator.debug_pipeline()
    debug_thread()
    pipe = store.query_tasks(type="controller", name="debug-thread")[0]
    assert artifact_value(store, pipe.id, "thread") == threading.current_thread().name


@pytest.mark.slow
def test_start_with_callbacks_runs_steps_on_agents(remote):
    created, completed = [], []

    def on_created(pipeline, node, parameters):
        created.append(node.name)
        return node.name != "vetoed"

    def on_completed(pipeline, node):
        completed.append((node.name, node.status))

    pipe = PipelineController(name="callbacks", project="ctl", default_queue="default")
    pipe.add_function_step("first", plus_one, {"value": 1}, ["value"])
    pipe.add_function_step("second", plus_one, {"value": "${first.value}"}, ["value"])
    pipe.add_function_step("vetoed", plus_one, {"value": 5}, ["value"])
    assert pipe.start(
        queue=None, step_task_created_callback=on_created, step_task_completed_callback=on_completed
    )
    assert sorted(created) == ["first", "second", "vetoed"]
    assert sorted(completed) == [("first", "completed"), ("second", "completed")]
    steps = steps_of(remote.store, pipe.id)
    assert steps["vetoed"].status == "skipped"
    assert artifact_value(remote.store, steps["second"].id, "value") == 3
    assert all(steps[n].worker for n in ("first", "second"))


@PipelineDecorator.component(return_values=["pipeline_id"])
def current_pipeline_id():
    from agent import Task

    return Task.current_task().parent


@PipelineDecorator.pipeline(name="current", project="ctl", version="1", return_value="same")
def current_task_pipeline():
    from agent import Task

    me = Task.current_task()
    return me.id == current_pipeline_id() and me.task_type == "controller"


def test_current_task_is_the_pipeline_in_its_logic_and_the_step_in_a_step(home, store):
    PipelineDecorator.debug_pipeline()
    current_task_pipeline()
    pipe = store.query_tasks(type="controller", name="current")[0]
    assert artifact_value(store, pipe.id, "same") is True


@PipelineDecorator.pipeline(
    name="here", project="ctl", version="1", return_value="value",
    pipeline_execution_queue=None, default_queue="default",
)  # fmt: skip
def controller_here():
    return plus_one_component(41)


@PipelineDecorator.component(return_values=["value"])
def plus_one_component(value: int):
    return value + 1


@pytest.mark.slow
def test_pipeline_execution_queue_none_runs_the_logic_here_and_steps_on_agents(remote):
    controller_here()  # remote mode (the default), but no queue for the controller
    pipe = remote.store.query_tasks(type="controller", name="here")[0]
    assert pipe.status == "completed" and pipe.worker is None
    step = steps_of(remote.store, pipe.id)["plus_one_component"]
    assert step.worker and step.queue == "default"
    assert artifact_value(remote.store, pipe.id, "value") == 42
