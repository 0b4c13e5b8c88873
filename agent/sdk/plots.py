"""Plotly-style JSON figures for the Logger's tables, scatter, histogram and line plots.

Only the figure's JSON is built here (no plotly import); the UI renders it.
numpy arrays and pandas frames are read through their public methods
(``tolist``, ``columns``, ``itertuples``), so neither is imported.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from typing import Any

from agent.sdk.parameters import to_stored


def jsonable(value: Any) -> Any:
    """Plain JSON values for a figure (numpy scalars and arrays become lists; NaN and
    infinities null, which plotly draws as gaps)."""
    return to_stored(value, non_finite=_null)


def _null(_: float) -> None:
    return None


def layout(title: str, xaxis: str | None = None, yaxis: str | None = None, **extra: Any) -> dict:
    out: dict[str, Any] = {"title": title}
    if xaxis:
        out["xaxis"] = {"title": xaxis}
    if yaxis:
        out["yaxis"] = {"title": yaxis}
    out.update(jsonable(extra))
    return out


def table_figure(
    title: str,
    table: Any = None,
    csv_path: str | os.PathLike[str] | None = None,
    extra_layout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A table from a DataFrame (index first), a list of rows (first row = header),
    a dict of columns, or a CSV file.

    Raises:
        ValueError: neither a table nor a CSV file was given.
    """
    if csv_path is not None:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            table = list(csv.reader(fh))
    header, rows = _header_and_rows(table)
    columns = [[row[i] if i < len(row) else "" for row in rows] for i in range(len(header))]
    trace = {"type": "table", "header": {"values": header}, "cells": {"values": columns}}
    return {"data": [jsonable(trace)], "layout": layout(title, **(extra_layout or {}))}


def _header_and_rows(table: Any) -> tuple[list[Any], list[Sequence[Any]]]:
    if table is None:
        raise ValueError("report_table needs table_plot (a DataFrame or a list of rows) or csv")
    if hasattr(table, "columns") and hasattr(table, "itertuples"):  # a pandas DataFrame
        index_name = table.index.name or ""
        header = [index_name, *(str(c) for c in table.columns)]
        return header, [list(row) for row in table.itertuples(index=True, name=None)]
    if isinstance(table, dict):
        header = [str(k) for k in table]
        columns = [list(v) for v in table.values()]
        return header, [list(r) for r in zip(*columns, strict=False)]
    rows = [list(r) for r in (table.tolist() if hasattr(table, "tolist") else table)]
    return ([str(h) for h in rows[0]], rows[1:]) if rows else ([], [])


