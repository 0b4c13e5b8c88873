"""Pipeline benchmark: pipeline-agent's three modes against Metaflow, Prefect and ClearML.

Two flows, each timed as a whole process (interpreter start to exit) in its own fresh
store:

- ``linear``: 4 trivial steps in a chain;
- ``fanout``: a start step, ``--width`` (50) branches, a join.

Runs: pipeline-agent ``debug_pipeline()``, ``run_locally()`` and remote (a services-mode
agent and a default-queue agent with as many ``--slots`` as local mode runs steps at once,
on warm environments with warm starts, timed from the enqueuing process's start to the
pipeline task's end); Metaflow's local runtime (``run --max-workers 2``);
Prefect (its default local runtime); ClearML's ``debug_pipeline()`` with
``CLEARML_OFFLINE_MODE=1``. The peers are installed into ``bench/.venv`` (``uv`` or pip),
with this checkout, and every run uses that interpreter with compiled bytecode, so no
framework pays for compiling its sources.

Also measured: pipeline-agent's debug-mode overhead per step, in process (a pipeline of
``--overhead-steps`` trivial steps minus the same functions called directly).

    python bench/pipeline.py [--repeat 3] [--width 50] [--only agent,metaflow,...]
                             [--skip-install] [--no-remote]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / "bench" / ".venv"
PEERS = ("metaflow", "prefect", "clearml")
FLOWS = ("linear", "fanout")

# -- flows ----------------------------------------------------------------------------------

AGENT_FLOW = """
import os, sys, time
from agent.automation.controller import PipelineDecorator


@PipelineDecorator.component(return_values=["x"])
def first():
    return 1


@PipelineDecorator.component(return_values=["x"])
def step(x):
    return x + 1


@PipelineDecorator.component(return_values=["x"])
def branch(x, i):
    return x + i


@PipelineDecorator.component(return_values=["x"])
def join(values):
    return sum(values)


@PipelineDecorator.pipeline(name="bench-linear", project="bench", version="1",
                            default_queue="default", return_value="x")
def linear():
    x = first()
    for _ in range(3):
        x = step(x)
    return x


@PipelineDecorator.pipeline(name="bench-fanout", project="bench", version="1",
                            default_queue="default", return_value="x")
def fanout(width: int = WIDTH):
    x = first()
    return join([branch(x, i) for i in range(width)])


if __name__ == "__main__":
    # An agent runs this file again as the pipeline's controller, without BENCH_*.
    mode = os.environ.get("BENCH_MODE", "remote")
    if mode == "debug":
        PipelineDecorator.debug_pipeline()
    elif mode == "local":
        PipelineDecorator.run_locally()
    FLOW_FUNCTION()
"""

CLEARML_FLOW = AGENT_FLOW.replace(
    "from agent.automation.controller import", "from clearml.automation.controller import"
)

OVERHEAD = """
import sys, time
sys.path.insert(0, sys.argv[1])
import agent_flow
from agent.automation.controller import PipelineDecorator
from agent.store.factory import get_backend

steps = int(sys.argv[2])
get_backend()
PipelineDecorator.debug_pipeline()
agent_flow.fanout(width=3)  # warm: imports, schema, first tasks
start = time.perf_counter()
agent_flow.fanout(width=steps - 2)
pipeline = time.perf_counter() - start
start = time.perf_counter()
x = agent_flow.first.function()
agent_flow.join.function([agent_flow.branch.function(x, i) for i in range(steps - 2)])
direct = time.perf_counter() - start
print(f"OVERHEAD_MS={(pipeline - direct) / steps * 1000:.3f}")
"""

METAFLOW_LINEAR = """
from metaflow import FlowSpec, step


class LinearFlow(FlowSpec):
    @step
    def start(self):
        self.x = 1
        self.next(self.b)

    @step
    def b(self):
        self.x += 1
        self.next(self.c)

    @step
    def c(self):
        self.x += 1
        self.next(self.end)

    @step
    def end(self):
        self.x += 1


if __name__ == "__main__":
    LinearFlow()
"""

METAFLOW_FANOUT = """
from metaflow import FlowSpec, step


