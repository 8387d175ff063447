"""The `report_due` webhook event (issue 16): when a patient's weekly report window opens
unreported, one signed delivery per endpoint that chose the event type (`filters.type`; the
default is alerts only) and the window's unit, exactly once per window; the same retries and
egress rules as alerts. Checked at a real receiver with the Standard Webhooks library."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from monitor.report_windows.scheduled import open_report_windows
from tests.common import factories as f
from tests.common.service import RunningService, eventually, rows, running_service
from tests.common.webhook_receiver import Receiver
from tests.conftest import FIXED_NOW

SECRET = "whsec_" + base64.b64encode(b"a-secret-for-the-report-due-tests").decode()
DAY = dt.timedelta(days=1)
FAST = {"webhook_backoff_s": 0.05, "webhook_backoff_max_s": 0.2, "webhook_max_attempts": 3}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def running(tmp_path: Any) -> Iterator[RunningService]:
    with running_service(tmp_path, **FAST) as service:
        yield service


def register(running: RunningService, url: str, **filters: Any) -> Any:
    body: dict[str, Any] = {"name": "messaging", "url": url, "secret": SECRET}
    if filters:
        body["filters"] = filters
    return running.api.client.post(
        "/v1/admin/webhooks", json=body, headers=running.api.headers("admin")
    )


def enrol(running: RunningService, *patients: tuple[str, str]) -> None:
    bodies = [
        f.enrollment(FIXED_NOW - 3 * DAY, patient, f"{patient}-e", unit=unit)
        for patient, unit in patients
    ]
    assert running.api.post_events({"events": bodies}).status_code == 202
    assert running.worker.wait_idle()


def report_due_deliveries(running: RunningService) -> list[dict[str, Any]]:
    return rows(
        running.services,
        "SELECT * FROM webhook_delivery WHERE report_window_id IS NOT NULL ORDER BY id",
    )


def settled(running: RunningService, count: int) -> list[dict[str, Any]]:
    def done() -> bool:
        found = report_due_deliveries(running)
        return len(found) == count and all(d["status"] == "delivered" for d in found)

    eventually(done, what="report_due deliveries delivered")
    return report_due_deliveries(running)


def test_a_window_opened_unreported_is_sent_signed_to_the_endpoints_that_chose_it(
    running: RunningService, receiver: Receiver
) -> None:
    for path in ("/alerts", "/due", "/elsewhere"):
        receiver.secrets[path] = SECRET
    assert register(running, receiver.url("/alerts")).status_code == 201  # default: alerts
    due = register(running, receiver.url("/due"), type=["report_due"], unit=["u1"])
    assert due.status_code == 201, due.text
    assert due.json()["filters"]["type"] == ["report_due"]
    elsewhere = register(running, receiver.url("/elsewhere"), type=["alert", "report_due"],
                         unit=["u9"])  # fmt: skip
    assert elsewhere.status_code == 201
    enrol(running, ("P1", "u1"))
    alerts_before = len(receiver.at("/alerts"))

    assert open_report_windows(running.services) == 1
    [delivery] = settled(running, 1)
    assert delivery["endpoint_id"] == due.json()["id"]
    [request] = receiver.wait_for(lambda seen: any(r.path == "/due" for r in seen))[-1:]
    assert request.path == "/due"
    # the Standard Webhooks library accepts it with the endpoint's secret
    verified = Webhook(SECRET).verify(request.body, request.headers)
    assert verified == {
        "type": "report_due",
        "delivery_id": delivery["id"],
        "report_due": {
            "patient_id": "P1",
            "unit": "u1",
            "window_start": "2026-09-28T12:00:00Z",
            "window_end": "2026-10-05T12:00:00Z",
            "window": 0,
        },
    }
    assert request.headers["webhook-id"] == str(delivery["id"])
    assert request.headers["x-bipn-event"] == "report_due"
    # an endpoint left at the default gets alerts only; another unit's endpoint nothing
    assert all(json.loads(r.body)["type"] == "alert" for r in receiver.at("/alerts"))
    assert len(receiver.at("/alerts")) == alerts_before
    assert receiver.at("/elsewhere") == []
    # and one that chose `report_due` only gets no alerts
    assert [json.loads(r.body)["type"] for r in receiver.at("/due")] == ["report_due"]


def test_each_window_is_sent_once_per_endpoint(running: RunningService, receiver: Receiver) -> None:
    receiver.secrets["/due"] = SECRET
    assert register(running, receiver.url("/due"), type=["report_due"]).status_code == 201
    enrol(running, ("P1", "u1"), ("P2", "u2"))
    open_report_windows(running.services)
    settled(running, 2)
    assert open_report_windows(running.services) == 0  # the job again: nothing new
    assert len(report_due_deliveries(running)) == 2
    # a week later: the next window of each, once
    running.services.settings = running.services.settings.model_copy(
        update={"fixed_now": FIXED_NOW + 7 * DAY}
    )
    open_report_windows(running.services)
    open_report_windows(running.services)
    sent = settled(running, 4)
    windows = rows(
        running.services,
        "SELECT w.patient_id, w.window_index FROM webhook_delivery d "
        "JOIN report_window w ON w.id = d.report_window_id ORDER BY w.patient_id, w.window_index",
    )
    assert [(w["patient_id"], w["window_index"]) for w in windows] == [
        ("P1", 0),
        ("P1", 1),
        ("P2", 0),
        ("P2", 1),
    ]
    got = receiver.wait_for(lambda seen: len(seen) >= 4)
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(str(d["id"]) for d in sent)
    # the admin's delivery list says what each delivery is
    listed = running.api.client.get(
        "/v1/admin/webhook-deliveries", headers=running.api.headers("admin")
    ).json()["deliveries"]
    assert {(d["type"], d["alert_id"] is None) for d in listed} == {("report_due", True)}


def test_a_reported_window_sends_nothing(running: RunningService, receiver: Receiver) -> None:
    assert register(running, receiver.url("/due"), type=["report_due"]).status_code == 201
    enrol(running, ("P1", "u1"))
    report = f.assessment(FIXED_NOW - DAY, "P1", "pr-0123456789abcdef", sensory=0, source="patient")
    assert running.api.post_events({"events": [report]}).status_code == 202
    assert running.worker.wait_idle()
    assert open_report_windows(running.services) == 1
    assert report_due_deliveries(running) == []


def test_a_failing_receiver_is_retried_as_for_alerts(
    running: RunningService, receiver: Receiver
) -> None:
    receiver.script([500], default=200)
    assert register(running, receiver.url("/due"), type=["report_due"]).status_code == 201
    enrol(running, ("P1", "u1"))
    open_report_windows(running.services)
    [delivery] = settled(running, 1)
    assert delivery["attempts"] == 2
    outcomes = rows(
        running.services,
        "SELECT outcome, status_code FROM webhook_attempt WHERE delivery_id = :d ORDER BY id",
        d=delivery["id"],
    )
    assert outcomes == [
        {"outcome": "retry", "status_code": 500},
        {"outcome": "delivered", "status_code": 200},
    ]


@pytest.mark.parametrize(
    ("types", "why"),
    [
        (["reminder"], "body.filters.type.0"),
        ([], "body.filters.type"),
        ("report_due", "body.filters.type"),
    ],
)
def test_registration_refuses_unknown_event_types(
    running: RunningService, types: Any, why: str
) -> None:
    response = register(running, "https://hooks.example.org/x", type=types)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [why]
    assert rows(running.services, "SELECT count(*) AS n FROM webhook_endpoint") == [{"n": 0}]


def test_an_event_type_named_twice_is_kept_once(running: RunningService) -> None:
    response = register(
        running, "https://hooks.example.org/x", type=["report_due", "alert", "report_due"]
    )
    assert response.status_code == 201, response.text
    assert response.json()["filters"]["type"] == ["report_due", "alert"]
