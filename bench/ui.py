"""Web UI benchmark: server times of the pages on a big store, and the browser's DAG and
console times.

    python bench/ui.py [--tasks 10000] [--steps 1000] [--requests 20] [--workers 50]
                       [--log-lines 200000] [--only server|browser]

The store (an embedded SQLite one in a temp ``AGENT_HOME``) holds ``--tasks`` tasks in
several projects and statuses: plain ones, pipeline controllers with a few runs each,
and one controller whose ``runtime["pipeline"]`` DAG has ``--steps`` steps (their step
tasks too, one of them running). A real ``agent ui`` serves it.

(a) server time: p50 and p95 of ``--requests`` GETs each of ``/tasks`` (plain, filtered,
    a later page), ``/pipelines``, a pipeline's runs, the big pipeline's task page and
    its DAG JSON, sent with the API's own client (:class:`agent.store.transport.JsonTransport`,
    keep-alive http.client). Target for ``/tasks`` and ``/pipelines``: p95 < 150 ms.
(b) DAG draw: Playwright on Chromium opens the big pipeline's page; the time from
    navigation start to the frame after its last ``[data-step]`` node is in the DOM
    (``performance.now()`` in the page). Target < 1 s. Also: dagre's layout alone.
(c) console latency: the running step's Console tab is open; a line appended through the
    store, until the browser shows it. Target < 1 s (the worst of ``--console-samples``).
(d) the live parts' cheap polls, in (a)'s table: ``/workers/stats.json`` (``--workers``
    workers holding a full stats history, with 8 GPUs each: the page's first load, and the
    poll for samples after the newest), a task's ``status.json``, the Console tab of a
    ``--log-lines`` log (its tail) and a search of it; and the store's heartbeat with stats
    (one sample kept, the oldest dropped), in process.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from agent.core.models import Task  # noqa: E402
from agent.store.base import WORKER_STATS_KEPT  # noqa: E402
from agent.store.sql import SqlBackend  # noqa: E402
from agent.store.transport import JsonTransport  # noqa: E402

PROJECTS = ("vision", "nlp", "tabular", "speech", "ranking", "forecast")
PIPELINES = ("train-eval", "etl-daily", "hpo-sweep", "feature-build", "distill")
#: Statuses of the seeded tasks, with their weights.
STATUSES = {
    "completed": 70,
    "failed": 10,
    "stopped": 5,
    "created": 5,
    "queued": 5,
    "in_progress": 5,
}
RUNS_PER_PIPELINE = 8
BIG_PIPELINE = "big-dag"
SERVER_TARGET_MS = 150.0
BROWSER_TARGET_MS = 1000.0
#: Pages with a server-time target (the rest are shown for information).
TARGETED = ("/tasks", "/pipelines")


@dataclass
class Seeded:
    """What the bench measures on: the big pipeline, its running step, a small pipeline."""

    controller: Task
    running_step: Task
    last_step: str
    small_project: str
    small_name: str
    tasks: int


# -- the store ----------------------------------------------------------------------------
def big_dag(controller_id: str, steps: int, started: float) -> tuple[dict, list[Task]]:
    """A layered DAG of ``steps`` steps (20 a layer, 1-2 parents in the layer before),
    as the engine reports it, and its step tasks: the first 60% done, one running."""
    width, rng = 20, random.Random(7)
    nodes, tasks = [], []
    running_at = int(steps * 0.6)
    for i in range(steps):
        name = f"step_{i:04d}"
        layer = i // width
        parents = []
        if layer:
            before = range((layer - 1) * width, min(layer * width, steps))
            parents = sorted({f"step_{rng.choice(before):04d}" for _ in range(rng.randint(1, 2))})
        status = "completed" if i < running_at else "in_progress" if i == running_at else "pending"
        task = Task(name=name, project="bench-ui", type="training", parent=controller_id)
        begin = started + layer * 10
        node = {
            "name": name, "task_id": task.id if status != "pending" else None,
            "status": status, "parents": parents, "queue": "default",
            "started": begin if status != "pending" else None,
            "completed": begin + 8 if status == "completed" else None,
            "cached": i % 17 == 0 and status == "completed",
        }  # fmt: skip
        nodes.append(node)
        if status != "pending":
            tasks.append(task)
    edges = [[parent, node["name"]] for node in nodes for parent in node["parents"]]
    return {"nodes": nodes, "edges": edges}, tasks


def seed(store: SqlBackend, db_path: Path, total: int, steps: int) -> Seeded:
    """Fill the store; statuses and times are then set in one SQL pass (a bench's
    shortcut: going through transitions one task at a time would only take longer)."""
    rng = random.Random(11)
    t0 = time.time() - 30 * 86400
    statuses = list(STATUSES)
    weights = list(STATUSES.values())
    rows: list[tuple] = []  # (status, created, started, completed, id)

    def stamp(task: Task, status: str, created: float) -> None:
        started = created + 5 if status not in ("created", "queued") else None
        done = started + rng.uniform(30, 3000) if started and status != "in_progress" else None
        rows.append((status, created, started, done, task.id))

    controller = Task(name="big-dag", project="bench-ui", type="controller")
    dag, step_tasks = big_dag(controller.id, steps, t0 + 29 * 86400)
    controller.runtime = {"version": "1.0", "pipeline": dag}
    controller.hyperparams = {"Args": {"steps": steps, "lr": 0.01, "_internal": "x"}}
    store.create_task(controller)
    stamp(controller, "in_progress", t0 + 29 * 86400)
    running = None
    for task, node in zip(step_tasks, (n for n in dag["nodes"] if n["task_id"]), strict=True):
        store.create_task(task)
        rows.append(
            (node["status"], node["started"] - 1, node["started"], node["completed"], task.id)
        )
        if node["status"] == "in_progress":
            running = task
    made = 1 + len(step_tasks)
    for project in PROJECTS[:3]:
        for name in PIPELINES:
            for run in range(RUNS_PER_PIPELINE):
                created = t0 + rng.uniform(0, 29 * 86400)
                args = {"lr": round(rng.uniform(0.001, 0.1), 4), "epochs": run + 1}
                task = Task(
                    name=name, project=project, type="controller",
                    hyperparams={"Args": args}, runtime={"version": f"1.{run}"},
                )  # fmt: skip
                store.create_task(task)
                stamp(task, rng.choices(statuses, weights)[0], created)
                made += 1
    while made < total:
        project = PROJECTS[made % len(PROJECTS)]
        task = Task(
            name=f"train-{made:05d}", project=project, type="training",
            tags=[f"exp-{made % 40}"] + (["baseline"] if made % 9 == 0 else []),
            comment=f"run {made} of the {project} sweep",
            hyperparams={"General": {"lr": rng.uniform(0.001, 0.1), "batch": 32}},
        )  # fmt: skip
        store.create_task(task)
        stamp(task, rng.choices(statuses, weights)[0], t0 + rng.uniform(0, 29 * 86400))
        made += 1
    with sqlite3.connect(db_path) as conn:
        conn.executemany(
            "UPDATE tasks SET status=?, created=?, started=?, completed=? WHERE id=?", rows
        )
    assert running is not None
    return Seeded(store.get_task(controller.id), running, dag["nodes"][-1]["name"],
                  PROJECTS[0], PIPELINES[0], made)  # fmt: skip


def seed_live(store: SqlBackend, workers: int, log_lines: int) -> tuple[Task, list[float]]:
    """Workers with a full stats history, and a task with a long log; returns the task
    and the times (ms) of the last heartbeats (each keeps a sample and drops the oldest)."""
    gpus = [{"index": n, "name": "H100", "utilization_pct": 50.0, "memory_used_mib": 1024.0,
             "memory_total_mib": 81920.0, "temperature_c": 40.0} for n in range(8)]  # fmt: skip
    beats = []
    for w in range(workers):
        worker = f"bench-worker-{w:03d}"
        store.register_worker(worker, ["default"])
        for n in range(WORKER_STATS_KEPT + 10):
            stats = {"cpu_pct": float(n % 100), "memory_pct": 40.0, "cpu_count": 64, "gpus": gpus}
            t0 = time.perf_counter()
            store.heartbeat(worker, stats)
            beats.append((time.perf_counter() - t0) * 1000)
    task = store.create_task(Task(name="long-log", project="bench-ui"))
    batch = 10000
    for start in range(0, log_lines, batch):
        end = min(log_lines, start + batch)
        store.append_logs(task.id, [f"step {n} loss {1 / (n + 1):.7f}" for n in range(start, end)])
    return task, beats[-WORKER_STATS_KEPT:]


# -- the server ---------------------------------------------------------------------------
def start_ui(home: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    env["AGENT_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "agent.cli.main", "ui", "--port", str(port)]
    log = (home / "ui.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    client = JsonTransport(f"http://127.0.0.1:{port}", {}, connect_timeout=1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if client.request("GET", "/ui/static/ui.css", None, 5).status == 200:
                return proc
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"agent ui did not start; see {home / 'ui.log'}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def server_times(client: JsonTransport, paths: dict[str, str], count: int) -> list[tuple]:
    """(label, path, p50 ms, p95 ms) of ``count`` GETs of each path (after one warm-up)."""
    results = []
    for label, path in paths.items():
        answer = client.request("GET", path, None, 60)
        if answer.status != 200:
            raise RuntimeError(f"GET {path}: {answer.status} {answer.data[:200]!r}")
        samples = []
        for _ in range(count):
            t0 = time.perf_counter()
            client.request("GET", path, None, 60)
            samples.append((time.perf_counter() - t0) * 1000)
        results.append((label, path, statistics.median(samples), percentile(samples, 0.95)))
    return results


# -- the browser --------------------------------------------------------------------------
#: Records performance.now() at the frame after the node named window.__lastStep appears.
DRAWN_OBSERVER = """
window.__drawn = null;
new MutationObserver((records, observer) => {
  if (document.querySelector(`[data-step="${window.__lastStep}"]`)) {
    observer.disconnect();
    requestAnimationFrame(() => { window.__drawn = performance.now(); });
  }
}).observe(document, {childList: true, subtree: true});
"""

LAYOUT_ALONE = """async (url) => {
  const graph = await getJSON(url);
  const t0 = performance.now();
  layoutDag(graph);
  const t1 = performance.now();
  drawDag(document.getElementById("dag"), graph);
  document.body.getBoundingClientRect();
  return [t1 - t0, performance.now() - t0];
}"""


def browser_times(url: str, store: SqlBackend, seeded: Seeded, runs: int, samples: int):
    """(nav -> drawn ms list, layout ms list, layout+draw ms list, console ms list)."""
    from playwright.sync_api import sync_playwright

    drawn, layout, draw, console = [], [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.add_init_script(f"window.__lastStep = {seeded.last_step!r};" + DRAWN_OBSERVER)
        page = context.new_page()
        task_url = f"{url}/tasks/{seeded.controller.id}"
        for _ in range(runs):
            page.goto(task_url)
            page.wait_for_function("window.__drawn !== null", timeout=30000, polling=50)
            drawn.append(page.evaluate("window.__drawn"))
            count = page.locator("[data-step]").count()
            if count != len(seeded.controller.runtime["pipeline"]["nodes"]):
                raise RuntimeError(f"the DAG drew {count} nodes")
            alone, with_dom = page.evaluate(LAYOUT_ALONE, f"/tasks/{seeded.controller.id}/dag.json")
            layout.append(alone)
            draw.append(with_dom)
        page.goto(f"{url}/tasks/{seeded.running_step.id}?tab=console")
        page.wait_for_selector("#console-poll[hx-get]", state="attached")
        for n in range(samples):
            page.wait_for_timeout(random.uniform(200, 900))  # any phase of the poll
            marker = f"bench line {n} {uuid.uuid4().hex}"
            t0 = time.perf_counter()
            store.append_logs(seeded.running_step.id, [marker])
            page.wait_for_function(
                "(text) => document.getElementById('console').textContent.includes(text)",
                arg=marker, timeout=10000, polling="raf",
            )  # fmt: skip
            console.append((time.perf_counter() - t0) * 1000)
        browser.close()
    return drawn, layout, draw, console


# -- the report ---------------------------------------------------------------------------
def verdict(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return "PASS" if value < target else "FAIL"


def print_table(rows: list[tuple[str, float, float, float | None]]) -> None:
    print(f"{'measure':<46}{'p50 ms':>9}{'p95 ms':>9}{'target':>10}  result")
    for label, p50, p95, target in rows:
        shown = f"< {target:.0f}" if target is not None else ""
        print(f"{label:<46}{p50:>9.1f}{p95:>9.1f}{shown:>10}  {verdict(p95, target)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=20, help="GETs per page")
    parser.add_argument("--browser-runs", type=int, default=5, help="page loads of the DAG")
    parser.add_argument("--console-samples", type=int, default=10)
    parser.add_argument("--workers", type=int, default=50, help="workers on /workers")
    parser.add_argument("--log-lines", type=int, default=200000, help="lines of the long log")
    parser.add_argument("--only", choices=("server", "browser"), help="one half of it")
    parser.add_argument("--keep", action="store_true", help="keep the temp AGENT_HOME")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    db_path = home / "agent.db"
    store = SqlBackend(f"sqlite:///{db_path}")
    t0 = time.perf_counter()
    seeded = seed(store, db_path, args.tasks, args.steps)
    print(
        f"seeded {seeded.tasks} tasks ({args.steps}-step DAG) in {time.perf_counter() - t0:.1f} s"
    )
    port = free_port()
    proc = start_ui(home, port)
    try:
        run(args, store, seeded, port)
    finally:
        proc.terminate()
        proc.wait(10)
        store.close()
        if not args.keep:
            import shutil

            shutil.rmtree(home, ignore_errors=True)


def run(args: argparse.Namespace, store: SqlBackend, seeded: Seeded, port: int) -> None:
    client = JsonTransport(f"http://127.0.0.1:{port}", {}, connect_timeout=5)
    big = seeded.controller.id
    runs = urlencode({"project": seeded.small_project, "name": seeded.small_name})
    paths = {
        "/tasks": "/tasks",
        "/tasks?status=completed&q=sweep": "/tasks?" + urlencode({"status": "completed", "q": "sweep"}),
        "/tasks?q=<rare text>": "/tasks?q=train-0999",
        "/tasks?project=nlp&page=20": "/tasks?project=nlp&page=20",
        "/pipelines": "/pipelines",
        "/pipelines/runs?project&name": f"/pipelines/runs?{runs}",
        "/pipelines/runs (the 1,000-step run)": "/pipelines/runs?project=bench-ui&name=big-dag",
        "/tasks/{big pipeline}": f"/tasks/{big}",
        "/tasks/{big pipeline}/dag.json": f"/tasks/{big}/dag.json",
        "/tasks/{big pipeline}/dag-status.json": f"/tasks/{big}/dag-status.json",
    }  # fmt: skip
    rows = []
    requests = 0 if args.only == "browser" else args.requests
    if requests:
        long_log, beats = seed_live(store, args.workers, args.log_lines)
        newest = max(ts for samples in store.get_worker_stats().values() for ts, _ in samples)
        paths.update({
            f"/workers/stats.json ({args.workers} workers, all)": "/workers/stats.json",
            "/workers/stats.json?after=<newest>": f"/workers/stats.json?after={newest}",
            "/tasks/{id}/status.json": f"/tasks/{seeded.running_step.id}/status.json",
            f"/tasks/{{{args.log_lines:,}-line log}}?tab=console": f"/tasks/{long_log.id}?tab=console",
            "/tasks/{that log}/console/search": (
                f"/tasks/{long_log.id}/console/search?q=loss+0.00001&before={args.log_lines}"
            ),
        })  # fmt: skip
        rows.append(("store: heartbeat with stats (in process)", statistics.median(beats),
                     percentile(beats, 0.95), None))  # fmt: skip
    for label, path, p50, p95 in server_times(client, paths, requests) if requests else ():
        target = SERVER_TARGET_MS if path.split("?")[0] in TARGETED else None
        rows.append((f"server {label}", p50, p95, target))
    if args.only != "server":
        drawn, layout, draw, console = browser_times(
            f"http://127.0.0.1:{port}", store, seeded, args.browser_runs, args.console_samples
        )
        rows.append(("browser: navigation -> 1,000 nodes drawn", statistics.median(drawn),
                     percentile(drawn, 0.95), BROWSER_TARGET_MS))  # fmt: skip
        rows.append(("browser: layoutDag alone", statistics.median(layout),
                     percentile(layout, 0.95), None))  # fmt: skip
        rows.append(("browser: drawDag again (layout + DOM)", statistics.median(draw),
                     percentile(draw, 0.95), None))  # fmt: skip
        rows.append(("browser: log line -> shown in Console", statistics.median(console),
                     max(console), BROWSER_TARGET_MS))  # fmt: skip
    print_table(rows)
    if args.only != "server":
        print("(console: the p95 column is the worst sample)")


if __name__ == "__main__":
    main()
