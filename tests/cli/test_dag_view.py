"""``render_dag``: a pipeline DAG as a layered, coloured rich table."""

from __future__ import annotations

import io
import re

from rich.console import Console

from agent.cli.dag_view import render_dag

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _text(renderable, styles: bool = False) -> str:
    console = Console(
        file=io.StringIO(), width=160, force_terminal=styles, color_system="standard", record=True
    )
    console.print(renderable)
    return console.export_text(styles=styles)


def _node(name, parents=(), status="completed", **extra):
    return {"name": name, "parents": list(parents), "status": status, **extra}


def _row(text: str, step: str) -> str:
    """The line of ``step`` (ANSI codes kept when the text has them)."""
    return next(line for line in text.splitlines() if f"● {step} " in ANSI.sub("", line))


DIAMOND = {
    "nodes": [
        _node("pick", ["train_a", "train_b"], status="pending"),
        _node("train_b", ["load"], status="failed", task_id="b" * 32, queue="cpu"),
        _node(
            "load", status="completed", cached=True, task_id="a" * 32, started=10, completed=12.5
        ),
        _node("train_a", ["load"], status="in_progress", task_id="c" * 32, queue="gpu"),
    ]
}


def test_layers_follow_the_longest_chain_of_parents():
    text = _text(render_dag(DIAMOND))
    lines = text.splitlines()
    order = [next(i for i, line in enumerate(lines) if f"● {n} " in line) for n in
             ("load", "train_b", "train_a", "pick")]  # fmt: skip
    assert order == sorted(order)  # stage 1, then stage 2 in input order, then stage 3
    assert _row(text, "load").split("│")[1].strip() == "1"
    assert _row(text, "train_b").split("│")[1].strip() == "2"
    assert _row(text, "train_a").split("│")[1].strip() == ""  # same stage, label once
    assert _row(text, "pick").split("│")[1].strip() == "3"


def test_rows_show_status_task_queue_time_and_parents():
    text = _text(render_dag(DIAMOND))
    load = _row(text, "load")
    assert "completed (cached)" in load and "aaaaaaaa" in load and "2.5s" in load
    assert "a" * 9 not in load  # ids are shortened
    train_b = _row(text, "train_b")
    assert "failed" in train_b and "bbbbbbbb" in train_b and "cpu" in train_b
    assert "train_a, train_b" in _row(text, "pick")
    assert "4 steps: 1 cached, 1 in_progress, 1 pending, 1 failed" in text


def test_statuses_are_coloured():
    text = _text(render_dag(DIAMOND), styles=True)
    assert "\x1b[1;31mfailed" in _row(text, "train_b")  # bold red
    assert "\x1b[33min_progress" in _row(text, "train_a")  # yellow
    assert "\x1b[32mcompleted" in _row(text, "load")  # green


def test_edges_add_parents():
    dag = {"nodes": [_node("b"), _node("a")], "edges": [["a", "b"], ["a", "missing"], "ab"]}
    text = _text(render_dag(dag))
    assert _row(text, "a").split("│")[1].strip() == "1"
    assert _row(text, "b").split("│")[1].strip() == "2"


def test_cycles_and_unknown_parents_do_not_hang():
    dag = {
        "nodes": [
            _node("x", ["y"]),
            _node("y", ["x"]),
            _node("z", ["ghost"]),
            _node("self", ["self"]),
        ]
    }
    text = _text(render_dag(dag))
    assert _row(text, "z").split("│")[1].strip() == "1"  # unknown parent: listed, not followed
    assert "ghost" in _row(text, "z")
    lines = text.splitlines()
    assert lines.index(_row(text, "self")) == lines.index(_row(text, "z")) + 1  # stage 1 too
    assert _row(text, "x").split("│")[1].strip() == "cycle"
    assert "● y " in text


def test_partial_and_empty_reports():
    assert "no steps" in _text(render_dag({"nodes": []}))
    assert "no steps" in _text(render_dag({}))
    text = _text(
        render_dag({"nodes": [{"task_id": None}, "junk", {"name": "only", "parents": "first"}]})
    )
    assert "● step-1 " in text and "pending" in text
    assert "first" in _row(text, "only")


def test_nodes_as_a_mapping():
    dag = {"nodes": {"prep": {"status": "completed"}, "fit": {"parents": ["prep"]}}}
    text = _text(render_dag(dag))
    assert _row(text, "fit").split("│")[1].strip() == "2"
