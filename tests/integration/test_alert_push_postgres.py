"""Alerts pushed by LISTEN/NOTIFY (monitor.alerts.push) on PostgreSQL: an alert committed
through `add_alerts` wakes a waiting stream long before its 10 s poll, and after the
listener's connection is killed it reconnects and pushes again."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import psycopg
import pytest

from monitor.alerts.push import Listener, Wakeup
from monitor.alerts.service import add_alerts
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from monitor.storage.models import AlertRow
from tests.conftest import FIXED_NOW
from tests.integration.conftest import StackFactory, _admin_dsn, post_batches, wait_until
from tests.integration.test_alerts_production import (
    alerts_after,
    open_stream,
    role_token,
    urgent_course,
)

POLL_S = 10.0


@pytest.fixture
def services(fresh_database: str) -> Iterator[Services]:
    svc = build_services(Settings(database_url=fresh_database, fixed_now=FIXED_NOW))
    upgrade(svc.engine)
    yield svc
    svc.close()


def insert_alert(services: Services, decision_id: str) -> None:
    with services.sessions.begin() as session:
        add_alerts(
            session,
            [
                AlertRow(
                    decision_id=decision_id,
                    kind="new",
                    action="discontinue",
                    patient_id="PT-9",
                    unit="ward-3",
                    severity="urgent",
                    audience=json.dumps(["nurse"]),
                    message="test alert",
                    created_at=FIXED_NOW,
                )
            ],
        )


def woken_after(services: Services, wakeup: Wakeup, decision_id: str) -> float | None:
    """Seconds from the insert's commit to the wake-up, None if the poll interval ran out."""

    async def run() -> float | None:
        waiting = asyncio.ensure_future(wakeup.wait(POLL_S))
        await asyncio.sleep(0.05)  # the stream is waiting
        started = time.monotonic()
        await asyncio.to_thread(insert_alert, services, decision_id)
        woken = await waiting
        return time.monotonic() - started if woken else None

    return asyncio.run(run())


def test_an_alert_reaches_a_waiting_stream_by_notify_and_again_after_a_reconnect(
    services: Services, fresh_database: str
) -> None:
    wakeup = Wakeup()
    listener = Listener(fresh_database, wakeup)
    listener.start()
    try:
        wait_until(lambda: listener.connections == 1, 10, "the listener connected")
        took = woken_after(services, wakeup, "push-1")
        print(f"insert commit -> stream woken: {took}")
        assert took is not None
        assert took < 2.0

        pid = listener.backend_pid
        with psycopg.connect(_admin_dsn(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(lambda: listener.connections == 2, 15, "the listener reconnected")
        took = woken_after(services, wakeup, "push-2")
        print(f"after the reconnect, insert commit -> stream woken: {took}")
        assert took is not None
        assert took < 2.0
    finally:
        listener.stop()


def test_through_the_api_process_an_alert_reaches_an_open_stream_before_a_10_s_poll(
    make_stack: StackFactory,
) -> None:
    stack = make_stack("alerts-push", extra_env={"MONITOR_STREAM_POLL_S": str(POLL_S)})
    stack.start(workers=1)
    nurse = role_token(stack, "nurse")
    took: list[float] = []
    with stack.client() as client, open_stream(stack, nurse) as stream:
        for n in range(5):
            started = time.monotonic()
            post_batches(client, urgent_course(f"PT-{n}"), 2)
            stream.alerts(1)
            took.append(time.monotonic() - started)
            stream_drain = alerts_after(client, nurse, 0)  # the rest of this course's alerts
            stream.alerts(len([a for a in stream_drain if a["patient_id"] == f"PT-{n}"]) - 1)
    print(f"POST -> first alert on the stream (poll {POLL_S} s), s: {took}")
    assert max(took) < 2.0
