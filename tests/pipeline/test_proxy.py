"""Proxies (item 3): every use of the value waits for the step; passing one on does not."""

from __future__ import annotations

import pickle
import threading
import time

import pytest

from agent.pipeline import StepFailedError
from agent.pipeline.dag import NodeState
from agent.pipeline.proxy import StepProxy, is_proxy, proxy_origin, resolve


class FakeNode:
    def __init__(self, state=NodeState.completed):
        self.state = state
        self.task_id = "t1"
        self.status_message = "RuntimeError: no"


class FakeRun:
    """Stands for a PipelineRun whose step ends after ``delay`` s with ``value``."""

    def __init__(self, value, delay=0.0, state=NodeState.completed):
        self.value = value
        self.node = FakeNode(state)
        self.ready = threading.Event()
        self.waits = 0
        threading.Timer(delay, self.ready.set).start()

    def wait_node(self, name):
        self.waits += 1
        self.ready.wait()
        return self.node

    @property
    def artifacts(self):
        run = self

        class Index:
            def get(self, task_id, name):
                return run.value

        return Index()


@pytest.fixture(autouse=True)
def fake_loading(monkeypatch):
    monkeypatch.setattr("agent.pipeline.values.load_artifact", lambda value: value)


def test_the_value_is_used_through_every_operator():
    accuracy = StepProxy(FakeRun(0.5), "step_four", "accuracy")
    assert 100 * accuracy == 50.0 and accuracy * 100 == 50.0
    assert accuracy + 1 == 1.5 and 1 - accuracy == 0.5 and -accuracy == -0.5
    assert f"{accuracy:.2f}" == "0.50" and str(accuracy) == "0.5"
    assert bool(accuracy) and accuracy > 0.1 and round(accuracy) == 0
    assert isinstance(accuracy, float)
    items = StepProxy(FakeRun([3, 1, 2]), "s", "items")
    assert len(items) == 3 and list(items) == [3, 1, 2] and items[0] == 3 and 2 in items
    assert sorted(items) == [1, 2, 3] and items.index(1) == 1
    data = StepProxy(FakeRun({"a": 1}), "s", "data")
    assert data["a"] == 1 and dict(data) == {"a": 1}
    assert pickle.loads(pickle.dumps(items)) == [3, 1, 2]


def test_using_the_value_waits_for_the_step():
    run = FakeRun(7, delay=0.3)
    proxy = StepProxy(run, "slow", "value")
    started = time.monotonic()
    assert proxy + 1 == 8
    assert time.monotonic() - started >= 0.25
    assert run.waits == 1
    assert proxy * 2 == 14 and run.waits == 1  # loaded once


def test_passing_a_proxy_on_does_not_wait():
    run = FakeRun(7, delay=5)
    proxy = StepProxy(run, "slow", "value")
    assert is_proxy(proxy) and proxy_origin(proxy) == ("slow", "value")
    assert run.waits == 0
    run.ready.set()
    assert resolve(proxy) == 7 and resolve(3) == 3


def test_a_failed_steps_value_raises_naming_the_step():
    proxy = StepProxy(FakeRun(None, state=NodeState.failed), "train", "model")
    with pytest.raises(
        StepFailedError,
        match=r"pipeline step 'train' failed: RuntimeError: no \(see `agent logs t1`\)",
    ):
        proxy + 1
