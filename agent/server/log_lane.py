"""The server's log lane: log appends on PostgreSQL, gathered into batches.

A fleet's tasks each ship their output every second or so, so log appends are most of
what a busy server answers (bench/fleet.py: 1,000 of 1,340 requests a second with a
thousand agents). Run one by one, each costs a round trip and a commit, and a burst of
them would hold every database connection while the heartbeats, claims and status
changes behind it waited. So appends take a lane of their own: at most :data:`LANES`
store calls at once, and the appends that arrive while those run wait to go in
together, in one store call (:meth:`~agent.store.sql.SqlBackend.append_logs_many`: one
statement, one commit). When the server is idle an append goes in at once, alone; when
it is busy, a batch holds what came during the last one.

Each append is answered as alone: its last seq, or its own error. The appends of one
task go in in the order they came, and never in two batches at once (the second waits
for the first): a log's lines keep their order, and two batches never race for the
same log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

#: Store calls of log appends at once (each a batch of the appends waiting). A fleet's
#: appends come in bursts, and a burst holding every database connection would make
#: the heartbeats, claims and status changes behind it wait their turn.
LANES = 2
#: Lines in one batch at most (an append bigger than this goes alone): a statement
#: of a few thousand lines takes milliseconds; one of a million would hold its lane.
BATCH_LINES = 5000

#: Appends the store takes together: ``[(task_id, lines), ...]`` -> each one's last
#: seq, or its error.
AppendMany = Callable[[list[tuple[str, Sequence[Any]]]], Awaitable[list[int | Exception]]]


class _Append:
    __slots__ = ("task_id", "lines", "answer")

    def __init__(self, task_id: str, lines: Sequence[Any], answer: asyncio.Future[int]):
        self.task_id, self.lines, self.answer = task_id, lines, answer


class LogLane:
    """Log appends through at most ``lanes`` calls of ``append_many`` at once (see the
    module doc). Made and used on one event loop."""

    def __init__(self, append_many: AppendMany, lanes: int = LANES, batch_lines: int = BATCH_LINES):
        self._append_many = append_many
        self._lanes = lanes
        self._batch_lines = batch_lines
        self._waiting: list[_Append] = []
        self._busy: set[str] = set()  # tasks with an append in a batch being stored
        # Drains running, counted down as each ends: its task stays in _drains until its
        # done callbacks run, a moment later, when an append may already have come.
        self._draining = 0
        self._drains: set[asyncio.Task[None]] = set()  # their tasks, kept from the collector

    async def append(self, task_id: str, lines: Sequence[Any]) -> int:
        """The last seq of ``task_id``'s log once ``lines`` are in it."""
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Append(task_id, lines, answer))
        if self._draining < self._lanes:
            self._draining += 1
            drain = asyncio.ensure_future(self._drain())
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
        return await answer

    async def _drain(self) -> None:
        """Store batches of the waiting appends until none is left that may go."""
        try:
            await self._drain_batches()
        finally:
            self._draining -= 1

    async def _drain_batches(self) -> None:
        while batch := self._take():
            tasks = {a.task_id for a in batch}
            self._busy |= tasks
            try:
                answers = await self._append_many([(a.task_id, a.lines) for a in batch])
            except BaseException as exc:
                for a in batch:
                    if not a.answer.done():
                        _fail(a.answer, exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            finally:
                self._busy -= tasks
            for a, result in zip(batch, answers, strict=True):
                if a.answer.done():  # its request went away meanwhile
                    continue
                if isinstance(result, Exception):
                    a.answer.set_exception(result)
                else:
                    a.answer.set_result(result)

    def _take(self) -> list[_Append]:
        """The next batch, in the order the appends came: the waiting appends of tasks
        not in a batch being stored, up to :data:`BATCH_LINES` lines (the first one
        whatever its size). An append left waiting holds back the later ones of its
        task, which keep their order."""
        batch: list[_Append] = []
        left: list[_Append] = []
        held = set(self._busy)
        lines = 0
        for a in self._waiting:
            if a.answer.done():  # its request went away before it was stored
                continue
            if a.task_id in held or (batch and lines + len(a.lines) > self._batch_lines):
                held.add(a.task_id)
                left.append(a)
                continue
            batch.append(a)
            lines += len(a.lines)
        self._waiting = left
        return batch


def _fail(answer: asyncio.Future[int], exc: BaseException) -> None:
    if isinstance(exc, Exception):
        answer.set_exception(exc)
    else:  # the lane's own task cancelled (the server stopping): so are its appends
        answer.cancel()
