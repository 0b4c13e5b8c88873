"""Fleet benchmark: one ``agent server`` on PostgreSQL, N simulated agents.

    python bench/fleet.py [--agents 100,300,1000] [--seconds 60] [--procs 3] [--workers 1] [--pg URL]

Each simulated agent is an asyncio client with its own worker id, doing what a daemon
does (agent/daemon/loop.py, agent/execution/runner.py), at the daemon's own intervals:
register; heartbeat every ``DEFAULT_HEARTBEAT_S`` with machine stats; claim with a
``DEFAULT_CLAIM_TIMEOUT_S`` long-poll; while a task "runs" (``--task-s``, uniform
between half and 1.5 times it): watch it with one ``wait_for_stop`` long-poll
(``LONG_POLL_S``), ship ``--lines`` log lines a second in appends at most
``SHIP_INTERVAL_S`` apart, longer after a slow one (the runner's TaskLog), then complete
it. A producer keeps the queues fed; an aborter stops a running task every ``--abort-every`` s and times how
long its agent takes to hear of it (abort call -> the agent's wait answers).

Agents are spread over ``--procs`` load processes (uvloop, raw HTTP/1.1 keep-alive, two
connections per agent: one for long-polls, one for the rest). For each N it prints
requests/s, p50/p99 latency per request kind, the server's CPU and RSS, PostgreSQL's
connections and its backends' CPU, and what the load generator itself cost on the same
cores. Samples count only inside the measured window (after ``--warmup`` s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from control_plane import DEFAULT_PG, fresh_pg, pg_available, server  # noqa: E402

from agent.daemon.loop import DEFAULT_CLAIM_TIMEOUT_S, DEFAULT_HEARTBEAT_S  # noqa: E402
from agent.execution.runner import SHIP_INTERVAL_S, averaged, next_ship_wait  # noqa: E402
from agent.execution.stop_watch import LONG_POLL_S  # noqa: E402

API = "/api/v1"
QUEUES = 10
#: What a daemon's heartbeat carries (agent.daemon.stats), roughly.
STATS = {
    "cpu_percent": 41.5, "memory_used_gb": 12.3, "memory_total_gb": 64.0, "load_1m": 3.2,
    "disk_free_gb": 812.0, "gpus": [{"index": 0, "util": 87, "memory_used_mb": 10240}],
    "heartbeat_s": DEFAULT_HEARTBEAT_S,
}  # fmt: skip


class Http:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        for attempt in (0, 1):
            try:
                return await self._once(method, path, body)
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _once(self, method: str, path: str, body: object) -> tuple[int, object]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        length = 0
        for line in raw.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        payload = await self.reader.readexactly(length) if length else b""
        return status, (json.loads(payload) if payload else None)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Recorder:
    """Latencies (ms) per request kind and counts, inside the measured window only."""

    def __init__(self, start: float, end: float):
        self.start, self.end = start, end
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.requests: dict[str, int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.aborts: list[float] = []

    def inside(self) -> bool:
        return self.start <= time.time() < self.end

    async def call(self, kind: str, conn: Http, method: str, path: str, body=None, ok=(200,)):
        began = time.perf_counter()
        try:
            status, answer = await conn.request(method, path, body)
        except Exception:  # noqa: BLE001 - a benchmark counts failures, it does not stop
            status, answer = 0, None
        elapsed = (time.perf_counter() - began) * 1000
        if self.inside():
            self.requests[kind] += 1
            if status not in ok:
                self.errors[kind] += 1
            self.latency[kind].append(elapsed)
        return status, answer


class Agent:
    def __init__(self, worker_id: str, queue: str, host: str, port: int, args, rec: Recorder):
        self.worker_id, self.queue, self.args, self.rec = worker_id, queue, args, rec
        self.short, self.long = Http(host, port), Http(host, port)
        self.lock = asyncio.Lock()  # the short connection: one request at a time
        self.running: str | None = None
        self.abort_sent: float | None = None

    async def short_call(self, kind: str, method: str, path: str, body=None, ok=(200,)):
        async with self.lock:
            return await self.rec.call(kind, self.short, method, path, body, ok)

    async def live(self) -> None:
        await asyncio.sleep(random.random() * 5)  # daemons do not all start at once
        register = {"worker_id": self.worker_id, "queues": [self.queue], "stats": STATS}
        await self.short_call("register", "POST", f"{API}/workers", register)
        beats = asyncio.create_task(self.heartbeats())
        try:
            while True:
                body = {
                    "queues": [self.queue], "worker_id": self.worker_id,
                    "timeout": DEFAULT_CLAIM_TIMEOUT_S, "lease_s": 60.0,
                }  # fmt: skip
                began = time.perf_counter()
                _, answer = await self.rec.call(
                    "claim", self.long, "POST", f"{API}/queues/claim", body
                )
                task = (answer or {}).get("task")
                if task is None:
                    if self.rec.inside():
                        self.rec.requests["claim (empty)"] += 1
                    continue
                if self.rec.inside():  # a claim that found a task: its latency alone
                    self.rec.latency["claim (task)"].append((time.perf_counter() - began) * 1000)
                await self.run(task["id"])
        finally:
            beats.cancel()

    async def heartbeats(self) -> None:
        await asyncio.sleep(random.random() * DEFAULT_HEARTBEAT_S)
        body = {"worker_id": self.worker_id, "stats": STATS, "lease_s": 60.0}
        while True:
            await self.short_call("heartbeat", "POST", f"{API}/workers/heartbeat", body)
            await asyncio.sleep(DEFAULT_HEARTBEAT_S)

    async def watch(self, task_id: str) -> str | None:
        """The runner's StopWatch: one long-poll until the task is no longer running."""
        while True:
            body = {"task_ids": [task_id], "timeout": LONG_POLL_S}
            status, answer = await self.rec.call(
                "wait_for_stop", self.long, "POST", f"{API}/tasks/wait-for-stop", body
            )
            stopped = (answer or {}).get("stopped") if status == 200 else None
            if stopped:
                return stopped.get(task_id)
            if status != 200:
                await asyncio.sleep(1)

    async def run(self, task_id: str) -> None:
        self.running = task_id
        watch = asyncio.create_task(self.watch(task_id))
        end = time.monotonic() + self.args.task_s * random.uniform(0.5, 1.5)
        pending: list[str] = []
        next_line = time.monotonic()
        interval = SHIP_INTERVAL_S
        average: float | None = None
        while time.monotonic() < end and not watch.done():
            await asyncio.wait([watch], timeout=interval)
            now = time.monotonic()
            while next_line <= now:
                pending.append(f"{time.time():.3f} epoch 3 step {len(pending)}: loss=0.4127")
                next_line += 1.0 / self.args.lines
            if pending and not watch.done():
                body = {"lines": pending}
                began = time.monotonic()
                await self.short_call("log append", "POST", f"{API}/tasks/{task_id}/logs", body)
                # As TaskLog: slow appends, a longer wait.
                average = averaged(average, time.monotonic() - began)
                interval = next_ship_wait(SHIP_INTERVAL_S, average)
                pending = []
        self.running = None
        if watch.done():
            if self.abort_sent is not None and self.rec.inside():
                self.rec.aborts.append((time.perf_counter() - self.abort_sent) * 1000)
            self.abort_sent = None
            return
        body = {"status": "completed", "expected": ["in_progress"]}
        await self.short_call(
            "complete", "POST", f"{API}/tasks/{task_id}/status", body, ok=(200, 409)
        )
        await watch  # the completion answers it


