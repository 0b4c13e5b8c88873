"""Several hosts, one server: a 200-step pipeline launched from a client host runs on two
agent hosts that reach the server only over the network (see :mod:`tests.fleet.conftest`),
its artifacts passing between hosts through S3 or the server; when one agent host's
daemon is killed, its steps are lost with its lease and run again on the other host.

What each attempt of a step did is in its runtime (see :mod:`tests.fleet.fan_out`): the
test reads it, and every other fact, from the store in PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from agent.core.models import Task
from tests.fleet.conftest import Fleet
from tests.fleet.netns import wait_gone
from tests.pipeline.support import launch_remote, wait_finished, wait_for

pytestmark = pytest.mark.slow

PIPELINE = Path(__file__).resolve().parent / "fan_out.py"
STEPS = 200
TOTAL = sum(i * i for i in range(196))
#: How long each square works in the run whose agent is killed: long enough to be cut short.
PAUSE = 0.4


def _launch(fleet: Fleet, tmp_path: Path, run: str, pause: float = 0.0) -> str:
    # the script travels inline: from a directory that is no git repository
    script = tmp_path / PIPELINE.name
    shutil.copy(PIPELINE, script)
    env = fleet.client_env()
    return launch_remote(script, env, run, str(pause), prefix=fleet.client.command([]))


def _attempts(task: Task) -> list[dict]:
    """The recorded attempts of a step, oldest first, each with its ``host`` and ``pid``."""
    found = []
    for key, value in (task.runtime or {}).items():
        if key.startswith("attempt "):
            _, host, pid = key.split()
            found.append({**value, "host": host, "pid": int(pid)})
    return sorted(found, key=lambda a: a["start"])


def _finished(fleet: Fleet, pipeline_id: str, timeout: float = 420) -> list[Task]:
    pipe = wait_finished(fleet.store, pipeline_id, timeout)
    steps = [fleet.store.get_task(t.id) for t in fleet.store.query_tasks(parent=pipeline_id)]
    failed = [
        (s.name, s.status_message, s.worker, s.runtime) for s in steps if s.status == "failed"
    ]
    assert pipe.status == "completed", f"{pipe.status_message}\n{failed}\n{fleet.log_tails()}"
    # The controller marks itself completed (Task.close) before it exits; its agent ships
    # the last lines of its output once it has.
    wait_for(
        lambda: any(f"total={TOTAL}" in line.text for line in fleet.store.get_logs(pipeline_id)),
        30, "the controller's last lines in its log",
    )  # fmt: skip
    assert len(steps) == STEPS
    assert {s.status for s in steps} == {"completed"}
    return steps


def _address_of(fleet: Fleet) -> dict[str, str]:
    return {host.name: host.address for host in fleet.agents.values()}


def test_a_200_step_pipeline_runs_once_per_step_across_two_hosts(fleet: Fleet, tmp_path):
    steps = _finished(fleet, _launch(fleet, tmp_path, "once"))
    address = _address_of(fleet)
    for step in steps:
        [attempt] = _attempts(step)  # claimed and run exactly once
        assert attempt["end"] is not None
        assert attempt["host"] == address[step.worker], step.name
        assert "retries" not in step.runtime
    hosts = {a["host"] for s in steps for a in _attempts(s)}
    assert hosts == set(address.values())  # both agent hosts ran steps
    crossed = [a for s in steps for a in _attempts(s) if set(a["read"]) - {a["host"]}]
    assert crossed, "no step read an artifact made on the other host"
    where = fleet.env["AGENT_FILES_URL"]
    uris = [a.uri for s in steps for a in fleet.store.get_artifacts(s.id).values()]
    assert uris and all(u.startswith(where) for u in uris), (where, uris[:3])


@pytest.mark.parametrize("fleet", ["server"], indirect=True)  # the quicker: no boto3
def test_steps_of_a_killed_agent_host_run_again_on_the_other(fleet: Fleet, tmp_path, caplog):
    # the server's reaper fails a lapsed lease, or this test's own reads of the store do
    caplog.set_level(logging.INFO, logger="agent.store")
    pipeline_id = _launch(fleet, tmp_path, "kill", pause=PAUSE)
    victim, survivor = fleet.agents["agent-b"], fleet.agents["agent-a"]

    def on_victim() -> list[Task]:
        tasks = fleet.store.query_tasks(parent=pipeline_id, status="in_progress")
        return [t for t in tasks if t.worker == victim.name]

    def midway() -> bool:  # a good part done, and a square's pause just begun on the victim
        done = fleet.store.query_tasks(parent=pipeline_id, status="completed")
        started = [a["start"] for t in on_victim() for a in _attempts(t) if a["end"] is None]
        return len(done) >= 40 and any(time.time() - start < PAUSE / 2 for start in started)

    wait_for(midway, 300, "the victim to be midway through its steps")
    os.kill(fleet.daemons[victim.name].proc.pid, signal.SIGKILL)
    lost = [t.id for t in on_victim()]  # in progress until their lease lapses
    dead = wait_gone(victim)  # its tasks' processes die with it

    steps = _finished(fleet, pipeline_id)
    by_id = {s.id: s for s in steps}
    server_log = (fleet.homes / "server" / "server.log").read_text()
    lines = [*server_log.splitlines(), *(r.getMessage() for r in caplog.records)]
    reaped = [line for line in lines if "worker lost" in line]
    assert lost and all(any(task_id in line for line in reaped) for task_id in lost), reaped
    assert any(a["end"] is None for t in lost for a in _attempts(by_id[t]))  # one was cut short
    for task_id in lost:
        # Killed before it recorded, maybe; or after its step recorded its end, before its
        # completion reached the server (the step then ran again: not at the same time,
        # as the check of every step below says).
        *killed, again = _attempts(by_id[task_id])
        assert all(a["host"] == victim.address for a in killed)
        assert again["host"] == survivor.address and again["end"] is not None
        assert by_id[task_id].runtime["retries"] == 1
    for step in steps:
        attempts = _attempts(step)
        for before, after in zip(attempts, attempts[1:], strict=False):
            ended = before["end"] if before["end"] is not None else dead
            assert ended <= after["start"], f"{step.name} ran twice at once: {attempts}"
        assert all(a["host"] == survivor.address for a in attempts if a["start"] > dead)
