"""Control-plane benchmark: task cycles per second and claim latency, per backend.

A cycle is create + enqueue (one ``create_task(task, queue=...)`` call) + claim +
complete, timed from the moment every process is ready to the last cycle's completion.
Backends: SqlBackend on SQLite,
SqlBackend on PostgreSQL (when reachable), and HttpBackend against a real
``agent server`` subprocess on each of them.

    python bench/control_plane.py [--tasks 2000] [--latency-samples 200] [--pg URL]
    python bench/control_plane.py --only http+postgresql --workers 1,2   # agent server --workers N
    python bench/control_plane.py --memory   # the server's RSS under log shippers and big posts

``--workers 1,2`` measures each http row once per server process count (``agent server
--workers N``); a row of N > 1 workers is named ``http+postgresql w2``.

``--memory`` measures an ``agent server`` on SQLite: its peak RSS and the p99 of a log post
while 50 clients ship logs for 20 s, and its peak RSS while four clients post 100 MB at
once (answered 413 by the body limit before it is read; target: below 150 MB).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.core.models import Task  # noqa: E402
from agent.store.factory import backend_for_url  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/postgres"


def _ready_store(url: str, ready):
    """The backend, connected (one request made), once every process is: the clock
    starts when all have imported and connected, not while some still start."""
    store = backend_for_url(url)
    store.list_queues()
    ready.wait()
    return store


def _producer(url: str, queue: str, count: int, ready) -> None:
    store = _ready_store(url, ready)
    for _ in range(count):
        store.create_task(Task(name="bench", project="bench"), queue=queue)


def _claimer(url: str, queue: str, worker: str, ready, done, total: int, finished) -> None:
    store = _ready_store(url, ready)
    while True:
        with done.get_lock():
            if done.value >= total:
                return
        task = store.claim([queue], worker, timeout=0.5)
        if task is None:
            continue
        store.set_status(task.id, "completed")
        with done.get_lock():
            done.value += 1
            if done.value == total:
                finished.value = time.perf_counter()  # CLOCK_MONOTONIC: one clock for all


def cycles_per_second(url: str, total: int, claimers: int, producers: int = 2) -> float:
    """Run ``total`` cycles with that many claimer processes; return cycles/s, from the
    moment every process is ready to the last cycle's completion (not to the processes'
    exit: claimers idle in a long poll at the end would add up to its timeout)."""
    ctx = mp.get_context("spawn")
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    total = (total // producers) * producers
    ready, done = ctx.Barrier(producers + claimers + 1), ctx.Value("i", 0)
    finished = ctx.Value("d", 0.0)
    procs = [
        ctx.Process(target=_producer, args=(url, queue, total // producers, ready))
        for _ in range(producers)
    ]
    procs += [
        ctx.Process(target=_claimer, args=(url, queue, f"w{i}", ready, done, total, finished))
        for i in range(claimers)
    ]
    for proc in procs:
        proc.start()
    ready.wait(timeout=120)
    t0 = time.perf_counter()
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"benchmark process failed with exit code {proc.exitcode}")
    return total / (finished.value - t0)


def _waiting_claimer(url: str, queue: str, samples: int, ready, results) -> None:
    store = backend_for_url(url)
    for _ in range(samples):
        ready.put(True)
        task = store.claim([queue], "latency", timeout=10)
        results.put(time.perf_counter())  # CLOCK_MONOTONIC: comparable across processes
        store.set_status(task.id, "completed")


def claim_latency(url: str, samples: int) -> tuple[float, float]:
    """p50 and p99 (ms) from just before an enqueue to the waiting claimer's return."""
    ctx = mp.get_context("spawn")
    queue = f"lat-{uuid.uuid4().hex[:8]}"
    ready, results = ctx.Queue(), ctx.Queue()
    store = backend_for_url(url)
    proc = ctx.Process(target=_waiting_claimer, args=(url, queue, samples, ready, results))
    proc.start()
    latencies = []
    for _ in range(samples):
        ready.get(timeout=30)
        time.sleep(0.02)  # the claimer is now blocked in its long poll
        task = store.create_task(Task(name="lat", project="bench"))
        t0 = time.perf_counter()
        store.enqueue(task.id, queue)
        latencies.append((results.get(timeout=30) - t0) * 1000)
    proc.join()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return statistics.median(latencies), p99