async def producer(host: str, port: int, agents: int, rec: Recorder) -> None:
    """Keeps every queue a few tasks ahead of its agents."""
    conns = [Http(host, port) for _ in range(4)]
    backlog = max(5, agents // QUEUES // 5)

    async def fill(conn: Http, queue: str, count: int) -> None:
        for _ in range(count):
            body = {"name": "fleet", "project": "fleet"}
            await rec.call("create+enqueue", conn, "POST", f"{API}/tasks?queue={queue}", body)

    while True:
        _, answer = await rec.call("list queues", conns[0], "GET", f"{API}/queues")
        lengths = {q["name"]: q["length"] for q in (answer or {}).get("queues", [])}
        short = [(f"fleet-{i}", backlog - lengths.get(f"fleet-{i}", 0)) for i in range(QUEUES)]
        jobs = [(q, n) for q, n in short if n > 0]
        for start in range(0, len(jobs), len(conns)):
            batch = jobs[start : start + len(conns)]
            await asyncio.gather(*(fill(c, q, n) for c, (q, n) in zip(conns, batch, strict=False)))
        await asyncio.sleep(0.5)


async def aborter(agents: list[Agent], host: str, port: int, every: float, rec: Recorder):
    conn = Http(host, port)
    while True:
        await asyncio.sleep(every)
        running = [a for a in agents if a.running and a.abort_sent is None]
        if not running:
            continue
        agent = random.choice(running)
        agent.abort_sent = time.perf_counter()
        body = {"status": "stopped", "message": "aborted (bench)", "expected": ["in_progress"]}
        status, _ = await rec.call(
            "abort", conn, "POST", f"{API}/tasks/{agent.running}/status", body, ok=(200, 409)
        )
        if status != 200:
            agent.abort_sent = None


def load_process(index: int, count: int, total: int, url: str, args, window, results) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    host, port = url.split("//", 1)[1].split(":")
    rec = Recorder(*window)

    async def main() -> None:
        agents = [
            Agent(f"sim-{index}-{i}", f"fleet-{(index + i) % QUEUES}", host, int(port), args, rec)
            for i in range(count)
        ]
        jobs = [asyncio.create_task(a.live()) for a in agents]
        jobs.append(asyncio.create_task(aborter(agents, host, int(port), args.abort_every, rec)))
        if index == 0:
            jobs.append(asyncio.create_task(producer(host, int(port), total, rec)))
        await asyncio.sleep(max(0.0, window[1] - time.time()))
        for job in jobs:
            job.cancel()

    asyncio.run(main())
    results.put((dict(rec.latency), dict(rec.requests), dict(rec.errors), rec.aborts))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def pg_backends(dsn: str, database: str) -> list[int]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return [r[0] for r in rows]


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    import psutil

    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            seconds[pid] = times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            pass
    return seconds


def rss_of(pids: list[int]) -> int:
    """The RSS of these processes together (the server and its workers), in bytes."""
    import psutil

    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass
    return total


def used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[p] - before.get(p, 0.0) for p in after)


