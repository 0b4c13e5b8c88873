"""``agent logs``: print, tail, follow until the task ends, Ctrl-C."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from agent.cli.logs import StatusLine, follow_logs
from agent.store.sql import SqlBackend


def test_logs_prints_every_line(invoke, backend, make_task):
    task = make_task()
    backend.append_logs(task.id, [f"line {i}" for i in range(25)] + ["trailing newline\n"])
    result = invoke("logs", task.id[:6])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"line {i}" for i in range(25)] + ["trailing newline"]


def test_logs_tail(invoke, backend, make_task):
    task = make_task()
    backend.append_logs(task.id, [f"line {i}" for i in range(10)])
    assert invoke("logs", task.id, "--tail", "3").stdout == "line 7\nline 8\nline 9\n"
    assert invoke("logs", task.id, "--tail", "0").stdout == ""
    assert invoke("logs", task.id, "--tail", "-1").exit_code == 2


def test_logs_json_is_one_object_per_line(invoke, backend, make_task):
    task = make_task()
    backend.append_logs(task.id, ["plain", (1700000000.5, "error", "it broke: \u00e9")])
    result = invoke("logs", task.id, "--json")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(x["seq"], x["level"], x["text"]) for x in lines] == [
        (1, "info", "plain"),
        (2, "error", "it broke: \u00e9"),
    ]
    assert lines[1]["ts"] == 1700000000.5
    tail = invoke("logs", task.id, "--json", "--tail", "1").stdout
    assert [json.loads(line)["text"] for line in tail.splitlines()] == ["it broke: \u00e9"]


def test_logs_of_unknown_task(invoke):
    result = invoke("logs", "deadbeef")
    assert result.exit_code == 2 and result.stderr.startswith("error: no task with id")


def follow_while_a_step_writes(invoke, agent_home, task_id: str, lines: list[str], *args: str):
    """``agent logs TASK --follow ARGS`` while another store writes ``lines`` and then
    completes the task; click's Result."""
    writer_store = SqlBackend(f"sqlite:///{agent_home / 'agent.db'}")

    def run_step() -> None:
        time.sleep(0.3)
        for line in lines:
            writer_store.append_logs(task_id, [line])
            time.sleep(0.05)
        writer_store.set_status(task_id, "completed")

    writer = threading.Thread(target=run_step)
    writer.start()
    try:
        return invoke("logs", task_id, "--follow", *args)
    finally:
        writer.join()
        writer_store.close()


