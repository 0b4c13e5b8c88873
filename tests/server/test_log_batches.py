"""LogLane: the server's log appends, gathered into batches while the store is busy
(agent/server/log_lane.py). Here with a store of its own that the test holds and
releases; tests/server/test_log_lane.py runs the lane on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from agent.core.errors import NotFound
from agent.server.log_lane import LogLane


class HeldStore:
    """Counts each task's lines; every batch waits until the test lets it go."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, list[str]]]] = []
        self.logs: dict[str, list[str]] = {}
        self.storing: set[str] = set()  # tasks in a batch being stored
        self.overlaps = 0  # a task in two batches at once
        self.go = asyncio.Event()
        self.fail: dict[str, Exception] = {}

    async def append_many(self, appends: list[tuple[str, Sequence[Any]]]) -> list[int | Exception]:
        batch = [(task_id, list(lines)) for task_id, lines in appends]
        self.batches.append(batch)
        tasks = {task_id for task_id, _ in batch}
        self.overlaps += len(tasks & self.storing)
        self.storing |= tasks
        try:
            await self.go.wait()
        finally:
            self.storing -= tasks
        answers: list[int | Exception] = []
        for task_id, lines in batch:
            if task_id in self.fail:
                answers.append(self.fail[task_id])
                continue
            log = self.logs.setdefault(task_id, [])
            log.extend(lines)
            answers.append(len(log))
        return answers


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_appends_that_come_while_a_batch_is_stored_go_in_together() -> None:
    async def main() -> None:
        store = HeldStore()
        lane = LogLane(store.append_many, lanes=1)
        first = asyncio.ensure_future(lane.append("t0", ["a"]))
        await _settle()
        assert store.batches == [[("t0", ["a"])]]  # an idle lane stores at once
        rest = [asyncio.ensure_future(lane.append(f"t{n % 4}", [f"{n}"])) for n in range(1, 9)]
        await _settle()
        assert len(store.batches) == 1  # they wait for the batch being stored
        store.go.set()
        answers = await asyncio.gather(first, *rest)
        assert len(store.batches) == 2
        assert store.batches[1] == [(f"t{n % 4}", [f"{n}"]) for n in range(1, 9)]
        assert answers == [1, 1, 1, 1, 2, 2, 2, 2, 3]
        assert store.logs["t0"] == ["a", "4", "8"]

    asyncio.run(main())


def test_a_task_is_never_in_two_batches_at_once_and_keeps_its_order() -> None:
    async def main() -> None:
        store = HeldStore()
        lane = LogLane(store.append_many, lanes=2)
        appends = [asyncio.ensure_future(lane.append("busy", ["1"]))]
        await _settle()
        appends += [
            asyncio.ensure_future(lane.append("busy", ["2"])),
            asyncio.ensure_future(lane.append("other", ["x"])),
            asyncio.ensure_future(lane.append("busy", ["3"])),
        ]
        await _settle()
        # The second lane took what it could: "busy" waits for its first batch.
        assert store.batches == [[("busy", ["1"])], [("other", ["x"])]]
        store.go.set()
        assert await asyncio.gather(*appends) == [1, 2, 1, 3]
        assert store.batches[2] == [("busy", ["2"]), ("busy", ["3"])]
        assert store.logs["busy"] == ["1", "2", "3"]
        assert store.overlaps == 0

    asyncio.run(main())


def test_a_big_append_goes_alone_and_later_ones_of_its_task_wait_behind_it() -> None:
    async def main() -> None:
        store = HeldStore()
        lane = LogLane(store.append_many, lanes=1, batch_lines=3)
        hold = asyncio.ensure_future(lane.append("h", ["0"]))
        await _settle()
        appends = [
            asyncio.ensure_future(lane.append("a", ["1", "2"])),
            asyncio.ensure_future(lane.append("b", ["3", "4", "5", "6"])),  # over the limit
            asyncio.ensure_future(lane.append("b", ["7"])),  # behind it: same task
            asyncio.ensure_future(lane.append("c", ["8"])),
        ]
        await _settle()
        store.go.set()
        await asyncio.gather(hold, *appends)
        assert [[task for task, _ in batch] for batch in store.batches] == [
            ["h"],
            ["a", "c"],
            ["b"],
            ["b"],
        ]
        assert store.logs["b"] == ["3", "4", "5", "6", "7"]

    asyncio.run(main())


def test_each_append_hears_its_own_error_and_a_failed_batch_fails_its_appends() -> None:
    async def main() -> None:
        store = HeldStore()
        store.fail["gone"] = NotFound("no task with id 'gone'")
        lane = LogLane(store.append_many, lanes=1)
        hold = asyncio.ensure_future(lane.append("h", ["0"]))
        await _settle()
        ok = asyncio.ensure_future(lane.append("a", ["1"]))
        gone = asyncio.ensure_future(lane.append("gone", ["2"]))
        store.go.set()
        assert await asyncio.gather(hold, ok) == [1, 1]
        with pytest.raises(NotFound, match="gone"):
            await gone

        async def broken(_appends: Any) -> list[int | Exception]:
            raise ConnectionError("database went away")

        lane = LogLane(broken, lanes=1)
        results = await asyncio.gather(
            lane.append("a", ["1"]), lane.append("b", ["2"]), return_exceptions=True
        )
        assert all(isinstance(r, ConnectionError) for r in results)
        [later] = await asyncio.gather(lane.append("a", ["3"]), return_exceptions=True)
        assert isinstance(later, ConnectionError)  # answered, as the next batch failed too

    asyncio.run(main())


def test_an_append_whose_request_went_away_before_its_batch_is_not_stored() -> None:
    async def main() -> None:
        store = HeldStore()
        lane = LogLane(store.append_many, lanes=1)
        hold = asyncio.ensure_future(lane.append("h", ["0"]))
        await _settle()
        left = asyncio.ensure_future(lane.append("a", ["never"]))
        stays = asyncio.ensure_future(lane.append("b", ["1"]))
        await _settle()
        left.cancel()
        store.go.set()
        assert await asyncio.gather(hold, stays) == [1, 1]
        assert "a" not in store.logs

    asyncio.run(main())
