"""Caching (item 6): the key sees the code, arguments, input content, requirements; a hit
needs its blobs; force re-runs; a failed run re-run reuses what succeeded."""

from __future__ import annotations

import importlib.util
import itertools
import textwrap
from pathlib import Path

import pytest

from agent.automation.controller import PipelineDecorator
from agent.files.base import file_url_to_path
from tests.pipeline.support import artifact_value, pipeline_tasks, steps_of

_versions = itertools.count()

FLOW = """
from agent.automation.controller import PipelineDecorator


@PipelineDecorator.component(return_values=["text"])
def read_input(path: str):
    return open(path).read()


@PipelineDecorator.component(return_values=["size"], cache=True, packages={packages!r})
def measure(text, factor: int = 1):
    {body}


@PipelineDecorator.pipeline(name="cached", project="cache", version="1", return_value="size"{extra})
def flow(path: str, factor: int = 1):
    return measure(read_input(path), factor=factor)
"""


def load_flow(
    tmp_path: Path, body: str = "return len(text) * factor", packages=(), extra=""
) -> object:
    """The flow as a fresh module (a new file each time, so its source is read anew)."""
    path = tmp_path / f"cached_flow_{next(_versions)}.py"
    path.write_text(FLOW.format(body=body, packages=list(packages), extra=extra))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(store, module, *args, **kwargs) -> tuple[str, int]:
    """Run the flow; (status of measure, result)."""
    module.flow(*args, **kwargs)
    pipe = pipeline_tasks(store, "cached")[0]
    assert pipe.status == "completed", pipe.status_message
    return steps_of(store, pipe.id)["measure"].status, artifact_value(store, pipe.id, "size")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "input.txt"
    path.write_text("hello")
    return path


@pytest.fixture(autouse=True)
def debug_mode(home):
    PipelineDecorator.debug_pipeline()


def test_unchanged_step_is_reused_without_running(tmp_path, store, data):
    flow = load_flow(tmp_path)
    assert run(store, flow, str(data)) == ("completed", 5)
    assert run(store, flow, str(data)) == ("cached", 5)
    first, second = pipeline_tasks(store, "cached")[::-1]
    reused = steps_of(store, second.id)["measure"]
    original = steps_of(store, first.id)["measure"]
    assert reused.runtime["cached_from"] == original.id
    assert reused.artifacts["size"].sha256 == original.artifacts["size"].sha256
    dag = {n["name"]: n for n in second.runtime["pipeline"]["nodes"]}
    assert dag["measure"]["cached"] is True and dag["measure"]["status"] == "cached"


def test_changed_input_content_misses_and_same_content_hits(tmp_path, store, data):
    flow = load_flow(tmp_path)
    assert run(store, flow, str(data))[0] == "completed"
    # read_input runs again (not cached): a new task, the same content -> a hit
    assert run(store, flow, str(data))[0] == "cached"
    data.write_text("hello world")
    assert run(store, flow, str(data)) == ("completed", 11)


def test_changed_argument_misses(tmp_path, store, data):
    flow = load_flow(tmp_path)
    assert run(store, flow, str(data), factor=1) == ("completed", 5)
    assert run(store, flow, str(data), factor=3) == ("completed", 15)
    assert run(store, flow, str(data), factor=3) == ("cached", 15)


def test_changed_function_body_misses(tmp_path, store, data):
    assert run(store, load_flow(tmp_path), str(data)) == ("completed", 5)
    changed = load_flow(tmp_path, body="return len(text) * factor * 10")
    assert run(store, changed, str(data)) == ("completed", 50)


def test_changed_requirements_miss(tmp_path, store, data):
    assert run(store, load_flow(tmp_path, packages=["six==1.16.0"]), str(data))[0] == "completed"
    assert run(store, load_flow(tmp_path, packages=["six==1.16.0"]), str(data))[0] == "cached"
    assert run(store, load_flow(tmp_path, packages=["six==1.17.0"]), str(data))[0] == "completed"


def test_a_hit_whose_blobs_are_gone_is_a_miss(tmp_path, store, data):
    flow = load_flow(tmp_path)
    run(store, flow, str(data))
    step = steps_of(store, pipeline_tasks(store, "cached")[0].id)["measure"]
    file_url_to_path(step.artifacts["size"].uri).unlink()
    assert run(store, flow, str(data)) == ("completed", 5)


def test_force_rerun_by_environment_and_by_argument(tmp_path, store, data, monkeypatch):
    flow = load_flow(tmp_path)
    run(store, flow, str(data))
    monkeypatch.setenv("AGENT_PIPELINE_FORCE_RERUN", "1")
    assert run(store, flow, str(data))[0] == "completed"
    monkeypatch.delenv("AGENT_PIPELINE_FORCE_RERUN")
    assert run(store, flow, str(data))[0] == "cached"
    forced = load_flow(tmp_path, extra=", force_rerun=True")
    assert run(store, forced, str(data))[0] == "completed"


def test_local_mode_reuses_steps_of_a_debug_run(tmp_path, store, data):
    flow = load_flow(tmp_path)
    run(store, flow, str(data))
    PipelineDecorator.run_locally()
    assert run(store, flow, str(data)) == ("cached", 5)


RESUME = """
import os
from agent.automation.controller import PipelineDecorator


@PipelineDecorator.component(return_values=["value"], cache=True)
def first(calls: str):
    open(calls, "a").write("first\\n")
    return 1


@PipelineDecorator.component(return_values=["value"], cache=True)
def second(value, calls: str, flag: str):
    import os
    open(calls, "a").write("second\\n")
    if not os.path.exists(flag):
        raise RuntimeError("not yet")
    return value + 1


@PipelineDecorator.component(return_values=["value"], cache=True)
def side(calls: str):
    open(calls, "a").write("side\\n")
    return 10


@PipelineDecorator.pipeline(name="resume", project="cache", version="1", return_value="value")
def flow(calls: str, flag: str):
    side(calls)
    return second(first(calls), calls, flag)
"""


def test_rerun_of_a_failed_pipeline_reuses_what_succeeded(tmp_path, store):
    path = tmp_path / "resume_flow.py"
    path.write_text(textwrap.dedent(RESUME))
    spec = importlib.util.spec_from_file_location("resume_flow", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls, flag = tmp_path / "calls.txt", tmp_path / "flag"
    PipelineDecorator.run_locally()
    module.flow(str(calls), str(flag))
    failed = pipeline_tasks(store, "resume")[0]
    assert failed.status == "failed"
    flag.touch()
    module.flow(str(calls), str(flag))
    again = pipeline_tasks(store, "resume")[0]
    assert again.status == "completed"
    statuses = {name: t.status for name, t in steps_of(store, again.id).items()}
    assert statuses == {"side": "cached", "first": "cached", "second": "completed"}
    assert sorted(calls.read_text().split()) == ["first", "second", "second", "side"]
    assert artifact_value(store, again.id, "value") == 2