@pytest.mark.timeout(60)
def test_follow_ends_when_the_task_completes(invoke, backend, running_task, agent_home):
    task = running_task()
    backend.append_logs(task.id, ["before"])
    written = [f"step {i}" for i in range(5)] + ["last words"]
    result = follow_while_a_step_writes(invoke, agent_home, task.id, written, "--tail", "1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["before", *written]
    assert backend.get_task(task.id).status == "completed"


def test_follow_reads_lines_written_as_the_task_finished(backend, running_task):
    """Status is read before lines, so the final pass still sees the last lines."""
    task = running_task()
    seen: list[str] = []
    naps: list[float] = []

    def sleep(seconds: float) -> None:  # the "runner" acts while the follower sleeps
        if not naps:
            backend.append_logs(task.id, ["final line"])
            backend.set_status(task.id, "failed", "exit code 1")
        naps.append(seconds)

    last = follow_logs(backend, task.id, 0, lambda line: seen.append(line.text), sleep=sleep)
    assert seen == ["final line"] and last == 1
    assert naps[0] == 0.2 and len(naps) == 10  # then the log had to stay quiet 2 s of polls


def test_follow_reads_lines_that_arrive_after_the_final_status(backend, running_task):
    """A task that closes itself is final before the agent has shipped its last output."""
    task = running_task()
    backend.set_status(task.id, "completed")  # Task.close() in the task
    seen: list[str] = []
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:  # the agent's last batch lands 0.6 s later
            backend.append_logs(task.id, ["Accuracy=100%", "task process exited with code 0"])

    follow_logs(backend, task.id, 0, lambda line: seen.append(line.text), sleep=sleep)
    assert seen == ["Accuracy=100%", "task process exited with code 0"]


@pytest.mark.timeout(60)
def test_follow_json_streams_json_lines(invoke, backend, running_task, agent_home):
    task = running_task()
    backend.append_logs(task.id, ["before"])
    result = follow_while_a_step_writes(invoke, agent_home, task.id, ["after"], "--json")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == ["before", "after"]


def test_follow_of_a_finished_task_returns_at_once(invoke, backend, running_task):
    task = running_task()
    backend.append_logs(task.id, ["done"])
    backend.set_status(task.id, "completed")
    result = invoke("logs", task.id, "-f")
    assert result.exit_code == 0 and result.stdout == "done\n"


@pytest.mark.timeout(60)
def test_ctrl_c_while_following_exits_130_quietly(backend, running_task, agent_home):
    task = running_task()
    backend.append_logs(task.id, ["first"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli.main", "logs", task.id, "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "first\n"  # following now
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err and "error" not in err
    assert out == ""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_follow_says_what_a_queued_task_waits_for_until_it_runs(backend, make_task):
    ahead, task = make_task(name="ahead"), make_task(name="mine")
    backend.enqueue(ahead.id, "default")
    backend.enqueue(task.id, "default")
    moves = [
        lambda: backend.register_worker("w1", ["default"], stats={"heartbeat_s": 5.0}),
        lambda: backend.claim(["default"], "w1"),  # takes the one ahead
        lambda: None,  # nothing changed: the line is not printed again
        lambda: backend.claim(["default"], "w1"),
        lambda: backend.set_status(task.id, "completed"),
    ]
    out = io.StringIO()
    status = StatusLine(out)

    def sleep(_seconds: float) -> None:
        if moves:
            moves.pop(0)()

    follow_logs(backend, task.id, 0, lambda line: None, sleep=sleep, waiting=status.show)
    assert out.getvalue().splitlines() == [
        "queued on 'default', position 2, no agent serves it "
        "(start one: agent daemon --queue default)",
        "queued on 'default', position 2, 1 agent serves it",
        "queued on 'default', position 1, 1 agent serves it",
    ]


def test_on_a_terminal_the_wait_line_is_rewritten_in_place():
    term = Terminal()
    status = StatusLine(term)
    status.show("queued on 'default', position 2, 1 agent serves it")
    status.show("queued on 'default', position 2, 1 agent serves it")
    status.show("queued on 'default', position 1, 1 agent serves it")
    status.clear()
    assert term.getvalue() == (
        "\r\x1b[2Kqueued on 'default', position 2, 1 agent serves it"
        "\r\x1b[2Kqueued on 'default', position 1, 1 agent serves it"
        "\r\x1b[2K"
    )


def test_logs_follow_of_a_queued_task_prints_its_wait_on_stderr(invoke, backend, make_task):
    task = make_task()
    backend.enqueue(task.id, "default")
    timer = threading.Timer(0.5, lambda: backend.set_status(task.id, "stopped", "aborted"))
    timer.start()
    try:
        result = invoke("logs", task.id, "--follow")
    finally:
        timer.join()
    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        "queued on 'default', position 1, no agent serves it "
        "(start one: agent daemon --queue default)\n"
    )


def _finish(backend, task, status="completed", message=""):
    backend.enqueue(task.id, "q-progress")
    backend.claim(["q-progress"], "w-progress")
    backend.set_status(task.id, status, message)


def test_following_a_pipeline_shows_its_steps_environment_builds(invoke, backend, make_task):
    pipe = make_task(name="pipe", project="p", type="controller")
    one = make_task(name="step_one", project="p", parent=pipe.id)
    two = make_task(name="step_two", project="p", parent=pipe.id)
    t0 = 1_800_000_000.0
    backend.append_logs(one.id, [
        (t0, "info", "creating environment /venvs/abc (uv)"),
        (t0 + 0.1, "info", "installing 2 requirement(s): pandas==2.2.3 scikit-learn>=1.5"),
        (t0 + 2.2, "info", "built environment 6608affb8847 (/venvs/abc)"),
        (t0 + 2.3, "info", "training output that is not read"),
    ])  # fmt: skip
    backend.append_logs(two.id, [(t0 + 3, "info", "reusing environment 6608affb8847 (/venvs/abc)")])
    _finish(backend, one)
    _finish(backend, two, "failed", "exit code 1")
    backend.append_logs(pipe.id, ["pipeline log line"])
    _finish(backend, pipe)
    result = invoke("logs", pipe.id, "--follow")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "pipeline log line\n"
    assert result.stderr.splitlines() == [
        "step_one: building environment (pandas, scikit-learn) ...",
        "step_one: environment 6608affb8847 ready in 2.2 s",
        "step_one: completed",
        "step_two: reusing environment 6608affb8847",
        "step_two: failed: exit code 1",
    ]


def test_the_log_of_a_cached_step_says_which_task_it_reused(invoke, backend, make_task):
    source = make_task(name="step", project="p")
    step = make_task(name="step", project="p", runtime={"cached_from": source.id})
    backend.set_status(step.id, "cached", f"reused {source.id}")
    result = invoke("logs", step.id)
    assert result.exit_code == 0
    assert (
        f"this step was cached: reused {source.id} (its log: agent logs {source.id})"
        in result.stderr
    )
