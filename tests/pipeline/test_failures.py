"""Failure semantics (item 5): continue_on_fail, abort_on_failure off and on, the value of
a failed step, and retries with a delay."""

from __future__ import annotations

import logging
import time

import pytest

from agent.automation.controller import PipelineDecorator
from agent.pipeline import StepFailedError
from tests.pipeline import flows
from tests.pipeline.support import artifact_value, pipeline_tasks, steps_of


def _statuses(store, pipeline_id: str) -> dict[str, str]:
    return {name: task.status for name, task in steps_of(store, pipeline_id).items()}


def _dag_statuses(task) -> dict[str, str]:
    return {node["name"]: node["status"] for node in task.runtime["pipeline"]["nodes"]}


@pytest.mark.parametrize("mode", ["debug", "local"])
def test_continue_on_fail_skips_descendants_and_the_pipeline_completes(home, store, mode):
    getattr(PipelineDecorator, "debug_pipeline" if mode == "debug" else "run_locally")()
    flows.tolerant()
    pipe = pipeline_tasks(store, "tolerant")[0]
    assert pipe.status == "completed"
    assert _statuses(store, pipe.id) == {
        "fail_tolerated": "failed",
        "increment": "skipped",
        "produce": "completed",
        "increment_1": "completed",
    }
    assert _dag_statuses(pipe)["increment"] == "skipped"
    assert artifact_value(store, pipe.id, "good") == 2


def test_without_abort_unrelated_branches_run_and_the_pipeline_fails(home, store, caplog):
    PipelineDecorator.run_locally()
    with caplog.at_level(logging.WARNING, logger="agent.pipeline"):
        flows.keep_going()
    pipe = pipeline_tasks(store, "keep_going")[0]
    warning = next(r.getMessage() for r in caplog.records if "step 'fail' failed" in r.getMessage())
    assert warning.count("agent logs") == 1, warning
    assert pipe.status == "failed"
    assert "fail" in pipe.status_message
    assert _statuses(store, pipe.id) == {
        "fail": "failed",
        "increment": "skipped",
        "produce": "completed",
        "increment_1": "completed",
    }


def test_abort_on_failure_stops_running_steps_at_once(home, store, tmp_path):
    PipelineDecorator.run_locally()
    started = time.monotonic()
    flows.abort(str(tmp_path / "never-written"))
    assert time.monotonic() - started < 30, "the waiting step was not stopped"
    pipe = pipeline_tasks(store, "abort")[0]
    assert pipe.status == "failed"
    statuses = _statuses(store, pipe.id)
    assert statuses["fail_once_started"] == "failed"
    assert statuses["wait_for_file"] == "stopped"


def test_using_a_failed_steps_value_raises_a_clear_error(home, store):
    PipelineDecorator.debug_pipeline()
    with pytest.raises(StepFailedError, match=r"step 'fail' failed: RuntimeError: broken input"):
        flows.uses_failed_value()
    pipe = pipeline_tasks(store, "uses_failed")[0]
    assert pipe.status == "failed"
    assert "raised StepFailedError" in pipe.status_message


@pytest.mark.parametrize("mode", ["debug", "local"])
def test_retry_on_failure_reruns_the_step_after_a_delay(home, store, tmp_path, mode):
    getattr(PipelineDecorator, "debug_pipeline" if mode == "debug" else "run_locally")()
    flows.retries(str(tmp_path / "attempts"))
    pipe = pipeline_tasks(store, "retries")[0]
    assert pipe.status == "completed"
    step = steps_of(store, pipe.id)["flaky"]
    assert step.status == "completed"
    assert step.runtime["retries"] == 2
    assert artifact_value(store, pipe.id, "attempts") == 3


@pytest.mark.parametrize("mode", ["debug", "local"])
def test_the_pipelines_retry_on_failure_is_its_components_default(home, store, tmp_path, mode):
    getattr(PipelineDecorator, "debug_pipeline" if mode == "debug" else "run_locally")()
    flows.retries_by_default(str(tmp_path / "attempts"))
    pipe = pipeline_tasks(store, "retries_by_default")[0]
    assert pipe.status == "completed", pipe.status_message
    assert steps_of(store, pipe.id)["flaky_unless_retried"].runtime["retries"] == 2