def scatter_figure(
    title: str,
    series: str,
    points: Any,
    xaxis: str | None = None,
    yaxis: str | None = None,
    labels: Sequence[str] | None = None,
    mode: str = "lines",
    extra_layout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One scatter trace from (x, y) pairs (a list of pairs or an Nx2 array)."""
    trace = _scatter_trace(series, points, mode, labels)
    return {"data": [trace], "layout": layout(title, xaxis, yaxis, **(extra_layout or {}))}


def _scatter_trace(name: str, points: Any, mode: str, labels: Sequence[str] | None) -> dict:
    pairs = jsonable(points)
    trace: dict[str, Any] = {
        "type": "scatter",
        "name": name,
        "mode": _plotly_mode(mode),
        "x": [p[0] for p in pairs],
        "y": [p[1] for p in pairs],
    }
    if labels:
        trace["text"] = list(labels)
    return trace


def _plotly_mode(mode: str) -> str:
    # ClearML says "line"/"markers"/"lines+markers"; plotly wants "lines".
    return "lines" if mode in ("line", "lines") else mode


def histogram_figure(
    title: str,
    series: str,
    values: Any,
    labels: Sequence[str] | None = None,
    xlabels: Sequence[str] | None = None,
    xaxis: str | None = None,
    yaxis: str | None = None,
    mode: str | None = None,
    extra_layout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Bars of ``values`` (one series; a 2-D ``values`` gives one trace per column; what
    ``np.histogram`` returns, ``(counts, bin_edges)``, gives the counts at the bins' centers)."""
    histogram = _counts_and_edges(values)
    data = histogram[0] if histogram else jsonable(values)
    if data and isinstance(data[0], list):
        columns = [list(col) for col in zip(*data, strict=False)]
        names = list(labels) if labels else [f"{series} {i}" for i in range(len(columns))]
    else:
        columns, names = [data], [series]
    if xlabels:
        x = list(xlabels)
    elif histogram:
        edges = histogram[1]
        x = [(low + high) / 2 for low, high in zip(edges, edges[1:], strict=False)]
    else:
        x = list(range(len(columns[0]) if columns else 0))
    traces = [
        {"type": "bar", "name": n, "x": x, "y": col} for n, col in zip(names, columns, strict=False)
    ]
    extra = {"barmode": mode or "group", **(extra_layout or {})}
    return {"data": traces, "layout": layout(title, xaxis, yaxis, **extra)}


def _counts_and_edges(values: Any) -> tuple[list, list] | None:
    """``(counts, bin_edges)`` when ``values`` is a pair as ``np.histogram`` returns (one
    more edge than counts), else None."""
    if not isinstance(values, tuple) or len(values) != 2:
        return None
    counts, edges = (jsonable(v) for v in values)
    if not (isinstance(counts, list) and isinstance(edges, list)):
        return None
    if len(edges) != len(counts) + 1 or any(isinstance(c, list) for c in counts):
        return None
    return counts, edges


def line_figure(
    title: str,
    series: Iterable[Any],
    xaxis: str | None = None,
    yaxis: str | None = None,
    mode: str = "lines",
    reverse_xaxis: bool = False,
    extra_layout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Several lines; each series is ``{"name", "data", "labels"}``, ``(name, data)``
    or an object with ``.name`` and ``.data`` (ClearML's ``SeriesInfo``)."""
    traces = []
    for item in series:
        name, data, labels = _series_parts(item)
        traces.append(_scatter_trace(name, data, mode, labels))
    fig_layout = layout(title, xaxis, yaxis, **(extra_layout or {}))
    if reverse_xaxis:
        fig_layout.setdefault("xaxis", {})["autorange"] = "reversed"
    return {"data": traces, "layout": fig_layout}


def _series_parts(item: Any) -> tuple[str, Any, Sequence[str] | None]:
    if isinstance(item, dict):
        return str(item.get("name", "")), item["data"], item.get("labels")
    if isinstance(item, (tuple, list)):
        return str(item[0]), item[1], (item[2] if len(item) > 2 else None)
    return str(item.name), item.data, getattr(item, "labels", None)


def plotly_figure(figure: Any) -> dict[str, Any]:
    """A plotly figure (object or dict) as a JSON dict."""
    for method in ("to_plotly_json", "to_dict"):
        if hasattr(figure, method):
            figure = getattr(figure, method)()
            break
    if not isinstance(figure, dict):
        raise TypeError(
            f"report_plotly needs a plotly figure or a dict, not {type(figure).__name__}"
        )
    return jsonable(figure)


def confusion_matrix_figure(
    title: str,
    series: str,
    matrix: Any,
    xaxis: str | None = None,
    yaxis: str | None = None,
    xlabels: Sequence[str] | None = None,
    ylabels: Sequence[str] | None = None,
    yaxis_reversed: bool = False,
    comment: str | None = None,
    extra_layout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A heatmap of a 2-D ``matrix`` (rows are y, columns x), labelled as given."""
    z = _matrix(matrix, "report_confusion_matrix")
    trace: dict[str, Any] = {"type": "heatmap", "name": series, "z": z}
    if xlabels:
        trace["x"] = list(xlabels)
    if ylabels:
        trace["y"] = list(ylabels)
    fig_layout = layout(title, xaxis, yaxis, **_with_comment(extra_layout, comment))
    if yaxis_reversed:
        fig_layout.setdefault("yaxis", {})["autorange"] = "reversed"
    return {"data": [jsonable(trace)], "layout": fig_layout}


def surface_figure(
    title: str,
    series: str,
    matrix: Any,
    xaxis: str | None = None,
    yaxis: str | None = None,
    zaxis: str | None = None,
    xlabels: Sequence[str] | None = None,
    ylabels: Sequence[str] | None = None,
    camera: Sequence[float] | None = None,
    comment: str | None = None,
    extra_layout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A 3-D surface of a 2-D ``matrix`` of heights; ``camera`` is the eye's (x, y, z)."""
    trace: dict[str, Any] = {
        "type": "surface",
        "name": series,
        "z": _matrix(matrix, "report_surface"),
    }
    if xlabels:
        trace["x"] = list(xlabels)
    if ylabels:
        trace["y"] = list(ylabels)
    scene = _scene(xaxis, yaxis, zaxis)
    if camera is not None:
        x, y, z = (float(c) for c in camera)
        scene["camera"] = {"eye": {"x": x, "y": y, "z": z}}
    fig_layout = layout(title, scene=scene, **_with_comment(extra_layout, comment))
    return {"data": [jsonable(trace)], "layout": fig_layout}


def scatter3d_figure(
    title: str,
    series: str,
    points: Any,
    xaxis: str | None = None,
    yaxis: str | None = None,
    zaxis: str | None = None,
    labels: Sequence[str] | None = None,
    mode: str = "markers",
    fill: bool = False,
    comment: str | None = None,
    extra_layout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Points in 3-D from (x, y, z) triples (a list or an Nx3 array); a list of such lists
    gives one trace each."""
    data = jsonable(points)
    groups = data if data and _is_points(data[0]) else [data]
    traces = []
    for i, group in enumerate(groups):
        if any(len(p) != 3 for p in group):
            raise ValueError("report_scatter3d needs (x, y, z) triples")
        trace: dict[str, Any] = {
            "type": "scatter3d",
            "name": series if len(groups) == 1 else f"{series} {i}",
            "mode": _plotly_mode(mode),
            "x": [p[0] for p in group],
            "y": [p[1] for p in group],
            "z": [p[2] for p in group],
        }
        if labels:
            trace["text"] = list(labels)
        if fill:
            trace["surfaceaxis"] = 2
        traces.append(trace)
    fig_layout = layout(
        title, scene=_scene(xaxis, yaxis, zaxis), **_with_comment(extra_layout, comment)
    )
    return {"data": traces, "layout": fig_layout}


def image_figure(title: str, url: str) -> dict[str, Any]:
    """A figure showing one picture (a matplotlib figure reported as a plot)."""
    picture = {
        "source": url, "xref": "paper", "yref": "paper", "x": 0, "y": 1,
        "sizex": 1, "sizey": 1, "xanchor": "left", "yanchor": "top", "sizing": "contain",
    }  # fmt: skip
    hidden = {"visible": False}
    return {
        "data": [],
        "layout": {"title": title, "images": [picture], "xaxis": hidden, "yaxis": hidden},
    }


def _matrix(matrix: Any, what: str) -> list[list[Any]]:
    rows = jsonable(matrix)
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
        raise ValueError(f"{what} needs a 2-D matrix (a list of rows or a 2-D array)")
    return rows


def _is_points(item: Any) -> bool:
    return isinstance(item, list) and bool(item) and isinstance(item[0], list)


def _scene(xaxis: str | None, yaxis: str | None, zaxis: str | None) -> dict[str, Any]:
    names = {"xaxis": xaxis, "yaxis": yaxis, "zaxis": zaxis}
    return {axis: {"title": name} for axis, name in names.items() if name}


def _with_comment(extra_layout: dict[str, Any] | None, comment: str | None) -> dict[str, Any]:
    extra = dict(extra_layout or {})
    if comment:
        extra.setdefault("annotations", []).append(
            {
                "text": comment,
                "xref": "paper",
                "yref": "paper",
                "x": 0,
                "y": -0.15,
                "showarrow": False,
            }
        )
    return extra