@contextmanager
def server(db_url: str, files: str, pid: list[int] | None = None, workers: int = 1):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "agent.cli.main", "server", "--port", str(port)]
    cmd += ["--db", db_url, "--files", files, "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if pid is not None:
        pid.append(proc.pid)
    url = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.monotonic() + 60  # --workers N imports N times: slow on a busy machine
        while True:
            try:
                if requests.get(url + "/api/v1/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("agent server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def pg_available(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


def fresh_pg(url: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + "/" + name


class PeakRss:
    """Samples a process's RSS every 20 ms in a thread; ``peak`` in MB."""

    def __init__(self, pid: int):
        import threading

        import psutil

        self.process = psutil.Process(pid)
        self.peak = self.start = self.process.memory_info().rss / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss / 2**20)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def _log_shipper(url: str, task_id: str, seconds: float, latencies: list[float]) -> None:
    import requests

    session = requests.Session()
    lines = [f"epoch 3 step {i}: loss=0.{i:04d} lr=0.001" for i in range(100)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        session.post(f"{url}/api/v1/tasks/{task_id}/logs", json={"lines": lines}, timeout=30)
        latencies.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.1)


def _big_post(url: str, task_id: str, mb: int, statuses: list[int]) -> None:
    import requests

    body = b'{"lines": ["' + b"x" * (mb * 2**20) + b'"]}'
    headers = {"Content-Type": "application/json"}
    try:
        answer = requests.post(
            f"{url}/api/v1/tasks/{task_id}/logs", data=body, headers=headers, timeout=120
        )
        statuses.append(answer.status_code)
    except requests.ConnectionError:
        statuses.append(0)  # the server answered and closed before all of it was sent


def memory_report(tmp: Path, clients: int = 50, seconds: float = 20.0, big_mb: int = 100) -> None:
    import threading

    pid: list[int] = []
    with server(f"sqlite:///{tmp}/memory.db", str(tmp / "files"), pid) as url:
        store = backend_for_url(url)
        task = store.create_task(Task(name="memory", project="bench"))
        rss = PeakRss(pid[0])
        latencies: list[float] = []
        threads = [
            threading.Thread(target=_log_shipper, args=(url, task.id, seconds, latencies))
            for _ in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        peak = rss.stop()
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(
            f"{clients} log shippers for {seconds:.0f} s: server RSS {rss.start:.0f} -> "
            f"{peak:.0f} MB peak, {len(latencies)} posts, p50 {statistics.median(latencies):.1f} "
            f"ms, p99 {p99:.1f} ms",
            flush=True,
        )
        rss = PeakRss(pid[0])
        statuses: list[int] = []
        threads = [
            threading.Thread(target=_big_post, args=(url, task.id, big_mb, statuses))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        peak = rss.stop()
        verdict = "PASS" if peak < 150 else "FAIL"
        print(
            f"4 concurrent {big_mb} MB posts: server RSS {rss.start:.0f} -> {peak:.0f} MB peak "
            f"(target < 150 MB: {verdict}), answers {sorted(statuses)}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--pg", default=os.environ.get("AGENT_TEST_PG_URL", DEFAULT_PG))
    parser.add_argument("--only", default="", help="comma list: sqlite,postgresql,http+sqlite,...")
    parser.add_argument("--memory", action="store_true", help="only the server's memory figures")
    parser.add_argument(
        "--workers", default="1", help="comma list of server process counts for the http rows"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cp-"))
    if args.memory:
        memory_report(tmp)
        return
    dbs = {"sqlite": f"sqlite:///{tmp}/direct.db"}
    if pg_available(args.pg):
        dbs["postgresql"] = fresh_pg(args.pg)
    else:
        print(f"PostgreSQL not reachable at {args.pg}: skipped")
    print(f"{'backend':<18}{'cycles/s 1':>12}{'cycles/s 8':>12}{'p50 ms':>9}{'p99 ms':>9}")
    wanted = set(filter(None, args.only.split(",")))
    for name, db in dbs.items():
        if not wanted or name in wanted:
            _report(name, db, args)
        if not wanted or f"http+{name}" in wanted:
            for workers in map(int, args.workers.split(",")):
                if name == "sqlite" and workers > 1:  # agent server refuses it: one writer
                    print(f"{f'http+{name} w{workers}':<18}  (--workers > 1 needs PostgreSQL)")
                    continue
                server_db = db if name != "sqlite" else f"sqlite:///{tmp}/server-{workers}.db"
                row = f"http+{name}" + (f" w{workers}" if workers > 1 else "")
                with server(server_db, str(tmp / "files"), workers=workers) as url:
                    _report(row, url, args)


def _report(name: str, url: str, args) -> None:
    one = cycles_per_second(url, args.tasks // 2, claimers=1)
    eight = cycles_per_second(url, args.tasks, claimers=8)
    p50, p99 = claim_latency(url, args.latency_samples)
    print(f"{name:<18}{one:>12.0f}{eight:>12.0f}{p50:>9.1f}{p99:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
