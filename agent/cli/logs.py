"""``agent logs``: print a task's log, optionally following it until the task ends."""

from __future__ import annotations

import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TextIO

import click

from agent.cli.lookup import current_backend, resolve_task_id
from agent.cli.step_progress import StepProgress
from agent.core.models import TaskStatus, TaskTypes
from agent.store.serving import queue_wait_line

if TYPE_CHECKING:
    from agent.core.models import LogLine, Task
    from agent.store.base import Backend

#: Seconds between polls of ``--follow``.
#: After a task is final, how long its log must stay quiet before --follow returns.
SETTLE_S = 2.0
POLL_INTERVAL_S = 0.2
#: States after which no more lines will come (a ``created`` task may still be enqueued).
FINAL_STATES = frozenset(s.value for s in TaskStatus if s.is_terminal) | {"archived"}


def read_logs(backend: Backend, task_id: str, after: int = 0) -> Iterator[LogLine]:
    """Every line with seq > ``after``, oldest first, page by page."""
    while True:
        page = backend.get_logs(task_id, after=after)
        if not page:
            return
        yield from page
        after = page[-1].seq


def follow_logs(
    backend: Backend,
    task_id: str,
    after: int,
    emit: Callable[[LogLine], None],
    interval: float = POLL_INTERVAL_S,
    sleep: Callable[[float], None] = time.sleep,
    settle: float = SETTLE_S,
    waiting: Callable[[str | None], None] | None = None,
    each_poll: Callable[[], None] | None = None,
) -> int:
    """Emit new lines until the task is final and none remain; return the last seq.

    ``waiting`` hears, at every poll, what the task waits for while it is queued
    (:func:`~agent.store.serving.queue_wait_line`), and None once it is not;
    ``each_poll`` is called at every poll (a pipeline's step progress).

    A task may set its own final status (``Task.close``) a moment before its last
    output reaches the log through the agent, so after the final status is seen the
    log is polled until it stays quiet for ``settle`` seconds (counted in polls) —
    unless the task finished longer ago than that.
    """
    quiet_polls_needed = max(1, math.ceil(settle / interval)) if settle > 0 else 1
    quiet = 0
    while True:
        task = backend.get_task(task_id)
        final = task.status in FINAL_STATES
        if waiting is not None:
            waiting(queue_wait_line(backend, task))
        if each_poll is not None:
            each_poll()
        emitted = 0
        for line in read_logs(backend, task_id, after):
            emit(line)
            after = line.seq
            emitted += 1
        if final and not emitted:
            quiet += 1
            finished_long_ago = task.completed is not None and time.time() - task.completed > settle
            if finished_long_ago or quiet >= quiet_polls_needed:
                return after
        else:
            quiet = 0
        if not emitted:
            sleep(interval)


def _emit(line: LogLine) -> None:
    click.echo(line.text[:-1] if line.text.endswith("\n") else line.text)


class StatusLine:
    """One line on stderr that says what the followed task waits for: rewritten in place
    on a terminal; elsewhere (a file, a pipe) printed again only when it changes."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.rewrite = self.stream.isatty()
        self.shown: str | None = None

    def show(self, text: str | None) -> None:
        """Show ``text`` in place of the line shown so far (None: no line)."""
        if text == self.shown:
            return
        if self.rewrite:
            self.stream.write("\r\x1b[2K" + (text or ""))  # back to column 0, clear the line
        elif text is not None:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.shown = text

    def clear(self) -> None:
        """Take the line away on a terminal (before a log line is printed in its place)."""
        if self.rewrite:
            self.show(None)


def _emit_json(line: LogLine) -> None:
    click.echo(json.dumps(line.to_dict(), ensure_ascii=False))


@click.command("logs")
@click.argument("task_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the task ends.")
@click.option("--tail", "-n", type=click.IntRange(min=0), help="Start with the last N lines only.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One JSON object per line (JSON Lines): {"seq", "ts", "level", "text"}.',
)
@click.pass_context
def logs_command(
    ctx: click.Context, task_id: str, follow: bool, tail: int | None, as_json: bool
) -> None:
    """Print a task's log; --follow streams it until the task ends.

    The log is the task's stdout and stderr as the agent captured them. With --follow, poll for new lines and return when the task has finished and
    every line is printed; Ctrl-C stops following (exit code 130). While the task is queued, a line on stderr says
    what it waits for ("queued on 'default', position 3, 2 agents serve it") and keeps it current; for a
    pipeline, lines on stderr say when each step's environment is being built, ready or reused, and how each
    step ended. A cached step says which earlier task it reused.

    --json prints each line as one JSON object on its own line (JSON Lines), also
    while following, so `jq` reads them as they come; `jq -s` makes a list of them.

    \b
    Examples:
      agent logs 3f2a1b4c
      agent logs 3f2a --tail 50 --follow
      agent logs 3f2a --json | jq -r 'select(.level == "error") | .text'
    """
    backend = current_backend()
    full_id = resolve_task_id(backend, task_id)
    status = StatusLine()
    emit_line = _emit_json if as_json else _emit
    try:
        last = _print_existing(backend, full_id, tail, emit_line)
        task = backend.get_task(full_id)
        if task.status == TaskStatus.cached.value and last == 0:
            click.echo(f"this step was cached: {task.status_message or 'it reused an earlier run'}"
                       f"{_see_source(task)}", err=True)  # fmt: skip
        if follow:

            def emit(line: LogLine) -> None:
                status.clear()
                emit_line(line)

            progress = None
            if task.type == TaskTypes.controller.value:

                def note(text: str) -> None:
                    status.clear()
                    click.echo(text, err=True)

                progress = StepProgress(backend, full_id, note)
            each_poll = progress.poll if progress is not None else None
            follow_logs(backend, full_id, last, emit, waiting=status.show, each_poll=each_poll)
            if progress is not None:
                progress.poll(force=True)
    except KeyboardInterrupt:
        ctx.exit(130)
    finally:
        status.clear()


def _see_source(task: Task) -> str:
    from agent.pipeline.cache import CACHED_FROM

    source = task.runtime.get(CACHED_FROM)
    return f" (its log: agent logs {source})" if isinstance(source, str) and source else ""


def _print_existing(
    backend: Backend, task_id: str, tail: int | None, emit: Callable[[LogLine], None]
) -> int:
    """Print the lines there are now (the last ``tail`` only); return the last seq read."""
    last = 0
    kept: deque[LogLine] = deque(maxlen=tail)
    for line in read_logs(backend, task_id):
        last = line.seq
        if tail is None:
            emit(line)
        else:
            kept.append(line)
    for line in kept:
        emit(line)
    return last
