"""TaskLog's batching: the first line at once, then one append per interval, longer
while appends are slow (a busy server gets fewer, bigger batches)."""

from __future__ import annotations

import time

from agent.execution import runner
from agent.execution.runner import TaskLog


class SlowStore:
    def __init__(self, delay: float):
        self.delay = delay
        self.appends: list[tuple[float, list[str]]] = []

    def append_logs(self, task_id: str, lines: list[str]) -> int:
        time.sleep(self.delay)
        self.appends.append((time.monotonic(), list(lines)))
        return len(self.appends)


def test_the_first_line_goes_at_once_and_the_rest_wait_for_the_interval():
    store = SlowStore(0.0)
    log = TaskLog(store, "t", ship_interval=1.0)  # type: ignore[arg-type]
    log.task_lines(["one"])
    log.task_lines(["two", "three"])
    assert [lines for _, lines in store.appends] == [["one"]]
    time.sleep(1.05)
    log.flush_if_due()
    assert [lines for _, lines in store.appends] == [["one"], ["two", "three"]]


def test_a_slow_append_stretches_the_next_interval(monkeypatch):
    monkeypatch.setattr(runner, "SHIP_BACKOFF", 20)
    monkeypatch.setattr(runner, "MAX_SHIP_INTERVAL_S", 2.0)
    store = SlowStore(0.05)  # 20 x 50 ms: the next append waits 1 s, not 0.1 s
    log = TaskLog(store, "t", ship_interval=0.1)  # type: ignore[arg-type]
    log.task_lines(["one"])
    time.sleep(0.2)
    log.task_lines(["two"])
    assert len(store.appends) == 1  # past the 0.1 s interval, not past the stretched one
    time.sleep(1.0)
    log.flush_if_due()
    assert len(store.appends) == 2


def test_the_stretch_has_a_ceiling(monkeypatch):
    monkeypatch.setattr(runner, "MAX_SHIP_INTERVAL_S", 0.2)
    store = SlowStore(0.05)  # 20 x 50 ms = 1 s, capped at 0.2 s
    log = TaskLog(store, "t", ship_interval=0.1)  # type: ignore[arg-type]
    log.task_lines(["one"])
    time.sleep(0.25)
    log.task_lines(["two"])
    assert len(store.appends) == 2
