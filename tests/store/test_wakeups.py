"""ClaimSignals: an enqueue wakes one waiting claimer of its queue, and no wake-up is lost."""

from __future__ import annotations

import asyncio
import threading
import time

from agent.store import wakeups
from agent.store.wakeups import ClaimSignals, PollBackoff


def test_an_enqueue_wakes_one_waiter_of_its_queue() -> None:
    signals = ClaimSignals()
    with (
        signals.waiting(["q"]) as first,
        signals.waiting(["q"]) as second,
        signals.waiting(["other"]) as elsewhere,
    ):
        signals.notify("q")
        assert first.take() == ["q"]  # the longest waiting
        assert second.take() == [] and elsewhere.take() == []
        signals.notify("q")
        signals.notify("q")
        assert first.take() == ["q"] and second.take() == ["q"]  # one each


def test_nobody_waiting_drops_the_wake_up() -> None:
    signals = ClaimSignals()
    signals.notify("q")  # the next claim looks at the database first
    with signals.waiting(["q"]) as waiter:
        assert waiter.take() == []


def test_unused_wake_ups_go_to_the_next_waiter() -> None:
    signals = ClaimSignals()
    leaving_cm = signals.waiting(["a", "q"])
    leaving = leaving_cm.__enter__()
    with signals.waiting(["q"]) as staying:
        signals.notify("a")
        signals.notify("q")  # `leaving` holds one already: `staying` gets this one
        assert staying.take() == ["q"]
        signals.notify("q")
        signals.notify("q")  # every waiter holds one: the longest waiting gets a second
        assert leaving.take() == ["a", "q"]
        assert staying.take() == ["q"]
        leaving.hand_on(["q"])  # it took the task from `a`: the one from `q` is not its
        signals.notify("a")  # arrives while it claims: it will not use that one either
        leaving_cm.__exit__(None, None, None)
        assert staying.take() == ["q"]  # nobody else waits on `a`: that one is dropped


def test_wait_returns_on_a_wake_up_from_another_thread() -> None:
    signals = ClaimSignals()
    with signals.waiting(["q"]) as waiter:
        threading.Timer(0.05, signals.notify, args=("q",)).start()
        waiter.wait(30)
        assert waiter.take() == ["q"]


def test_a_waiting_coroutine_is_woken_from_its_loop_or_another_thread() -> None:
    async def scenario() -> None:
        signals = ClaimSignals()
        with signals.waiting_async(["q"]) as waiter:
            asyncio.get_running_loop().call_later(0.05, signals.notify, "q")  # the loop's thread
            await asyncio.wait_for(waiter.wait(30), 20)
            assert waiter.take() == ["q"]
            threading.Timer(0.05, signals.notify, args=("q",)).start()  # another thread
            await asyncio.wait_for(waiter.wait(30), 20)
            assert waiter.take() == ["q"]
            await waiter.wait(0.01)  # no wake-up: the pause runs out
            assert waiter.take() == []

    asyncio.run(scenario())


def test_wake_all_sends_every_waiter_to_each_of_its_queues() -> None:
    signals = ClaimSignals()
    with signals.waiting(["a", "b"]) as both, signals.waiting(["b"]) as one:
        signals.notify("a")  # already has a wake-up for "a": not given twice
        signals.wake_all()  # a listener that just connected: enqueues may have gone unheard
        assert sorted(both.take()) == ["a", "b"]
        assert one.take() == ["b"]
        assert one.wait(0) is False  # nothing left


def test_a_listening_claim_polls_at_the_slow_pace(monkeypatch) -> None:
    monkeypatch.setattr(wakeups, "LISTENING_POLL_S", 7.0)
    deadline = time.monotonic() + 60
    assert [PollBackoff(deadline, listening=True).next_pause() for _ in range(2)] == [7.0, 7.0]
    polling = PollBackoff(deadline)
    assert [polling.next_pause() for _ in range(5)] == [0.005, 0.01, 0.02, 0.04, 0.05]


def test_queues_a_look_found_empty_are_known_empty_until_an_enqueue() -> None:
    signals = ClaimSignals()
    assert not signals.known_empty(["q"])  # nothing looked yet
    signals.seen_empty(["q", "r"], signals.signalled(["q", "r"]))
    assert signals.known_empty(["q"]) and signals.known_empty(["q", "r"])
    assert not signals.known_empty(["q", "other"])  # every queue must be known
    signals.notify("q")
    assert not signals.known_empty(["q"]) and signals.known_empty(["r"])


def test_an_enqueue_during_the_look_keeps_its_queue_unknown() -> None:
    signals = ClaimSignals()
    before = signals.signalled(["q", "r"])
    signals.notify("q")  # committed while the look ran: the look may have missed it
    signals.seen_empty(["q", "r"], before)
    assert not signals.known_empty(["q"]) and signals.known_empty(["r"])


def test_a_listener_reconnecting_forgets_what_was_known_empty() -> None:
    signals = ClaimSignals()
    signals.seen_empty(["q"], signals.signalled(["q"]))
    before = signals.signalled(["q"])
    signals.wake_all()  # enqueues may have gone unheard
    assert not signals.known_empty(["q"])
    signals.seen_empty(["q"], before)  # a look that began before it
    assert not signals.known_empty(["q"])


def test_an_empty_queue_is_believed_for_a_moment_only(monkeypatch) -> None:
    monkeypatch.setattr(wakeups, "EMPTY_TRUST_S", 0.05)
    signals = ClaimSignals()
    signals.seen_empty(["q"], signals.signalled(["q"]))
    assert signals.known_empty(["q"])
    time.sleep(0.1)
    assert not signals.known_empty(["q"])


def test_a_task_a_waiter_was_woken_for_keeps_its_queue_known_empty() -> None:
    signals = ClaimSignals()
    leaving_cm = signals.waiting(["q"])
    waiter = leaving_cm.__enter__()
    signals.seen_empty(["q"], signals.signalled(["q"]))
    signals.notify("q")  # the waiter will look for it: a new claim need not
    assert signals.known_empty(["q"])
    leaving_cm.__exit__(None, None, None)  # leaves with its wake-up unused, nobody to take it
    assert not signals.known_empty(["q"])
    assert waiter.take() == []
