"""The daemon loop in process, one ``loop_once`` at a time, with an injected clock."""

from __future__ import annotations

import signal
import time

import pytest

from agent.core.models import TaskStatus
from agent.daemon.loop import Daemon, Heartbeat, default_worker_id
from agent.daemon.signals import StopSignals
from agent.daemon.stats import GpuStats, MachineStats
from tests.daemon.daemon_support import make_task, worker_of


class CompletingRunner:
    """Runs a task by completing it, and remembers the order."""

    def __init__(self, store, ran: list[str]):
        self.store = store
        self.ran = ran

    def run(self, task_id: str) -> None:
        self.ran.append(self.store.get_task(task_id).name)
        self.store.set_status(task_id, TaskStatus.completed.value)


class RaisingRunner:
    def run(self, task_id: str) -> None:
        raise RuntimeError("runner bug")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _daemon(store, queues, ran=None, **kwargs) -> Daemon:
    ran = [] if ran is None else ran
    kwargs.setdefault("runner_factory", lambda: CompletingRunner(store, ran))
    kwargs.setdefault("claim_timeout_s", 0.0)
    return Daemon(store, queues, **kwargs)


def test_claims_in_queue_order_then_round_robin(store):
    for name in ("a1", "a2"):
        make_task(store, "pass", "a", name=name)
    for name in ("b1", "b2"):
        make_task(store, "pass", "b", name=name)
    ran: list[str] = []
    daemon = _daemon(store, ["a", "b"], ran, worker_id="w", order_fairness=True)
    daemon.start()
    try:
        while daemon.loop_once():
            pass
    finally:
        daemon.stop()
    assert ran == ["a1", "b1", "a2", "b2"]


def test_strict_priority_without_fairness(store):
    make_task(store, "pass", "b", name="b1")
    make_task(store, "pass", "a", name="a1")
    make_task(store, "pass", "a", name="a2")
    ran: list[str] = []
    daemon = _daemon(store, ["a", "b"], ran, worker_id="w")
    while daemon.loop_once():
        pass
    assert ran == ["a1", "a2", "b1"]


def test_heartbeat_only_when_due(store):
    clock = Clock()
    daemon = _daemon(store, ["q"], worker_id="w-hb", heartbeat_s=5.0, clock=clock)
    daemon.heartbeat.register()
    first = worker_of(store, "w-hb").last_heartbeat

    daemon.loop_once(now=clock.now + 1)
    assert worker_of(store, "w-hb").last_heartbeat == first

    time.sleep(0.01)
    daemon.loop_once(now=clock.now + 6)
    assert worker_of(store, "w-hb").last_heartbeat > first


def test_heartbeat_renews_the_running_tasks_lease(store):
    task = make_task(store, "pass", "q")
    heartbeat = Heartbeat(store, "w-lease", ["q"], lease_s=60.0)
    heartbeat.register()
    assert store.claim(["q"], "w-lease", lease_s=0.2).id == task.id

    heartbeat.beat()
    time.sleep(0.3)

    assert store.reap_expired() == []
    assert store.get_task(task.id).status == "in_progress"


def test_heartbeat_reregisters_a_forgotten_worker(store):
    heartbeat = Heartbeat(store, "w-gone", ["q"])
    heartbeat.register()
    store.unregister_worker("w-gone")
    heartbeat.beat()
    assert worker_of(store, "w-gone") is not None


def test_reaps_tasks_of_vanished_workers(store):
    task = make_task(store, "pass", "elsewhere")
    store.claim(["elsewhere"], "ghost", lease_s=0.01)
    time.sleep(0.05)
    daemon = _daemon(store, ["q"], worker_id="w-reap")

    daemon.loop_once()

    lost = store.get_task(task.id)
    assert (lost.status, lost.status_message) == ("failed", "worker lost")


def test_a_raising_runner_fails_the_task_and_the_loop_goes_on(store):
    bad = make_task(store, "pass", "q", name="bad")
    daemon = _daemon(store, ["q"], runner_factory=RaisingRunner)
    assert daemon.loop_once() == bad.id
    assert store.get_task(bad.id).status == "failed"
    assert daemon.loop_once() is None


def test_no_claim_after_a_stop_request(store):
    task = make_task(store, "pass", "q")
    signals = StopSignals()
    daemon = _daemon(store, ["q"], signals=signals)
    signals.request_stop()
    assert daemon.loop_once() is None
    assert store.get_task(task.id).status == "queued"


def test_signals_escalate_from_warm_to_cold():
    signals = StopSignals()
    signals.install()
    try:
        signal.raise_signal(signal.SIGTERM)
        assert (signals.warm, signals.cold) == (True, False)
        signal.raise_signal(signal.SIGINT)
        assert (signals.warm, signals.cold) == (True, True)
    finally:
        signals.restore()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_run_unregisters_the_worker(store):
    make_task(store, "pass", "q")
    daemon = _daemon(store, ["q"], worker_id="w-run")
    assert daemon.run(install_signals=False, max_tasks=1) == 0
    assert worker_of(store, "w-run") is None


def test_default_worker_id_is_host_and_pid():
    host, pid = default_worker_id().rsplit(":", 1)
    assert host and int(pid) > 0


def test_daemon_needs_queues(store):
    with pytest.raises(ValueError):
        _daemon(store, [])


def test_machine_stats_without_a_gpu_still_report():
    stats = MachineStats().collect()
    assert stats["memory_total_mib"] > 0 and stats["cpu_count"] >= 1
    assert 0 <= stats["disk_pct"] <= 100
    assert GpuStats().read() == [] or "gpus" in stats
