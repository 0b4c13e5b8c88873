"""Pipelines the tests run in process (debug mode) or with local step processes."""

from __future__ import annotations

from agent.automation.controller import PipelineDecorator


@PipelineDecorator.component(return_values=["value"])
def produce(value: int = 1):
    return value


@PipelineDecorator.component(return_values=["value"])
def increment(value):
    return value + 1


@PipelineDecorator.component(return_values=["value"])
def fail(message: str = "boom"):
    raise RuntimeError(message)


@PipelineDecorator.component(return_values=["value"], continue_on_fail=True)
def fail_tolerated(message: str = "tolerated"):
    raise RuntimeError(message)


@PipelineDecorator.component(return_values=["value"])
def wait_for_file(path: str, timeout: float = 60.0):
    import os
    import time

    open(path + ".started", "w").close()
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            raise TimeoutError(path)
        time.sleep(0.05)
    return "arrived"


@PipelineDecorator.component(return_values=["value"])
def fail_once_started(path: str):
    import os
    import time

    while not os.path.exists(path + ".started"):
        time.sleep(0.02)
    raise RuntimeError("failing while the other branch runs")


@PipelineDecorator.pipeline(name="tolerant", project="flows", version="1", return_value="good")
def tolerant():
    bad = fail_tolerated()
    increment(bad)  # skipped: its parent failed
    return increment(produce(1))


@PipelineDecorator.pipeline(name="keep_going", project="flows", version="1")
def keep_going():
    bad = fail()
    increment(bad)  # skipped
    increment(produce(1))  # unrelated: still runs


@PipelineDecorator.pipeline(name="abort", project="flows", version="1", abort_on_failure=True)
def abort(path: str = "/nonexistent"):
    wait_for_file(path)
    fail_once_started(path)
    increment(produce(1))


@PipelineDecorator.pipeline(name="uses_failed", project="flows", version="1")
def uses_failed_value():
    bad = fail("broken input")
    return bad + 1


@PipelineDecorator.component(return_values=["value"], retry_on_failure=2, retry_delay=0.05)
def flaky(path: str):
    import os

    attempts = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as fh:
        fh.write(str(attempts + 1))
    if attempts < 2:
        raise RuntimeError(f"attempt {attempts + 1} fails")
    return attempts + 1


@PipelineDecorator.pipeline(name="retries", project="flows", version="1", return_value="attempts")
def retries(path: str = "/nonexistent"):
    return flaky(path)


@PipelineDecorator.component(return_values=["value"])
def flaky_unless_retried(path: str):
    import pathlib

    marks = pathlib.Path(path)
    marks.write_text(marks.read_text() + "x" if marks.exists() else "x")
    if len(marks.read_text()) < 3:  # fails twice: runs again only as the pipeline says
        raise RuntimeError("not yet")
    return len(marks.read_text())


@PipelineDecorator.pipeline(
    name="retries_by_default", project="flows", version="1", return_value="attempts",
    retry_on_failure=2,
)  # fmt: skip
def retries_by_default(path: str = "/nonexistent"):
    return flaky_unless_retried(path)
