"""Logger: batched scalars, text and plots reach the store."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pytest

from agent import Logger, Task
from agent.sdk.logger import BATCH_SIZE


@pytest.fixture
def task(backend) -> Task:
    return Task.create(project_name="p", task_name="logger")


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_scalars_are_buffered_then_flushed(task, backend):
    logger = task.get_logger()
    assert task.get_logger() is logger
    for i in range(500):
        logger.report_scalar("loss", "train", 1.0 / (i + 1), i)
        logger.report_scalar("loss", "val", np.float32(2.0), i)
    logger.report_single_value("accuracy", 0.9)
    scalars = task.get_reported_scalars()  # flushes first
    assert scalars["loss"]["train"]["x"] == list(range(500))
    assert scalars["loss"]["train"]["y"][:2] == [1.0, 0.5]
    assert scalars["loss"]["val"]["y"][-1] == 2.0
    assert scalars["Summary"]["accuracy"] == {"x": [0], "y": [0.9]}


def test_background_thread_sends_without_flush(task, backend):
    logger = Logger(task.id, backend, flush_interval=0.05)
    logger.report_scalar("t", "s", 1.0, 0)
    logger.report_text("hello", print_console=False)
    assert _wait_for(lambda: backend.get_scalars(task.id) and backend.get_logs(task.id))
    logger.close()


def test_a_full_batch_wakes_the_sender(task, backend):
    logger = Logger(task.id, backend, flush_interval=3600)
    for i in range(BATCH_SIZE):
        logger.report_scalar("t", "s", float(i), i)
    assert _wait_for(
        lambda: len(backend.get_scalars(task.id).get("t", {}).get("s", [])) == BATCH_SIZE
    )
    logger.close()


def test_report_text_levels_and_console(task, backend, capsys):
    logger = task.get_logger()
    logger.report_text("shown")
    logger.report_text("quiet\nsecond line", level=logging.WARNING, print_console=False)
    logger.report_text("bad", level="ERROR", print_console=False)
    logger.flush()
    assert capsys.readouterr().out == "shown\n"
    lines = [(line.level, line.text) for line in backend.get_logs(task.id)]
    assert lines == [
        ("info", "shown"),
        ("warning", "quiet"),
        ("warning", "second line"),
        ("error", "bad"),
    ]
    assert task.get_output_log() == "shown\nquiet\nsecond line\nbad"


def test_plots(task):
    logger = task.get_logger()
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    logger.report_table("table", "df", iteration=0, table_plot=frame)
    logger.report_table("table", "rows", table_plot=[["h1", "h2"], [1, 2]])
    logger.report_scatter2d(
        "scatter", "s", np.array([[0, 1], [1, 3]]), iteration=2, xaxis="x", mode="markers"
    )
    logger.report_histogram("hist", "h", [3, 1, 2], xlabels=["a", "b", "c"])
    logger.report_line_plot("lines", [{"name": "one", "data": [[0, 1], [1, 2]]}, ("two", [(0, 0)])])
    logger.report_plotly("raw", "r", {"data": [], "layout": {"title": "raw"}})
    plots = {(p["title"], p["series"]): p for p in task.get_reported_plots()}
    table = plots[("table", "df")]["figure"]["data"][0]
    assert table["header"]["values"] == ["", "a", "b"]
    assert table["cells"]["values"] == [[0, 1], [1, 2], ["x", "y"]]
    assert plots[("table", "rows")]["figure"]["data"][0]["cells"]["values"] == [[1], [2]]
    scatter = plots[("scatter", "s")]
    assert scatter["iteration"] == 2 and scatter["figure"]["data"][0]["y"] == [1, 3]
    assert scatter["figure"]["layout"]["xaxis"] == {"title": "x"}
    assert plots[("hist", "h")]["figure"]["data"][0] == {
        "type": "bar",
        "name": "h",
        "x": ["a", "b", "c"],
        "y": [3, 1, 2],
    }
    assert [t["name"] for t in plots[("lines", "")]["figure"]["data"]] == ["one", "two"]
    assert plots[("raw", "r")]["figure"]["layout"]["title"] == "raw"
    with pytest.raises(ValueError):
        logger.report_table("t", "s")


def test_a_histogram_from_np_histogram_has_its_counts_at_the_bin_centers(task):
    logger = task.get_logger()
    logger.report_histogram("histogram", "age", values=np.histogram([20, 30, 30, 40], bins=2))
    [plot] = task.get_reported_plots()
    assert plot["figure"]["data"] == [
        {"type": "bar", "name": "age", "x": [25.0, 35.0], "y": [1, 3]}
    ]


def test_current_logger(backend):
    assert Logger.current_logger() is None
    task = Task.init(project_name="p", task_name="t", capture_output=False)
    assert Logger.current_logger() is task.get_logger()


def test_a_diverging_loss_is_recorded_as_nan_and_summarized(task, backend, monkeypatch):
    logger = task.get_logger()
    for i, value in enumerate([1.0, 0.5, 0.25, float("nan"), float("inf")]):
        logger.report_scalar("loss", "train", value, i)
    logger.report_scalar("loss", "val", np.float64("nan"), 0)
    y = task.get_reported_scalars()["loss"]["train"]["y"]
    assert y[:3] == [1.0, 0.5, 0.25] and np.isnan(y[3]) and y[4] == float("inf")
    last = task.get_last_scalar_metrics()
    assert last["loss"]["train"] == {"last": float("inf"), "min": 0.25, "max": float("inf")}
    assert all(np.isnan(v) for v in last["loss"]["val"].values())

    from agent.sdk import logger as logger_module

    monkeypatch.setattr(logger_module, "_stand_ins", {})
    Logger.set_reporting_nan_value(0.0)  # ClearML's switch: a stand-in for NaN
    logger.report_scalar("loss", "train", float("nan"), 5)
    assert task.get_reported_scalars()["loss"]["train"]["y"][5] == 0.0