def one_fleet(agents: int, db: str, args) -> dict:
    import psutil

    tmp = Path(tempfile.mkdtemp(prefix="fleet-"))
    pid: list[int] = []
    dsn = db.replace("postgresql+psycopg", "postgresql")
    database = dsn.rsplit("/", 1)[1]
    with server(db, str(tmp / "files"), pid, workers=args.workers) as url:
        start = time.time() + args.warmup
        window = (start, start + args.seconds)
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        share = [agents // args.procs + (i < agents % args.procs) for i in range(args.procs)]
        procs = [
            ctx.Process(target=load_process, args=(i, n, agents, url, args, window, results))
            for i, n in enumerate(share)
        ]
        for proc in procs:
            proc.start()
        time.sleep(max(0.0, start - time.time()))
        loadgen = [p.pid for p in procs]
        pg_pids = pg_backends(dsn, database)
        servers = [pid[0], *(c.pid for c in psutil.Process(pid[0]).children(recursive=True))]
        before = (cpu_seconds(servers), cpu_seconds(loadgen), cpu_seconds(pg_pids), time.time())
        rss = [rss_of(servers)]
        connections = []
        while time.time() < window[1] - 0.5:
            time.sleep(min(5.0, window[1] - 0.5 - time.time()))
            rss.append(rss_of(servers))
            connections.append(len(pg_backends(dsn, database)))
        after = (cpu_seconds(servers), cpu_seconds(loadgen), cpu_seconds(pg_pids), time.time())
        gathered = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(30)
    wall = after[3] - before[3]
    latency: dict[str, list[float]] = defaultdict(list)
    requests: dict[str, int] = defaultdict(int)
    errors: dict[str, int] = defaultdict(int)
    aborts: list[float] = []
    for lat, req, err, ab in gathered:
        for kind, values in lat.items():
            latency[kind] += values
        for kind, n in req.items():
            requests[kind] += n
        for kind, n in err.items():
            errors[kind] += n
        aborts += ab
    return {
        "agents": agents,
        "latency": latency,
        "requests": requests,
        "errors": errors,
        "aborts": aborts,
        "seconds": args.seconds,
        "server_cpu": 100 * used(before[0], after[0]) / wall,
        "loadgen_cpu": 100 * used(before[1], after[1]) / wall,
        "pg_cpu": 100 * used(before[2], after[2]) / wall,
        "server_rss_mb": max(rss) / 2**20,
        "workers": args.workers,
        "pg_connections": max(connections or [0]),
    }


KINDS = ("heartbeat", "claim (task)", "log append", "wait_for_stop", "complete", "create+enqueue")


def report(r: dict) -> None:
    http = {k: n for k, n in r["requests"].items() if k != "claim (empty)"}
    total = sum(http.values())
    print(f"\n== {r['agents']} agents, {r['seconds']:.0f} s measured ==")
    print(f"requests/s: {total / r['seconds']:.0f}  (" + ", ".join(
        f"{k} {n / r['seconds']:.0f}" for k, n in sorted(http.items(), key=lambda kv: -kv[1])
    ) + ")")  # fmt: skip
    print(f"{'request':<16}{'count':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for kind in (*KINDS, "abort", "register", "list queues"):
        values = r["latency"].get(kind, [])
        if not values:
            continue
        print(
            f"{kind:<16}{len(values):>8}{statistics.median(values):>9.1f}"
            f"{percentile(values, 99):>9.1f}{r['errors'].get(kind, 0):>8}"
        )
    if r["aborts"]:
        print(
            f"abort heard by its agent: n={len(r['aborts'])} p50 "
            f"{statistics.median(r['aborts']):.1f} ms, max {max(r['aborts']):.1f} ms"
        )
    print(
        f"server CPU {r['server_cpu']:.0f}% (of one core; {r['workers']} process(es)), RSS {r['server_rss_mb']:.0f} MB; "
        f"PostgreSQL {r['pg_connections']} connections, its backends' CPU {r['pg_cpu']:.0f}%; "
        f"load generator CPU {r['loadgen_cpu']:.0f}% (same {os.cpu_count()} cores)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="100,300,1000")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per N")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--procs", type=int, default=3, help="load generator processes")
    parser.add_argument("--workers", type=int, default=1, help="agent server --workers N")
    parser.add_argument("--task-s", type=float, default=30.0, help="mean task duration")
    parser.add_argument("--lines", type=float, default=3.0, help="log lines/s per running task")
    parser.add_argument("--abort-every", type=float, default=3.0, help="s between aborts per proc")
    parser.add_argument("--pg", default=os.environ.get("AGENT_TEST_PG_URL", DEFAULT_PG))
    args = parser.parse_args()
    if not pg_available(args.pg):
        raise SystemExit(f"PostgreSQL not reachable at {args.pg}")
    for agents in (int(n) for n in args.agents.split(",")):
        report(one_fleet(agents, fresh_pg(args.pg), args))


if __name__ == "__main__":
    main()
