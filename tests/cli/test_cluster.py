"""``agent queues`` and ``agent workers``."""

from __future__ import annotations

import json

import pytest

from agent.cli.cluster import summarize_stats


@pytest.fixture
def cluster(backend, make_task, running_task):
    """Queues default (2 waiting) and gpu (empty); workers w1 (busy) and w2 (idle)."""
    running = running_task(queue="gpu", worker="w1")
    for _ in range(2):
        backend.enqueue(make_task().id, "default")
    backend.register_worker("w1", ["gpu", "default"], stats={"cpu_pct": 50, "gpus": []})
    backend.register_worker(
        "w2", ["default"], stats={"cpu_pct": 12.5, "memory_used_mib": 2, "memory_total_mib": 8}
    )
    return running


def test_queues_json(invoke, cluster):
    result = invoke("queues", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["default"]["length"] == 2 and rows["default"]["workers"] == ["w1", "w2"]
    assert rows["gpu"]["length"] == 0 and rows["gpu"]["workers"] == ["w1"]
    assert {"id", "name", "created", "length", "workers"} == set(rows["gpu"])


def test_queues_table(invoke, cluster):
    out = invoke("queues").stdout
    default = next(line for line in out.splitlines() if "default" in line)
    assert "2" in default and "w1, w2" in default


def test_workers_json(invoke, cluster):
    result = invoke("workers", "--json")
    assert result.exit_code == 0, result.stderr
    workers = {w["id"]: w for w in json.loads(result.stdout)}
    assert workers["w1"]["tasks"] == [cluster.id] and workers["w2"]["tasks"] == []
    assert workers["w1"]["queues"] == ["gpu", "default"]
    assert workers["w2"]["stats"]["cpu_pct"] == 12.5


def test_workers_table(invoke, cluster):
    out = invoke("workers").stdout
    w1 = next(line for line in out.splitlines() if " w1 " in line)
    assert "gpu, default" in w1 and "cpu 50%" in w1 and cluster.id[:8] in w1 and "0s ago" in w1
    w2 = next(line for line in out.splitlines() if " w2 " in line)
    assert "cpu 12% mem 25%" in w2


def test_empty_cluster(invoke):
    assert invoke("queues").stderr.startswith("no queues yet")
    assert invoke("workers").stderr.startswith("no workers registered")
    assert json.loads(invoke("workers", "--json").stdout) == []


@pytest.mark.parametrize(
    "stats, summary",
    [
        ({}, "-"),
        ({"cpu_pct": 3.2, "memory_pct": 71.6, "cpu_count": 8}, "cpu 3% mem 72%"),
        ({"cpu_percent": 1, "memory_used": 1, "memory_total": 4}, "cpu 1% mem 25%"),
        (
            {"cpu_pct": 90, "gpus": [{"utilization_pct": 20}, {"utilization": 60}, "junk"]},
            "cpu 90% gpu 3x 40%",
        ),
        ({"gpus": [{"name": "A100"}]}, "gpu 1x"),
        ({"gpu_utilization": 33}, "gpu 33%"),
        ({"load": 1.5, "disk": 40, "host": "x", "flag": True}, "load=1.5 disk=40"),
    ],
)
def test_summarize_stats(stats, summary):
    assert summarize_stats(stats) == summary
