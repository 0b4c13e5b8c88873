"""agent server sets its garbage collector for a fleet (agent/server/main.py:
tune_gc): start-up's heap frozen out of collections, young collections rarer."""

from __future__ import annotations

import json
import subprocess
import sys

from agent.server import main


def test_tune_gc_freezes_start_up_and_raises_the_young_threshold() -> None:
    # In a process of its own: a frozen heap is for good.
    code = (
        "import gc, json; from agent.server import main\n"
        "before = gc.get_freeze_count(); main.tune_gc()\n"
        "print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, frozen, threshold = json.loads(out.stdout)
    assert before == 0 and frozen > 10_000  # the modules and objects start-up made
    assert threshold[0] == main.GC_YOUNG_THRESHOLD


def test_the_server_tunes_its_collector_once_its_app_is_built(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AGENT_HOME", str(tmp_path))
    order: list[str] = []

    class Closing:
        def close(self) -> None:
            order.append("closed")

    monkeypatch.setattr(main, "build_app", lambda config: (order.append("built"), Closing()))
    monkeypatch.setattr(main, "tune_gc", lambda: order.append("tuned"))
    monkeypatch.setattr(main.uvicorn, "run", lambda app, **kw: order.append("served"))
    main.run_server(db_url=f"sqlite:///{tmp_path / 'agent.db'}", files=str(tmp_path / "files"))
    assert order == ["built", "tuned", "served", "closed"]