class FanoutFlow(FlowSpec):
    @step
    def start(self):
        self.x = 1
        self.items = list(range(WIDTH))
        self.next(self.branch, foreach="items")

    @step
    def branch(self):
        self.x = self.x + self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.x = sum(i.x for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FanoutFlow()
"""

PREFECT_FLOW = """
import os
from prefect import flow, task


@task
def first():
    return 1


@task
def step(x):
    return x + 1


@task
def branch(x, i):
    return x + i


@task
def join(values):
    return sum(values)


@flow
def linear():
    x = first()
    for _ in range(3):
        x = step(x)
    return x


@flow
def fanout(width: int = WIDTH):
    x = first()
    return join([branch.submit(x, i) for i in range(width)])


if __name__ == "__main__":
    (linear if os.environ["BENCH_FLOW"] == "linear" else fanout)()
"""


# -- environment ----------------------------------------------------------------------------
def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv(skip_install: bool) -> Path:
    """``bench/.venv`` with metaflow, prefect, clearml and this checkout, bytecode compiled."""
    python = venv_python()
    if not skip_install or not python.exists():
        uv = shutil.which("uv")
        if not python.exists():
            if uv:
                _check([uv, "venv", "-q", str(VENV), "-p", sys.executable])
            else:
                _check([sys.executable, "-m", "venv", str(VENV)])
        if uv:
            _check([uv, "pip", "install", "-q", "-p", str(python), *PEERS, "-e", str(REPO)])
        else:
            _check([str(python), "-m", "pip", "install", "-q", *PEERS, "-e", str(REPO)])
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    subprocess.run(
        [str(python), "-m", "compileall", "-q", "-j", "0", site, str(REPO / "agent"),
         str(REPO / "services_mode")],
        capture_output=True, check=False,
    )  # fmt: skip
    return python


def local_parallelism() -> int:
    """How many step processes local mode runs at once on this machine (its own rule)."""
    sys.path.insert(0, str(REPO))
    from agent.pipeline.launchers import local_parallelism as rule

    return rule()


def _check(argv: list[str]) -> None:
    subprocess.run(argv, check=True)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without agent/bytecode settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENT_", "METAFLOW_", "PREFECT_", "CLEARML_"))
        and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "VIRTUAL_ENV")
    }
    env.update(extra)
    return env


# -- timing ---------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    flow: str
    seconds: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def best(self) -> float | None:
        return min(self.seconds) if self.seconds else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None


def timed(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
        raise RuntimeError(f"exit {proc.returncode}: " + " | ".join(tail))
    return elapsed


@dataclass
class Job:
    """One measurement: a result to fill and how to take one sample of it."""

    result: Result
    once: object

    def sample(self) -> None:
        if self.result.error:
            return  # failed before: do not retry in every round
        try:
            self.result.seconds.append(self.once())
        except Exception as exc:  # a runner that fails is reported, the bench goes on
            self.result.error = str(exc)[:400]


def run_rounds(jobs: list[Job], repeat: int) -> None:
    """Take the samples round-robin, so that a change of load on a shared machine hits
    every runner alike (best of the rounds is reported)."""
    for round_number in range(repeat):
        for job in jobs:
            job.sample()
        print(f"round {round_number + 1}/{repeat} done", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, python: Path, work: Path, width: int, repeat: int):
        self.python = str(python)
        self.work = work
        self.width = width
        self.repeat = repeat
        self.flows = work / "flows"
        self.flows.mkdir(parents=True)
        sources = {
            "agent_flow.py": AGENT_FLOW.replace("FLOW_FUNCTION()", "pass"),
            "agent_linear.py": AGENT_FLOW.replace("FLOW_FUNCTION", "linear"),
            "agent_fanout.py": AGENT_FLOW.replace("FLOW_FUNCTION", "fanout"),
            "clearml_linear.py": CLEARML_FLOW.replace("FLOW_FUNCTION", "linear"),
            "clearml_fanout.py": CLEARML_FLOW.replace("FLOW_FUNCTION", "fanout"),
            "overhead.py": OVERHEAD,
            "mf_linear.py": METAFLOW_LINEAR,
            "mf_fanout.py": METAFLOW_FANOUT,
            "prefect_flow.py": PREFECT_FLOW,
        }
        for name, text in sources.items():
            (self.flows / name).write_text(textwrap.dedent(text).replace("WIDTH", str(width)))
        self._homes = 0

    def home(self, prefix: str) -> Path:
        self._homes += 1
        path = self.work / f"{prefix}-{self._homes}"
        path.mkdir()
        return path

    # pipeline-agent -------------------------------------------------------------------------
    def agent(self, mode: str, flow: str) -> Job:
        def once() -> float:
            env = clean_env(AGENT_HOME=str(self.home("agent")), BENCH_MODE=mode)
            return timed([self.python, f"agent_{flow}.py"], self.flows, env)

        return Job(Result(f"agent {mode}", flow), once)

    def start_agents(self) -> None:
        """A services-mode agent and a default-queue agent on one store, warmed up; the
        default agent runs as many steps at once as local mode does (``--slots``)."""
        home = self.remote_home = self.home("remote")
        self.remote_env = clean_env(AGENT_HOME=str(home))
        self.slots = local_parallelism()
        print(
            f"remote mode: default-queue agent with --slots {self.slots} "
            "(local mode's step parallelism here), warm starts on",
            file=sys.stderr,
            flush=True,
        )
        self.daemons = [
            self._daemon(self.remote_env, home, "--queue", "services", "--services-mode", "4"),
            self._daemon(self.remote_env, home, "--queue", "default", "--slots", str(self.slots)),
        ]
        time.sleep(1.0)
        self._remote_once(self.remote_env, home, "linear")  # warm: builds the step env

    def stop_agents(self) -> None:
        for daemon in getattr(self, "daemons", []):
            with _suppress():
                os.killpg(daemon.pid, signal.SIGTERM)
            with _suppress():
                daemon.wait(15)

    def agent_remote(self, flow: str) -> Job:
        return Job(
            Result("agent remote", flow),
            lambda: self._remote_once(self.remote_env, self.remote_home, flow),
        )

    def _daemon(self, env: dict[str, str], home: Path, *args: str) -> subprocess.Popen:
        log = open(home / f"daemon-{len(list(home.glob('daemon-*')))}.log", "ab")
        return subprocess.Popen(
            [self.python, "-m", "agent.cli.main", "daemon", *args],
            env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def _remote_once(self, env: dict[str, str], home: Path, flow: str) -> float:
        start = time.perf_counter()
        proc = subprocess.run(
            [self.python, f"agent_{flow}.py"],
            cwd=self.flows,
            env={**env, "BENCH_MODE": "remote"},
            capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        task_id = proc.stdout.split(" as task ")[1].split()[0]
        status = self._wait_task(env, task_id)
        elapsed = time.perf_counter() - start
        if status != "completed":
            raise RuntimeError(f"remote pipeline {task_id} ended {status}")
        return elapsed

    def _wait_task(self, env: dict[str, str], task_id: str, timeout: float = 300) -> str:
        watcher = textwrap.dedent(
            f"""
            import time
            from agent.store.factory import get_backend
            store = get_backend()
            deadline = time.time() + {timeout}
            while time.time() < deadline:
                status = store.get_task({task_id!r}).status
                if status in ("completed", "failed", "stopped"):
                    print(status)
                    break
                time.sleep(0.005)
            """
        )
        out = subprocess.run(
            [self.python, "-c", watcher], env=env, capture_output=True, text=True, check=True
        )
        return out.stdout.strip() or "timeout"

    def overhead_ms(self, steps: int) -> float | None:
        env = clean_env(AGENT_HOME=str(self.home("overhead")))
        proc = subprocess.run(
            [self.python, str(self.flows / "overhead.py"), str(self.flows), str(steps)],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        for line in proc.stdout.splitlines():
            if line.startswith("OVERHEAD_MS="):
                return float(line.split("=", 1)[1])
        print(proc.stdout, proc.stderr, file=sys.stderr)
        return None

    # peers ------------------------------------------------------------------------------------
    def metaflow(self, flow: str) -> Job:
        def once() -> float:
            home = self.home("metaflow")
            script = self.flows / f"mf_{flow}.py"
            env = clean_env(
                USERNAME="bench",
                METAFLOW_HOME=str(home),
                METAFLOW_DATASTORE_SYSROOT_LOCAL=str(home),
            )
            return timed(
                [self.python, str(script), "--quiet", "run", "--max-workers", "2"], home, env
            )

        return Job(Result("metaflow local", flow), once)

    def prefect(self, flow: str) -> Job:
        def once() -> float:
            env = clean_env(
                PREFECT_HOME=str(self.home("prefect")),
                BENCH_FLOW=flow,
                DO_NOT_TRACK="1",
                PREFECT_SERVER_ANALYTICS_ENABLED="false",
                PREFECT_LOGGING_LEVEL="WARNING",
            )
            return timed([self.python, "prefect_flow.py"], self.flows, env)

        return Job(Result("prefect", flow), once)

    def clearml(self, flow: str) -> Job:
        def once() -> float:
            home = self.home("clearml")
            env = clean_env(
                CLEARML_OFFLINE_MODE="1",
                CLEARML_CACHE_DIR=str(home),
                HOME=str(home),
                BENCH_MODE="debug",
            )
            return timed([self.python, f"clearml_{flow}.py"], self.flows, env)

        return Job(Result("clearml debug", flow), once)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


# -- report ---------------------------------------------------------------------------------
def fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:7.3f}"


def ratio(slow: Result | None, fast: Result | None) -> float | None:
    if not slow or not fast or not slow.best or not fast.best:
        return None
    return slow.best / fast.best


def report(
    results: list[Result], overhead: float | None, steps: int, slots: int | None = None
) -> dict:
    by = {(r.name, r.flow): r for r in results}
    print("\nwhole-process wall time, seconds (best / median of the runs)\n")
    print(f"{'runner':18s} {'flow':8s} {'best':>8s} {'median':>8s}  note")
    for r in results:
        note = f"FAILED: {r.error}" if r.error and not r.seconds else ""
        print(f"{r.name:18s} {r.flow:8s} {fmt(r.best)} {fmt(r.median)}  {note}")
    print(f"\ndebug-mode overhead per step, in process ({steps} steps, best run): "
          f"{'-' if overhead is None else f'{overhead:.2f} ms'} (target <= 5 ms)")  # fmt: skip
    checks = []
    for flow in FLOWS:
        debug, local, remote = (by.get((f"agent {m}", flow)) for m in ("debug", "local", "remote"))
        for peer, mine, target, label in (
            ("clearml debug", debug, 3.0, "debug vs ClearML debug"),
            ("metaflow local", local, 3.0, "local vs Metaflow local"),
            ("prefect", local, None, "local vs Prefect"),
        ):
            value = ratio(by.get((peer, flow)), mine)
            if value is not None:
                checks.append((flow, label, value, target))
        if remote and local and remote.best and local.best:
            checks.append((flow, "remote / local (<= 2x)", remote.best / local.best, None))
    if slots is not None:
        print(f"\nremote: default-queue agent with --slots {slots} (= local mode's parallelism)")
    print("\nratios (peer time / our time; higher is faster for us)\n")
    for flow, label, value, target in checks:
        verdict = "" if target is None else ("  ok" if value >= target else f"  below {target:g}x")
        if label.startswith("remote"):
            verdict = "  ok" if value <= 2.0 else "  above 2x"
        print(f"{flow:8s} {label:28s} {value:6.2f}x{verdict}")
    return {
        "results": [
            {"runner": r.name, "flow": r.flow, "seconds": r.seconds, "error": r.error}
            for r in results
        ],
        "debug_overhead_ms_per_step": overhead,
        "ratios": [{"flow": f, "what": label, "ratio": v} for f, label, v, _ in checks],
        "remote_slots": slots,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best wins)")
    parser.add_argument("--width", type=int, default=50, help="branches of the fan-out")
    parser.add_argument("--overhead-steps", type=int, default=102)
    parser.add_argument("--only", default="agent,metaflow,prefect,clearml")
    parser.add_argument("--skip-install", action="store_true", help="use bench/.venv as it is")
    parser.add_argument("--no-remote", action="store_true", help="skip the remote mode (agents)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))

    python = ensure_venv(args.skip_install)
    work = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    bench = Bench(python, work, args.width, args.repeat)
    jobs: list[Job] = []
    overhead = None
    try:
        for flow in FLOWS:
            if "agent" in only:
                jobs += [bench.agent("debug", flow), bench.agent("local", flow)]
            if "metaflow" in only:
                jobs.append(bench.metaflow(flow))
            if "prefect" in only:
                jobs.append(bench.prefect(flow))
            if "clearml" in only:
                jobs.append(bench.clearml(flow))
        remote = "agent" in only and not args.no_remote
        if remote:
            bench.start_agents()
            jobs += [bench.agent_remote(flow) for flow in FLOWS]
        run_rounds(jobs, args.repeat)
        if "agent" in only:
            samples = [bench.overhead_ms(args.overhead_steps) for _ in range(args.repeat)]
            overhead = min((s for s in samples if s is not None), default=None)
    finally:
        bench.stop_agents()
        shutil.rmtree(work, ignore_errors=True)
    results = sorted((job.result for job in jobs), key=lambda r: (FLOWS.index(r.flow), r.name))
    summary = report(results, overhead, args.overhead_steps, getattr(bench, "slots", None))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
