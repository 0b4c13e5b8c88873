"""Summaries of a task's scalars: the last, smallest and largest value of each series."""

from __future__ import annotations

import math


def last_metrics(
    scalars: dict[str, dict[str, list[tuple[int, float]]]],
) -> dict[str, dict[str, dict[str, float]]]:
    """``{title: {series: {"last", "min", "max"}}}`` (ClearML's ``get_last_scalar_metrics``).

    "last" is the value at the highest iteration, NaN included (a diverged run shows as
    one); "min" and "max" are over the finite values and NaN when a series has none, so
    one bad step does not hide the best value.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for title, series in scalars.items():
        for name, points in series.items():
            if not points:
                continue
            last = max(points, key=lambda p: p[0])[1]
            finite = [v for _, v in points if not math.isnan(v)]
            out.setdefault(title, {})[name] = {
                "last": last,
                "min": min(finite) if finite else math.nan,
                "max": max(finite) if finite else math.nan,
            }
    return out
