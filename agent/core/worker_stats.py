"""Reading the machine stats a worker's heartbeat carries: the keys of
:mod:`agent.daemon.stats` (``cpu_pct``, ``memory_pct`` or ``memory_used_mib`` /
``memory_total_mib``, ``gpus`` as dicts with ``utilization_pct``) and a few common
spellings of them, since any client may register a worker with its own stats.
"""

from __future__ import annotations

from typing import Any


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def first_number(stats: dict[str, Any], *keys: str) -> float | None:
    """The first of ``keys`` whose value is a number, as a float; None if none is."""
    for key in keys:
        if is_number(stats.get(key)):
            return float(stats[key])
    return None


def cpu_percent(stats: dict[str, Any]) -> float | None:
    return first_number(stats, "cpu_pct", "cpu_percent", "cpu_usage")


def memory_percent(stats: dict[str, Any]) -> float | None:
    percent = first_number(stats, "memory_pct", "memory_percent")
    if percent is not None:
        return percent
    used = first_number(stats, "memory_used_mib", "memory_used")
    total = first_number(stats, "memory_total_mib", "memory_total")
    return 100.0 * used / total if used is not None and total else None


def gpu_list(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-GPU dicts of ``stats["gpus"]`` (anything else in that list is skipped)."""
    gpus = stats.get("gpus")
    return [gpu for gpu in gpus if isinstance(gpu, dict)] if isinstance(gpus, list) else []


def gpu_utilization(gpu: dict[str, Any]) -> float | None:
    return first_number(gpu, "utilization_pct", "utilization")


def gpu_memory_percent(gpu: dict[str, Any]) -> float | None:
    used = first_number(gpu, "memory_used_mib", "memory_used")
    total = first_number(gpu, "memory_total_mib", "memory_total")
    return 100.0 * used / total if used is not None and total else None
