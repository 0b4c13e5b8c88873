"""Agent benchmark: task pickup latency, env reuse and build times, tasks per minute.

    python bench/agent.py [--tasks 30] [--offline] [--cold-cache]

(a) pickup latency: a real ``agent daemon --queue bench`` subprocess on the embedded
    SQLite store runs trivial inline tasks in a warm venv, one at a time; measured
    from ``enqueue`` to the task's first log line and to its own first output line
    (store timestamps, same clock). Target p50 <= 150 ms.
(b) warm env reuse: ``EnvCache.get`` of an environment that exists. Target <= 50 ms.
(c) cold env build: ``EnvCache.get`` of a new requirement set (``requests``, ``six``
    from PyPI; local wheels with ``--offline``) vs ``uv venv`` + ``uv pip install`` of
    the same by hand. Both use the same uv cache, warmed first (``--cold-cache``: a
    fresh empty uv cache for every build, both sides). Target ratio <= 1.2x.
(d) tasks per minute: ``--tasks`` trivial tasks enqueued at once, one daemon.
(e) the iris step's environment: the requirements the iris pipeline's ``step_one``
    records when launched from this Python (pandas, scikit-learn, pinned), built cold by
    the agent vs ``uv venv`` + ``uv pip install`` by hand (same warm uv cache; target
    <= 1.2x), then reused warm (target <= 50 ms). Skipped with ``--offline``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from agent.core.models import Script, Task  # noqa: E402
from agent.execution.env import EnvCache, find_uv  # noqa: E402

QUEUE = "bench"
TASK_CODE = "print('hello from the task', flush=True)\n"
ONLINE_REQUIREMENTS = ["requests", "six"]
TARGETS = {
    "pickup p50, enqueue -> first task output": "<= 150 ms",
    "warm env reuse p50": "<= 50 ms",
    "cold build ratio agent / uv by hand": "<= 1.2x",
}


def iris_step_requirements() -> list[str]:
    """What ``step_one`` of examples/iris_pipeline.py records when launched from here."""
    sys.path.insert(0, str(REPO_ROOT / "examples"))
    import iris_pipeline

    return list(iris_pipeline.step_one.packages)


# -- helpers ----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def make_wheel(dest: Path, name: str, version: str) -> Path:
    """A pure-Python wheel with one module ``name`` (for offline installs)."""
    module = name.replace("-", "_")
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n",
        f"{module}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ),
        f"{module}-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{module}-{version}.dist-info/RECORD,,")
    files[f"{module}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = dest / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


# -- (a) and (d): a real daemon ---------------------------------------------------


class DaemonBench:
    """An ``agent daemon`` subprocess on a temp ``AGENT_HOME`` and a store to drive it."""

    def __init__(self, home: Path, requirements: list[str]):
        self.home = home
        self.requirements = requirements
        self.proc: subprocess.Popen[bytes] | None = None
        self.store = None

    def __enter__(self) -> DaemonBench:
        from agent.store.factory import backend_for_url

        self.store = backend_for_url(f"sqlite:///{self.home / 'agent.db'}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
        env["AGENT_HOME"] = str(self.home)
        log = (self.home / "daemon.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli.main", "daemon", "--queue", QUEUE],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not self.store.list_workers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not start; see {self.home / 'daemon.log'}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.store is not None:
            self.store.close()

    def new_task(self) -> str:
        script = Script(code=TASK_CODE, requirements=list(self.requirements))
        return self.store.create_task(Task(name="bench", project="bench", script=script)).id

    def wait_done(self, task_ids: Sequence[str], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        pending = list(task_ids)
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} task(s) not done in {timeout:g} s")
            status = self.store.get_task(pending[0]).status
            if status in ("completed", "failed", "stopped"):
                if status != "completed":
                    logs = [line.text for line in self.store.get_logs(pending[0])]
                    raise RuntimeError(f"bench task {status}: {logs[-5:]}")
                pending.pop(0)
            else:
                time.sleep(0.01)

    def pickup(self) -> tuple[float, float]:
        """Run one task; (enqueue -> first log line, enqueue -> first task output) in s."""
        task_id = self.new_task()
        enqueued = time.time()
        self.store.enqueue(task_id, QUEUE)
        self.wait_done([task_id])
        lines = self.store.get_logs(task_id)
        if not any("reusing environment" in line.text for line in lines):
            raise RuntimeError("the task did not run in a warm environment")
        first_output = next(line.ts for line in lines if "hello from the task" in line.text)
        return lines[0].ts - enqueued, first_output - enqueued

    def throughput(self, count: int) -> float:
        """Tasks per minute: ``count`` tasks enqueued at once, until the last completes."""
        ids = [self.new_task() for _ in range(count)]
        started = time.time()
        for task_id in ids:
            self.store.enqueue(task_id, QUEUE)
        self.wait_done(ids)
        finished = max(self.store.get_task(task_id).completed or 0.0 for task_id in ids)
        return count / (finished - started) * 60


def bench_daemon(root: Path, count: int, requirements: list[str], agent_toml: str) -> dict:
    home = root / "home"
    home.mkdir(parents=True)
    (home / "agent.toml").write_text(agent_toml)
    with DaemonBench(home, requirements) as bench:
        warmup = bench.new_task()
        bench.store.enqueue(warmup, QUEUE)  # builds the env: what follows is warm
        bench.wait_done([warmup])
        bench.pickup()
        samples = [bench.pickup() for _ in range(count)]
        per_minute = bench.throughput(count)
    first_line = [s[0] for s in samples]
    first_output = [s[1] for s in samples]
    return {"first_line": first_line, "first_output": first_output, "per_minute": per_minute}


# -- (b) warm reuse ----------------------------------------------------------------


def bench_warm_reuse(
    root: Path, requirements: list[str], install: dict, rounds: int
) -> list[float]:
    cache = EnvCache(root / "venvs")
    cache.get(requirements, log=lambda _l: None, **install).release()

    def reuse() -> None:
        env = cache.get(requirements, log=lambda _l: None, **install)
        assert env.reused
        env.release()

    return [timed(reuse) for _ in range(rounds)]


# -- (c) cold build vs uv by hand ----------------------------------------------------


def _uv_args(install: dict) -> list[str]:
    args = ["--no-index"] if install.get("no_index") else []
    if install.get("find_links"):
        args += ["--find-links", str(install["find_links"])]
    return args


def build_by_hand(uv: list[str], path: Path, requirements: list[str], install: dict) -> None:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": True}
    subprocess.run([*uv, "venv", "--python", sys.executable, str(path)], **quiet)
    python = str(path / "bin" / "python")
    subprocess.run(
        [*uv, "pip", "install", "--python", python, *_uv_args(install), *requirements], **quiet
    )


def build_with_agent(path: Path, requirements: list[str], install: dict) -> None:
    cache = EnvCache(path)
    cache.get(requirements, log=lambda _l: None, **install).release()


def bench_cold_build(
    root: Path, requirements: list[str], install: dict, rounds: int, cold_cache: bool
) -> tuple[list[float], list[float]]:
    uv = find_uv()
    if uv is None:
        raise RuntimeError("uv is not installed: the comparison needs it")
    cache_dir = root / "uv-cache"
    os.environ["UV_CACHE_DIR"] = str(cache_dir)  # both sides (EnvCache passes it on)
    if not cold_cache:
        build_by_hand(uv, root / "warmup", requirements, install)  # fill the uv cache
    sides: dict[str, tuple[Callable[[Path], None], list[float]]] = {
        "hand": (lambda path: build_by_hand(uv, path, requirements, install), []),
        "agent": (lambda path: build_with_agent(path, requirements, install), []),
    }
    for i in range(rounds):  # alternate who goes first, so drift hits both sides alike
        order = list(sides.items()) if i % 2 == 0 else list(reversed(sides.items()))
        for label, (build, times) in order:
            if cold_cache:
                shutil.rmtree(cache_dir, ignore_errors=True)
            target = root / f"{label}-{i}"
            started = time.perf_counter()
            build(target)
            times.append(time.perf_counter() - started)
    return sides["agent"][1], sides["hand"][1]


# -- main ------------------------------------------------------------------------------


def setup_requirements(root: Path, offline: bool) -> tuple[list[str], dict, str]:
    """(requirements, install options, agent.toml text) for online or offline runs."""
    if not offline:
        return ONLINE_REQUIREMENTS, {}, "[agent]\n"
    house = root / "wheelhouse"
    house.mkdir()
    for name in ("bench-a", "bench-b"):
        make_wheel(house, name, "1.0")
    install = {"find_links": str(house), "no_index": True}
    toml = f"[agent]\nfind_links = {str(house)!r}\nno_index = true\n"
    return ["bench-a==1.0", "bench-b==1.0"], install, toml


def print_table(rows: list[tuple[str, str, str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=30, help="tasks for (a) and (d)")
    parser.add_argument("--reuse-rounds", type=int, default=50, help="samples for (b)")
    parser.add_argument("--build-rounds", type=int, default=6, help="builds per side for (c)")
    parser.add_argument("--offline", action="store_true", help="local wheels, no PyPI")
    parser.add_argument("--cold-cache", action="store_true", help="(c) with empty uv caches")
    parser.add_argument("--iris-rounds", type=int, default=3, help="builds per side for (e)")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        root = Path(tmp)
        requirements, install, toml = setup_requirements(root, opts.offline)
        print(f"requirements: {' '.join(requirements)} ({'offline' if opts.offline else 'PyPI'})")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)

        daemon = bench_daemon(root / "daemon", opts.tasks, requirements, toml)
        reuse = bench_warm_reuse(root / "reuse", requirements, install, opts.reuse_rounds)
        agent_times, hand_times = bench_cold_build(
            root / "build", requirements, install, opts.build_rounds, opts.cold_cache
        )
        iris = None if opts.offline else iris_step_requirements()
        if iris:
            print(f"iris step requirements: {' '.join(iris)}", flush=True)
            iris_agent, iris_hand = bench_cold_build(
                root / "iris", iris, {}, opts.iris_rounds, False
            )
            iris_reuse = bench_warm_reuse(root / "iris-reuse", iris, {}, opts.reuse_rounds)

    line, output = daemon["first_line"], daemon["first_output"]
    agent_build, hand_build = statistics.median(agent_times), statistics.median(hand_times)
    cache_note = "empty uv cache each" if opts.cold_cache else "same warm uv cache"
    rows = [
        ("measure", "value", "target"),
        (
            "pickup p50 / p99, enqueue -> first log line",
            f"{ms(statistics.median(line))} / {ms(percentile(line, 99))}",
            "",
        ),
        (
            "pickup p50 / p99, enqueue -> first task output",
            f"{ms(statistics.median(output))} / {ms(percentile(output, 99))}",
            TARGETS["pickup p50, enqueue -> first task output"],
        ),
        (
            "warm env reuse p50 / p99 (EnvCache.get)",
            f"{ms(statistics.median(reuse))} / {ms(percentile(reuse, 99))}",
            TARGETS["warm env reuse p50"],
        ),
        (f"cold build, agent (median of {len(agent_times)})", f"{agent_build:.2f} s", ""),
        (f"cold build, uv by hand ({cache_note})", f"{hand_build:.2f} s", ""),
        (
            "cold build ratio agent / uv by hand",
            f"{agent_build / hand_build:.2f}x",
            TARGETS["cold build ratio agent / uv by hand"],
        ),
        ("trivial tasks per minute, one agent", f"{daemon['per_minute']:.0f}", ""),
    ]
    if iris:
        agent_iris, hand_iris = statistics.median(iris_agent), statistics.median(iris_hand)
        rows += [
            (f"iris step env, agent (median of {len(iris_agent)})", f"{agent_iris:.2f} s", ""),
            ("iris step env, uv by hand (same warm uv cache)", f"{hand_iris:.2f} s", ""),
            (
                "iris step env ratio agent / uv by hand",
                f"{agent_iris / hand_iris:.2f}x",
                TARGETS["cold build ratio agent / uv by hand"],
            ),
            (
                "iris step env warm reuse p50 / p99",
                f"{ms(statistics.median(iris_reuse))} / {ms(percentile(iris_reuse, 99))}",
                TARGETS["warm env reuse p50"],
            ),
        ]
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
