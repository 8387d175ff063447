"""Alerts in the production topology (issue 4): real `api`, `worker` and `scheduler` processes
on the machine's PostgreSQL and Redis.

1. Webhooks through the Celery worker processes: a real receiver answers 500 once, then 200;
   every alert reaches it exactly once as a correctly signed 2xx delivery, after one retry
   with backoff, and the admin's delivery list shows the attempt history.
2. The live feed over the api process: an alert raised while a nurse's stream is open arrives
   as a frame whose id is the alert's id; a reconnect with Last-Event-ID gets exactly the
   alerts after that id (the missed ones), then live ones, nothing older, nothing twice.
3. Two scheduler processes on one database: exactly one holds the lease; killed with SIGKILL,
   the other takes it once it expires and acts (re-drives an outbox row whose message was
   lost, which a worker then processes).
4. A scheduler stopped with SIGTERM exits cleanly and releases its lease: the other replica
   takes it at its next tick, long before the lease would have expired.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import redis

from tests.common import factories as f
from tests.common.webhook_receiver import Receiver, requests_by_delivery
from tests.conftest import FIXED_NOW
from tests.integration.conftest import (
    ManagedProcess,
    Stack,
    StackFactory,
    db_engine,
    outbox_counts,
    post_batches,
    wait_processed,
    wait_until,
)

SECRET = "whsec_" + base64.b64encode(b"s3cret-of-the-production-receiver").decode()
BACKOFF_S = 0.2
WEBHOOK_ENV = {
    "MONITOR_WEBHOOK_BACKOFF_S": str(BACKOFF_S),
    "MONITOR_WEBHOOK_BACKOFF_MAX_S": "1",
    "MONITOR_WEBHOOK_MAX_ATTEMPTS": "4",
    "MONITOR_WEBHOOK_TIMEOUT_S": "5",
}
LEASE_S = 2.0
INTERVAL_S = 0.5
# Settings the stack's SERVICE_ENV also sets (interval, re-drive grace): `extra_env` cannot
# override those (a duplicate keyword in Stack.env), so the schedulers get them at spawn.
SCHEDULER_ENV = {
    "MONITOR_SCHEDULER_LEASE_S": str(LEASE_S),
    "MONITOR_SCHEDULER_INTERVAL_S": str(INTERVAL_S),
    "MONITOR_OUTBOX_REDRIVE_AFTER_S": "1",
}
QUEUE_KEY = "monitor"  # the Celery queue: a Redis list of that name


# --- helpers -----------------------------------------------------------------------------------


def urgent_course(patient: str, unit: str = "ward-3") -> list[dict[str, Any]]:
    """Enrolment three weeks ago, grade 3 sensory an hour ago: an urgent `discontinue` alert
    and a few others (nothing overdue at FIXED_NOW)."""
    return [
        f.enrollment(
            FIXED_NOW - dt.timedelta(days=21), patient=patient, event_id=f"{patient}-e", unit=unit
        ),
        f.assessment(
            FIXED_NOW - dt.timedelta(hours=1), patient=patient, event_id=f"{patient}-a", sensory=3
        ),
    ]


def role_token(stack: Stack, role: str) -> str:
    return stack.monitor("token", "create", "--role", role).strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_processed(stack: Stack, client: httpx.Client, events: list[dict[str, Any]]) -> None:
    """Post through the api process; wait until the workers folded every accepted event (the
    alerts are committed in the same transaction as the outbox row's `processed_at`)."""
    post_batches(client, events, len(events))
    stack.accepted += len(events)
    engine = db_engine(stack.database_url)
    try:
        wait_processed(engine, stack.accepted, 30, stack.diagnostics)
    finally:
        engine.dispose()


def alerts_after(client: httpx.Client, nurse: str, after: int) -> list[dict[str, Any]]:
    response = client.get(
        "/v1/alerts", params={"after": after, "limit": 500}, headers=bearer(nurse)
    )
    assert response.status_code == 200, response.text
    alerts: list[dict[str, Any]] = response.json()["alerts"]
    return alerts


def last_alert_id(client: httpx.Client, nurse: str) -> int:
    response = client.get("/v1/alerts", params={"limit": 1}, headers=bearer(nurse))
    assert response.status_code == 200, response.text
    return int(response.json()["last_id"])


def ids(alerts: list[dict[str, Any]]) -> list[int]:
    return [a["id"] for a in alerts]


def json_logs(proc: ManagedProcess, message: str) -> list[dict[str, Any]]:
    """The process's structured log records with this message."""
    found = []
    for line in proc.output().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("message") == message:
                    found.append(record)
    return found


# --- 1. webhooks through the Celery workers ----------------------------------------------------


def test_webhooks_are_signed_retried_and_recorded_by_the_worker_processes(
    make_stack: StackFactory,
) -> None:
    stack = make_stack("alerts-webhooks", extra_env=WEBHOOK_ENV)
    stack.start(workers=2)
    nurse = role_token(stack, "nurse")
    with Receiver() as receiver, stack.client() as client:
        receiver.secrets["/hook"] = SECRET
        receiver.script([500], default=200)  # each delivery: 500 once, then 200
        response = client.post(
            "/v1/admin/webhooks",
            json={"name": "pager", "url": receiver.url("/hook"), "secret": SECRET},
        )
        assert response.status_code == 201, response.text
        webhook_id = response.json()["id"]
        assert response.json()["secret"] == SECRET

        post_processed(stack, client, urgent_course("PT-1") + urgent_course("PT-2", "ward-4"))
        alerts = {a["id"]: a for a in alerts_after(client, nurse, 0)}
        assert len(alerts) >= 2
        assert {a["patient_id"] for a in alerts.values() if a["severity"] == "urgent"} == {
            "PT-1",
            "PT-2",
        }

        def delivered_alerts() -> set[int]:
            return {r.json["alert"]["id"] for r in receiver.at("/hook") if r.status == 200}

        wait_until(
            lambda: delivered_alerts() == set(alerts),
            30,
            "one 200 delivery per alert at the receiver",
            interval=0.1,
            diagnostics=lambda: f"{receiver.received}\n{stack.diagnostics()}",
        )
        deliveries = client.get(
            "/v1/admin/webhook-deliveries", params={"webhook_id": webhook_id, "limit": 500}
        )
        assert deliveries.status_code == 200, deliveries.text
        listed = {d["id"]: d for d in deliveries.json()["deliveries"]}
        pending = client.get("/v1/admin/webhook-deliveries", params={"status": "pending"})
        failed = client.get("/v1/admin/webhook-deliveries", params={"status": "failed"})
        received = receiver.at("/hook")

    # Every request was signed with the endpoint's secret, recent, and carried one alert
    # exactly as the nurse's feed shows it.
    assert received, "nothing reached the receiver"
    assert all(r.signature_ok for r in received), [r.headers for r in received]
    assert {r.headers["x-bipn-event"] for r in received} == {"alert"}
    for request in received:
        body = request.json
        assert body["type"] == "alert"
        assert str(body["delivery_id"]) == request.delivery
        # the feed's view but a patient report's answers and words, which stay inside
        shown = {k: v for k, v in alerts[body["alert"]["id"]].items() if k != "patient_report"}
        assert body["alert"] == shown
    # One delivery per alert, each seen twice: the 500, then (after the backoff) the 200.
    by_delivery = requests_by_delivery(received)
    assert len(by_delivery) == len(alerts)
    assert sorted(r.json["alert"]["id"] for rs in by_delivery.values() for r in rs[:1]) == sorted(
        alerts
    )
    for delivery, requests in by_delivery.items():
        assert [r.status for r in requests] == [500, 200], delivery
        assert requests[1].body == requests[0].body  # the same payload is sent again
        assert requests[1].at - requests[0].at >= 0.5 * BACKOFF_S  # not retried at once

    # The admin sees the same deliveries with their attempt history; none left to do.
    assert set(listed) == {int(d) for d in by_delivery}
    for delivery in listed.values():
        assert delivery["alert_id"] in alerts
        assert delivery["status"] == "delivered", delivery
        assert delivery["attempts"] == 2
        assert delivery["delivered_at"] is not None
        assert delivery["last_error"] is None
        history = [(h["attempt"], h["status_code"], h["outcome"]) for h in delivery["history"]]
        assert history == [(1, 500, "retry"), (2, 200, "delivered")], delivery
    assert sorted(d["alert_id"] for d in listed.values()) == sorted(alerts)
    assert pending.json()["deliveries"] == []
    assert failed.json()["deliveries"] == []
    # Sent by the webhook worker processes (their own queue), never by the api or the
    # workers that fold the patients' events.
    worker_attempts = sum(len(json_logs(w, "webhook attempt")) for w in stack.webhook_workers)
    assert worker_attempts == 2 * len(alerts)
    assert sum(len(json_logs(w, "webhook attempt")) for w in stack.workers) == 0
    assert json_logs(stack.api, "webhook attempt") == []


# --- 2. the live feed over the api process ------------------------------------------------------


@dataclass
class Frame:
    event: str | None
    id: str | None
    data: str
    comment: bool


class SSE:
    """A Server-Sent Events response read frame by frame."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def frame(self) -> Frame:
        fields: dict[str, str] = {}
        comment = False
        for line in self.lines:
            if line == "":
                if fields or comment:
                    return Frame(
                        fields.get("event"), fields.get("id"), fields.get("data", ""), comment
                    )
                continue
            if line.startswith(":"):
                comment = True
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise AssertionError("the stream ended")

    def alerts(self, count: int) -> list[dict[str, Any]]:
        """The next `count` alert frames (comments skipped); each frame's id is its alert's."""
        found: list[dict[str, Any]] = []
        while len(found) < count:
            frame = self.frame()
            if frame.event is None:
                assert frame.comment, frame
                continue
            assert frame.event == "alert", frame
            alert: dict[str, Any] = json.loads(frame.data)
            assert frame.id == str(alert["id"]), frame
            found.append(alert)
        return found


@contextlib.contextmanager
def open_stream(stack: Stack, nurse: str, **headers: str) -> Iterator[SSE]:
    with (
        httpx.Client(base_url=stack.api_url, timeout=httpx.Timeout(15.0)) as client,
        client.stream("GET", "/v1/alerts/stream", headers=bearer(nurse) | headers) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = SSE(response)
        opening = stream.frame()  # sent once the server has fixed where the stream starts
        assert opening.comment, opening
        assert opening.event is None, opening
        yield stream


def test_the_alert_stream_of_the_api_process_is_live_and_resumes_with_last_event_id(
    make_stack: StackFactory,
) -> None:
    stack = make_stack("alerts-stream", extra_env={"MONITOR_STREAM_POLL_S": "0.1"})
    stack.start(workers=1)
    nurse = role_token(stack, "nurse")
    with stack.client() as client:
        post_processed(stack, client, urgent_course("PT-0"))
        older = last_alert_id(client, nurse)
        assert older > 0  # alerts from before the stream: never sent on it

        with open_stream(stack, nurse) as stream:  # live only, from the current last id
            post_processed(stack, client, urgent_course("PT-1"))
            raised = alerts_after(client, nurse, older)
            assert len(raised) >= 2
            assert {a["patient_id"] for a in raised} == {"PT-1"}
            assert stream.alerts(len(raised)) == raised

        # Disconnected: the client saw everything up to raised[0] only (say); more is raised.
        seen = raised[0]["id"]
        post_processed(stack, client, urgent_course("PT-2", "ward-4"))
        missed = alerts_after(client, nurse, raised[-1]["id"])
        assert missed
        expected = alerts_after(client, nurse, seen)
        assert ids(expected) == ids(raised[1:]) + ids(missed)

        with open_stream(stack, nurse, **{"Last-Event-ID": str(seen)}) as stream:
            assert stream.alerts(len(expected)) == expected
            # Nothing else was queued before the live part: the next frame is a new alert.
            newest = last_alert_id(client, nurse)
            post_processed(
                stack, client, [f.enrollment(FIXED_NOW - dt.timedelta(days=1), patient="PT-3")]
            )
            sentinel = alerts_after(client, nurse, newest)
            assert sentinel
            assert stream.alerts(1) == sentinel[:1]


# --- 3. two scheduler processes -----------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    holder: str
    acquired_at: float  # epoch seconds
    expires_at: float


def lease_row(stack: Stack) -> Lease | None:
    engine = db_engine(stack.database_url)
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT holder, extract(epoch FROM acquired_at), extract(epoch FROM expires_at) "
                "FROM scheduler_lease WHERE name = 'scheduler'"
            ).one_or_none()
    finally:
        engine.dispose()
    return None if row is None else Lease(str(row[0]), float(row[1]), float(row[2]))


def spawn_scheduler(stack: Stack, name: str, **settings: str) -> ManagedProcess:
    """`python -m monitor scheduler` with SCHEDULER_ENV (and `settings`) over the stack's
    environment; torn down with the stack."""
    env = stack.env | SCHEDULER_ENV | settings
    proc = ManagedProcess(
        f"{stack.name}-{name}",
        [sys.executable, "-m", "monitor", "scheduler"],
        env,
        stack.workdir,
        stack.log_dir,
    )
    stack.processes.append(proc)
    return proc


def holder_of(proc: ManagedProcess) -> str:
    """The lease holder name a scheduler process announced at start."""
    [started] = json_logs(proc, "scheduler started")
    holder = str(started["holder"])
    assert holder.split(":")[1] == str(proc.popen.pid), holder  # host:pid:random
    return holder


def test_two_scheduler_processes_one_holds_the_lease_the_other_takes_over_after_sigkill(
    make_stack: StackFactory,
) -> None:
    stack = make_stack("alerts-schedulers")
    stack.start(workers=0, webhook_workers=0)  # the api only: nothing consumes the queues yet
    schedulers = [spawn_scheduler(stack, "scheduler-a"), spawn_scheduler(stack, "scheduler-b")]
    for proc in schedulers:
        stack.wait_log(proc, "scheduler started")
    holders = {holder_of(proc): proc for proc in schedulers}
    assert len(holders) == 2

    # Exactly one holds the lease; it renews it tick after tick while the other waits.
    first = wait_until(lambda: lease_row(stack), 10, "a scheduler to take the lease")
    assert first.holder in holders
    wait_until(
        lambda: (row := lease_row(stack)) is not None and row.expires_at >= first.expires_at + 1,
        10,
        "the holder to renew its lease a few times",
        diagnostics=stack.diagnostics,
    )
    holder = holders[first.holder]
    [other] = [proc for proc in schedulers if proc is not holder]
    assert lease_row(stack).holder == first.holder  # type: ignore[union-attr]
    assert "scheduler lease taken" in holder.output()
    assert "scheduler lease taken" not in other.output()

    # kill -9 the holder: no release; the other takes over once the lease has expired.
    holder.kill()
    killed = time.monotonic()
    orphaned = lease_row(stack)
    assert orphaned is not None
    assert orphaned.holder == first.holder
    taken = wait_until(
        lambda: (row := lease_row(stack)) is not None and row.holder != first.holder and row,
        LEASE_S + 5,
        "the surviving scheduler to take the lease",
        interval=0.05,
        diagnostics=stack.diagnostics,
    )
    took_s = time.monotonic() - killed
    assert taken.holder == holder_of(other)
    assert taken.acquired_at >= orphaned.expires_at  # not before the old lease expired
    assert took_s <= LEASE_S + INTERVAL_S + 1.5, took_s
    stack.wait_log(other, "scheduler lease taken", timeout=5)

    # The survivor acts: an accepted event whose message the broker lost (the queue emptied,
    # as by a Redis restart) is re-driven by it, then processed by a worker started now.
    with stack.client() as client:
        post_batches(client, [f.enrollment(FIXED_NOW - dt.timedelta(days=1), patient="PT-7")], 1)
    broker = redis.Redis.from_url(stack.broker_url)
    assert broker.llen(QUEUE_KEY) == 1  # the api's message, nobody consuming
    broker.delete(QUEUE_KEY, *broker.keys("bipn:queued:*"))
    engine = db_engine(stack.database_url)
    try:
        assert outbox_counts(engine).open == 1
        stack.start_worker("worker-late")
        wait_processed(engine, 1, 20, stack.diagnostics)
        with engine.connect() as conn:
            enqueue_count = conn.exec_driver_sql("SELECT enqueue_count FROM outbox").scalar_one()
            decisions = conn.exec_driver_sql(
                "SELECT count(*) FROM decision WHERE patient_id = 'PT-7'"
            ).scalar_one()
    finally:
        engine.dispose()
    assert enqueue_count >= 1  # sent again by the re-drive
    assert decisions >= 1
    assert json_logs(other, "outbox re-driven")
    assert lease_row(stack).holder == taken.holder  # type: ignore[union-attr]


def test_a_scheduler_stopped_with_sigterm_releases_its_lease_to_the_other_at_once(
    make_stack: StackFactory,
) -> None:
    stack = make_stack("alerts-sigterm")
    # A long lease: the other replica can only take it this soon if it was released.
    lease_s = 60.0
    schedulers = [
        spawn_scheduler(stack, name, MONITOR_SCHEDULER_LEASE_S=str(lease_s))
        for name in ("scheduler-a", "scheduler-b")
    ]
    for proc in schedulers:
        stack.wait_log(proc, "scheduler started")
    holders = {holder_of(proc): proc for proc in schedulers}
    first = wait_until(lambda: lease_row(stack), 10, "a scheduler to take the lease")
    holder = holders[first.holder]
    [other] = [proc for proc in schedulers if proc is not holder]
    assert first.expires_at - time.time() > lease_s / 2

    holder.terminate()  # SIGTERM, as systemd, Docker and Kubernetes stop a process
    wait_until(holder.group_gone, 10, "the scheduler to exit after SIGTERM")
    stopped = time.monotonic()
    assert holder.popen.returncode == 0, holder.tail()
    assert [r.get("signal") for r in json_logs(holder, "stopping")] == ["SIGTERM"]
    left = lease_row(stack)
    assert left is None or left.holder == holder_of(other), (left, holder.tail())

    taken = wait_until(
        lambda: (row := lease_row(stack)) is not None and row.holder != first.holder and row,
        10,
        "the other scheduler to take the released lease",
        diagnostics=stack.diagnostics,
    )
    assert taken.holder == holder_of(other)
    assert time.monotonic() - stopped < 5  # far sooner than the 60 s lease would expire
    assert taken.acquired_at < first.expires_at
    stack.wait_log(other, "scheduler lease taken", timeout=5)
