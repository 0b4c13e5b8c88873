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
    store = SlowStore(0.05)  # 20 x 50 ms: the next append waits 1 s (+-25%), not 0.1 s
    log = TaskLog(store, "t", ship_interval=0.1)  # type: ignore[arg-type]
    log.task_lines(["one"])
    time.sleep(0.2)
    log.task_lines(["two"])
    assert len(store.appends) == 1  # past the 0.1 s interval, not past the stretched one
    time.sleep(1.15)
    log.flush_if_due()
    assert len(store.appends) == 2


def test_the_stretch_has_a_ceiling(monkeypatch):
    monkeypatch.setattr(runner, "MAX_SHIP_INTERVAL_S", 0.2)
    store = SlowStore(0.05)  # 20 x 50 ms = 1 s, capped at 0.2 s (+-25%)
    log = TaskLog(store, "t", ship_interval=0.1)  # type: ignore[arg-type]
    log.task_lines(["one"])
    time.sleep(0.3)
    log.task_lines(["two"])
    assert len(store.appends) == 2


def test_tasks_slowed_at_once_do_not_come_back_at_once(monkeypatch):
    """A slow moment of the server stretches every task's interval alike; the jitter
    spreads their next appends, so they do not hit the server again as one wave."""
    monkeypatch.setattr(runner, "MAX_SHIP_INTERVAL_S", 2.0)
    store = SlowStore(0.05)  # every append 50 ms: stretched to 1 s, +-25%
    waits = []
    for _ in range(20):
        log = TaskLog(store, "t", ship_interval=0.1)  # type: ignore[arg-type]
        log.task_lines(["one"])
        waits.append(log._next_ship - store.appends[-1][0])
    assert all(0.7 < wait < 1.3 for wait in waits)
    assert max(waits) - min(waits) > 0.1


def test_one_slow_append_among_quick_ones_stretches_little(monkeypatch):
    """The stretch follows the appends' average: one slow moment of the server does not
    send a task to the ceiling (where the rest of the fleet would be sent too)."""
    monkeypatch.setattr(runner, "SHIP_JITTER", 0.0)
    store = SlowStore(0.0)
    log = TaskLog(store, "t", ship_interval=0.01)  # type: ignore[arg-type]
    for _ in range(5):
        log.flush_if_due()
        log.task_lines(["quick"])
        time.sleep(0.02)
    store.delay = 0.05  # 20 x 50 ms would be 1 s; the average stretches it to about 0.2 s
    log.task_lines(["slow"])
    log.flush()
    wait = log._next_ship - (store.appends[-1][0] - 0.05)
    assert 0.1 < wait < 0.5
