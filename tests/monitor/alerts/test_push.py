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
