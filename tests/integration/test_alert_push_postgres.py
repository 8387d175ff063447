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
from tests.integration.conftest import _admin_dsn, wait_until

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
