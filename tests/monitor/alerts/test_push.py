"""The SSE streams' wake-up (monitor.alerts.push): set from another thread, per event loop."""

from __future__ import annotations

import asyncio
import threading
import time

from monitor.alerts.push import Wakeup


def test_a_wake_from_another_thread_ends_the_wait_before_the_poll_interval() -> None:
    wakeup = Wakeup()

    async def waiting() -> tuple[bool, float]:
        started = time.monotonic()
        threading.Timer(0.05, wakeup.wake).start()
        woken = await wakeup.wait(10.0)
        return woken, time.monotonic() - started

    woken, took = asyncio.run(waiting())
    assert woken
    assert took < 1.0


def test_without_a_wake_the_wait_is_the_poll_interval() -> None:
    async def waiting() -> bool:
        return await Wakeup().wait(0.05)

    assert asyncio.run(waiting()) is False


def test_a_wake_while_the_stream_looks_for_alerts_is_not_lost() -> None:
    """The stream reads `generation`, queries, then waits: a notice that came during the query
    (no waiter registered yet) must end the wait at once, not after the poll interval."""
    wakeup = Wakeup()

    async def looking() -> tuple[bool, float]:
        seen = wakeup.generation
        wakeup.wake()  # the notice arrives while the stream runs its query
        started = time.monotonic()
        woken = await wakeup.wait(10.0, since=seen)
        return woken, time.monotonic() - started

    woken, took = asyncio.run(looking())
    assert woken
    assert took < 0.5


def test_a_wake_before_the_reading_does_not_end_a_later_wait() -> None:
    wakeup = Wakeup()
    wakeup.wake()  # already answered by the look that follows this reading

    async def waiting() -> bool:
        return await wakeup.wait(0.05, since=wakeup.generation)

    assert asyncio.run(waiting()) is False
