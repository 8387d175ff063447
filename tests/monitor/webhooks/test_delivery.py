"""Webhooks (issue 4, item 3): admin registration, signed deliveries to a real receiver,
filters, retries with backoff up to a bound, every attempt recorded, failed deliveries visible
and re-triable, the claim, the scheduler's re-drive, and the Celery task.

The receiver (tests/common/webhook_receiver.py) is a real HTTP server on a loopback port that
checks signatures with the Standard Webhooks library. Backoff is shrunk (`FAST`) so a full
round of retries takes a fraction of a second; the service clock stays frozen (alerts carry
FIXED_NOW), while delivery times are the wall clock, as in production.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import itertools
import json
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, _state
from celery.contrib.testing.worker import start_worker
from celery.exceptions import DuplicateTaskNameWarning
from sqlmodel import col, select
from starlette.testclient import TestClient

from monitor.alerts.service import add_alerts
from monitor.app import create_app
from monitor.auth.roles import ROLES, Role
from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services
from monitor.settings import Settings
from monitor.storage.models import (
    AlertRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
    WebhookSecretRow,
)
from monitor.webhooks import signing
from monitor.webhooks.delivery import (
    TASK_NAME as DELIVER_TASK_NAME,
)
from monitor.webhooks.delivery import (
    deliver,
    due_for_redrive,
    fan_out,
    matches,
)
from monitor.webhooks.scheduled import redrive_deliveries
from tests.common import factories as f
from tests.common.service import Api, eventually, rows
from tests.common.webhook_receiver import Receiver, requests_by_delivery, signature_valid
from tests.conftest import FIXED_NOW
from workers.app import QUEUES, CeleryDispatcher, create_celery

SECRET = "whsec_" + base64.b64encode(b"s3cret-for-the-integration-tests").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-secret-of-another-endpoint").decode()
MAX_ATTEMPTS = 3
BACKOFF_S = 0.05
BACKOFF_MAX_S = 0.2
FAST = {
    "webhook_backoff_s": BACKOFF_S,
    "webhook_backoff_max_s": BACKOFF_MAX_S,
    "webhook_max_attempts": MAX_ATTEMPTS,
    "webhook_timeout_s": 5.0,
}
NON_ADMIN: tuple[Role, ...] = tuple(r for r in ROLES if r != "admin")


@pytest.fixture
def services(services: Services) -> Services:
    """The shared fixture with fast webhook retries, set before any worker or app starts."""
    services.settings = services.settings.model_copy(update=FAST)
    return services


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


# --- helpers -----------------------------------------------------------------------------------


def urgent_course(patient: str = "PT-1", unit: str = "ward-3") -> list[dict[str, Any]]:
    """Enrolment three weeks ago, then grade 3 sensory now: one urgent `discontinue` alert and
    a few info alerts (no timers overdue at FIXED_NOW)."""
    return [
        f.enrollment(
            FIXED_NOW - dt.timedelta(days=21), patient=patient, event_id=f"{patient}-e0", unit=unit
        ),
        f.assessment(
            FIXED_NOW - dt.timedelta(hours=1), patient=patient, event_id=f"{patient}-a1", sensory=3
        ),
    ]


def register(api: Api, url: str, secret: str | None = SECRET, **filters: list[str]) -> Any:
    body: dict[str, Any] = {"name": "integration", "url": url}
    if secret is not None:
        body["secret"] = secret
    if filters:
        body["filters"] = filters
    response = api.client.post("/v1/admin/webhooks", json=body, headers=api.headers("admin"))
    assert response.status_code == 201, response.text
    return response.json()


def post(api: Api, events: list[dict[str, Any]]) -> None:
    response = api.post_events({"events": events})
    assert response.status_code == 202, response.text


def feed(api: Api) -> list[dict[str, Any]]:
    response = api.get("/v1/alerts", limit="500")
    assert response.status_code == 200, response.text
    alerts: list[dict[str, Any]] = response.json()["alerts"]
    return alerts


def feed_when_processed(api: Api, services: Services) -> list[dict[str, Any]]:
    eventually(
        lambda: (
            rows(services, "SELECT count(*) AS n FROM outbox WHERE processed_at IS NULL")
            == [{"n": 0}]
        ),
        what="events processed",
    )
    return feed(api)


def deliveries(services: Services) -> list[dict[str, Any]]:
    return rows(services, "SELECT * FROM webhook_delivery ORDER BY id")


def attempts(services: Services, delivery_id: int) -> list[dict[str, Any]]:
    return rows(
        services,
        "SELECT attempt, status_code, outcome, error FROM webhook_attempt "
        "WHERE delivery_id = :d ORDER BY id",
        d=delivery_id,
    )


def settled(services: Services, count: int | None = None) -> list[dict[str, Any]]:
    """Wait until every delivery (and at least `count`) is delivered or failed."""

    def done() -> bool:
        found = deliveries(services)
        enough = len(found) >= (count or 1)
        return enough and all(d["status"] != "pending" for d in found)

    eventually(done, what="deliveries settled")
    return deliveries(services)


def seed(services: Services, url: str, count: int = 1, secret: str = SECRET) -> list[int]:
    """An endpoint and `count` urgent alerts with their delivery rows, sent to no one yet (as
    when the task was lost): for calling `deliver()` directly."""
    with services.sessions.begin() as session:
        endpoint = WebhookEndpointRow(name="seeded", url=url, created_at=FIXED_NOW)
        session.add(endpoint)
        session.flush()
        assert endpoint.id is not None
        session.add(WebhookSecretRow(endpoint_id=endpoint.id, secret=secret, created_at=FIXED_NOW))
        alerts = add_alerts(
            session,
            [
                AlertRow(
                    decision_id=f"seed-{i}",
                    kind="new",
                    action="discontinue",
                    patient_id="PT-9",
                    unit="ward-3",
                    severity="urgent",
                    audience=json.dumps(["nurse"]),
                    message="test alert",
                    created_at=FIXED_NOW,
                )
                for i in range(count)
            ],
        )
        return fan_out(session, alerts, dt.datetime.now(dt.UTC))


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class Recorder:
    """A dispatcher that only records what it is handed."""

    def __init__(self) -> None:
        self.deliveries: list[list[int]] = []

    def enqueue(self, patient_ids: list[str]) -> int:
        return 0

    def enqueue_deliveries(self, delivery_ids: list[int]) -> int:
        self.deliveries.append(list(delivery_ids))
        return len(delivery_ids)

    def ping(self) -> bool:
        return True


# --- admin registration ------------------------------------------------------------------------


def test_registration_shows_the_secret_once_and_the_list_never(api: Api) -> None:
    given = register(api, "https://hooks.example.org/bipn", severity=["urgent"], unit=["ward-3"])
    assert given["secret"] == SECRET
    assert given["url"] == "https://hooks.example.org/bipn"
    assert given["active"] is True
    assert given["filters"] == {
        "severity": ["urgent"],
        "audience": [],
        "unit": ["ward-3"],
        "kind": [],
        "type": ["alert"],  # the default: alerts only
    }
    assert [s["created_at"] for s in given["secrets"]] == ["2026-10-01T12:00:00Z"]
    generated = register(api, "https://hooks.example.org/other", secret=None)
    assert generated["secret"].startswith("whsec_")  # generated when omitted, shown this once
    assert signing.secret_problem(generated["secret"]) is None
    assert len(base64.b64decode(generated["secret"].removeprefix("whsec_"))) == 32
    assert generated["secret"] != SECRET

    listed = api.get("/v1/admin/webhooks", role="admin")
    assert listed.status_code == 200
    webhooks = listed.json()["webhooks"]
    assert [w["id"] for w in webhooks] == [given["id"], generated["id"]]
    assert all("secret" not in w for w in webhooks)
    assert SECRET not in listed.text
    assert generated["secret"] not in listed.text
    assert webhooks[0] == {k: v for k, v in given.items() if k != "secret"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "not a url"}, "body.url"),
        ({"url": "ftp://hooks.example.org/x"}, "body.url"),
        ({"url": "https://user:pw@hooks.example.org/x"}, "body.url"),
        ({"url": "https://hooks.example.org/" + "a" * 2030}, "body.url"),
        ({"secret": "too-short"}, "body.secret"),
        ({"secret": "whsec_not*base64!"}, "body.secret"),
        ({"secret": "whsec_" + base64.b64encode(b"x" * 23).decode()}, "body.secret"),
        ({"secret": "whsec_" + base64.b64encode(b"x" * 65).decode()}, "body.secret"),
        ({"secret": base64.b64encode(b"x" * 32).decode()}, "body.secret"),
        ({"name": ""}, "body.name"),
        ({"filters": {"severity": ["critical"]}}, "body.filters.severity.0"),
        ({"filters": {"audience": ["family"]}}, "body.filters.audience.0"),
        ({"filters": {"kind": ["daily"]}}, "body.filters.kind.0"),
        ({"filters": {"colour": ["red"]}}, "body.filters.colour"),
        ({"token": "x"}, "body.token"),
    ],
    ids=[
        "not-a-url",
        "ftp",
        "credentials",
        "too-long",
        "not-whsec",
        "not-base64",
        "23-bytes",
        "65-bytes",
        "no-prefix",
        "empty-name",
        "severity",
        "audience",
        "kind",
        "unknown-filter",
        "unknown-field",
    ],
)
def test_invalid_registration_is_422_naming_the_field(
    api: Api, services: Services, body: dict[str, Any], field: str
) -> None:
    full = {"name": "integration", "url": "https://hooks.example.org/x", "secret": SECRET} | body
    response = api.client.post("/v1/admin/webhooks", json=full, headers=api.headers("admin"))
    assert response.status_code == 422, response.text
    fields = [problem["field"] for problem in response.json()["errors"]]
    assert field in fields, fields
    if "user:pw" in str(body):
        assert "credentials in the URL" in response.text
    if "a" * 2030 in str(body):
        assert "longer than 2048 characters" in response.text
    if "secret" in body:
        assert body["secret"] not in response.text  # a secret is never echoed
    assert rows(services, "SELECT count(*) AS n FROM webhook_endpoint") == [{"n": 0}]


def test_missing_url_is_422(api: Api) -> None:
    response = api.client.post(
        "/v1/admin/webhooks", json={"name": "x", "secret": SECRET}, headers=api.headers("admin")
    )
    assert response.status_code == 422
    assert "body.url" in [problem["field"] for problem in response.json()["errors"]]


@pytest.mark.parametrize("role", NON_ADMIN)
def test_webhook_administration_is_for_admin_only(api: Api, services: Services, role: Role) -> None:
    hook = register(api, "https://hooks.example.org/x")
    headers = api.headers(role)
    calls = [
        api.client.post(
            "/v1/admin/webhooks",
            json={"name": "x", "url": "https://hooks.example.org/y"},
            headers=headers,
        ),
        api.client.get("/v1/admin/webhooks", headers=headers),
        api.client.delete(f"/v1/admin/webhooks/{hook['id']}", headers=headers),
        api.client.get("/v1/admin/webhook-deliveries", headers=headers),
        api.client.post("/v1/admin/webhook-deliveries/1/retry", headers=headers),
        api.client.post(f"/v1/admin/webhooks/{hook['id']}/secrets", headers=headers),
        api.client.delete(
            f"/v1/admin/webhooks/{hook['id']}/secrets/{hook['secrets'][0]['id']}",
            headers=headers,
        ),
    ]
    assert [c.status_code for c in calls] == [403] * len(calls)
    assert rows(services, "SELECT id, disabled_at FROM webhook_endpoint") == [
        {"id": hook["id"], "disabled_at": None}
    ]
    assert rows(services, "SELECT id, retired_at FROM webhook_secret") == [
        {"id": hook["secrets"][0]["id"], "retired_at": None}
    ]
    anonymous = api.client.get("/v1/admin/webhooks")
    assert anonymous.status_code == 401


def test_delete_disables_and_later_alerts_skip_the_endpoint(
    api: Api, services: Services, receiver: Receiver
) -> None:
    kept = register(api, receiver.url("/kept"))
    dropped = register(api, receiver.url("/dropped"))
    gone = api.client.delete(f"/v1/admin/webhooks/{dropped['id']}", headers=api.headers("admin"))
    assert gone.status_code == 200
    assert gone.json()["active"] is False
    assert "secret" not in gone.json()
    again = api.client.delete(f"/v1/admin/webhooks/{dropped['id']}", headers=api.headers("admin"))
    assert again.status_code == 200  # harmless twice
    missing = api.client.delete("/v1/admin/webhooks/999", headers=api.headers("admin"))
    assert missing.status_code == 404
    listed = api.get("/v1/admin/webhooks", role="admin").json()["webhooks"]
    assert [(w["id"], w["active"]) for w in listed] == [(kept["id"], True), (dropped["id"], False)]

    post(api, urgent_course())
    alerts = feed_when_processed(api, services)
    found = settled(services, len(alerts))
    assert len(alerts) >= 2
    assert {d["endpoint_id"] for d in found} == {kept["id"]}
    assert sorted(d["alert_id"] for d in found) == sorted(a["id"] for a in alerts)
    assert receiver.at("/dropped") == []
    assert len(receiver.at("/kept")) == len(alerts)


# --- end to end with the embedded worker -------------------------------------------------------


def test_alerts_reach_the_receiver_signed_with_the_alert_view(
    api: Api, services: Services, receiver: Receiver
) -> None:
    hook = register(api, receiver.url("/hook"))
    receiver.secrets["/hook"] = SECRET
    post(api, urgent_course())
    alerts = {a["id"]: a for a in feed_when_processed(api, services)}
    assert len(alerts) >= 2
    assert any(a["severity"] == "urgent" for a in alerts.values())
    found = settled(services, len(alerts))
    assert [d["status"] for d in found] == ["delivered"] * len(alerts)
    assert {d["endpoint_id"] for d in found} == {hook["id"]}
    received = receiver.wait_for(lambda seen: len(seen) == len(alerts))

    by_delivery = {d["id"]: d for d in found}
    for request in received:
        assert request.signature_ok is True  # the receiver's own HMAC, timestamp recent
        assert signature_valid(SECRET, request.headers, request.body)
        assert not signature_valid(OTHER_SECRET, request.headers, request.body)
        assert request.headers["x-bipn-event"] == "alert"
        assert request.headers["content-type"] == "application/json"
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
        assert request.headers["webhook-signature"].startswith("v1,")
        assert " " not in request.headers["webhook-signature"]  # one secret: one signature
        assert not any(
            name.startswith("x-bipn-") and name != "x-bipn-event" for name in request.headers
        )
        payload = request.json
        delivery = by_delivery[int(request.delivery)]
        assert payload["type"] == "alert"
        assert payload["delivery_id"] == delivery["id"]
        # what the feed shows, but a patient report's answers and words (they stay inside)
        shown = {k: v for k, v in alerts[delivery["alert_id"]].items() if k != "patient_report"}
        assert payload["alert"] == shown
        assert "patient_report" not in payload["alert"]
    assert sorted(r.json["alert"]["id"] for r in received) == sorted(alerts)
    assert all(len(attempts(services, d)) == 1 for d in by_delivery)


def test_an_endpoint_filtered_to_urgent_receives_only_urgent_alerts(
    api: Api, services: Services, receiver: Receiver
) -> None:
    register(api, receiver.url("/all"))
    register(api, receiver.url("/urgent"), severity=["urgent"])
    register(api, receiver.url("/other-unit"), unit=["ward-9"])
    post(api, urgent_course(unit="ward-3"))
    alerts = feed_when_processed(api, services)
    urgent = sorted(a["id"] for a in alerts if a["severity"] == "urgent")
    assert urgent
    assert len(urgent) < len(alerts)
    settled(services, len(alerts) + len(urgent))
    assert sorted(r.json["alert"]["id"] for r in receiver.at("/urgent")) == urgent
    assert sorted(r.json["alert"]["id"] for r in receiver.at("/all")) == sorted(
        a["id"] for a in alerts
    )
    assert receiver.at("/other-unit") == []


ALERT = AlertRow(
    id=1,
    decision_id="d-1",
    kind="new",
    action="discontinue",
    patient_id="PT-1",
    unit="ward-3",
    severity="urgent",
    audience=json.dumps(["physician", "nurse"]),
    message="m",
    created_at=FIXED_NOW,
)


@pytest.mark.parametrize(
    ("filters", "alert_fields", "expected"),
    [
        ({}, {}, True),
        ({"severity": ["urgent"]}, {}, True),
        ({"severity": ["info", "warning"]}, {}, False),
        ({"severity": ["urgent"]}, {"severity": "warning"}, False),
        ({"kind": ["new"]}, {}, True),
        ({"kind": ["reminder", "escalation"]}, {}, False),
        ({"kind": ["escalation"]}, {"kind": "escalation"}, True),
        ({"unit": ["ward-3"]}, {}, True),
        ({"unit": ["ward-4"]}, {}, False),
        ({"unit": ["ward-3"]}, {"unit": None}, False),
        ({"audience": ["nurse"]}, {}, True),
        ({"audience": ["pharmacy"]}, {}, False),
        ({"audience": ["pharmacy", "physician"]}, {}, True),
        ({"audience": ["nurse"]}, {"audience": json.dumps(["physician"])}, False),
        ({"severity": ["urgent"], "unit": ["ward-4"]}, {}, False),
        (
            {"severity": ["urgent"], "kind": ["new"], "unit": ["ward-3"], "audience": ["nurse"]},
            {},
            True,
        ),
        (
            {"severity": ["urgent"], "kind": ["correction"], "unit": ["ward-3"]},
            {},
            False,
        ),
    ],
)
def test_matches(
    filters: dict[str, list[str]], alert_fields: dict[str, Any], expected: bool
) -> None:
    endpoint = WebhookEndpointRow(
        name="e",
        url="http://127.0.0.1/",
        severities=json.dumps(filters.get("severity", [])),
        audiences=json.dumps(filters.get("audience", [])),
        units=json.dumps(filters.get("unit", [])),
        kinds=json.dumps(filters.get("kind", [])),
        created_at=FIXED_NOW,
    )
    alert = ALERT.model_copy(update=alert_fields)
    assert matches(endpoint, alert) is expected


# --- retries, the bound, the admin's retry -----------------------------------------------------


def test_500s_are_retried_with_backoff_then_delivered(
    api: Api, services: Services, receiver: Receiver
) -> None:
    receiver.script([500, 500, 200])
    receiver.secrets["/hook"] = SECRET
    register(api, receiver.url("/hook"), severity=["urgent"])
    post(api, urgent_course())
    [delivery] = settled(services)
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 3
    assert delivery["last_error"] is None
    assert delivery["delivered_at"] is not None
    assert attempts(services, delivery["id"]) == [
        {"attempt": 1, "status_code": 500, "outcome": "retry", "error": "HTTP 500"},
        {"attempt": 2, "status_code": 500, "outcome": "retry", "error": "HTTP 500"},
        {"attempt": 3, "status_code": 200, "outcome": "delivered", "error": None},
    ]
    received = receiver.received
    assert [r.status for r in received] == [500, 500, 200]
    assert {r.delivery for r in received} == {str(delivery["id"])}  # stable across retries
    assert {r.body for r in received} == {received[0].body}
    assert all(r.signature_ok for r in received)
    # backoff: at least 0.75 * 0.05 s, then 0.75 * 0.1 s (jitter is downwards only)
    gaps = [b.at - a.at for a, b in itertools.pairwise(received)]
    assert gaps[0] >= 0.75 * BACKOFF_S - 0.005
    assert gaps[1] >= 0.75 * 2 * BACKOFF_S - 0.005

    shown = api.get("/v1/admin/webhook-deliveries", role="admin", status="delivered").json()
    [entry] = shown["deliveries"]
    assert [h["outcome"] for h in entry["history"]] == ["retry", "retry", "delivered"]
    assert [h["status_code"] for h in entry["history"]] == [500, 500, 200]
    assert entry["next_attempt_at"] is None


def test_dead_after_the_bound_then_the_admin_retries_it(
    api: Api, services: Services, receiver: Receiver
) -> None:
    receiver.script(default=500)
    hook = register(api, receiver.url("/hook"), severity=["urgent"])
    post(api, urgent_course())
    [delivery] = settled(services)
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == MAX_ATTEMPTS
    assert (
        delivery["last_error"] == f"retries exhausted after {MAX_ATTEMPTS} attempts; last: HTTP 500"
    )
    assert [a["outcome"] for a in attempts(services, delivery["id"])] == [
        "retry",
        "retry",
        "failed",
    ]
    time.sleep(3 * BACKOFF_MAX_S)  # nothing more is sent by itself
    assert len(receiver.received) == MAX_ATTEMPTS

    failed = api.get("/v1/admin/webhook-deliveries", role="admin", status="failed")
    assert failed.status_code == 200
    [entry] = failed.json()["deliveries"]
    assert entry["id"] == delivery["id"]
    assert entry["endpoint_id"] == hook["id"]
    assert entry["status"] == "failed"
    assert entry["last_error"] == delivery["last_error"]
    assert entry["failed_at"] is not None
    assert entry["next_attempt_at"] is None
    assert [(h["attempt"], h["status_code"], h["outcome"]) for h in entry["history"]] == [
        (1, 500, "retry"),
        (2, 500, "retry"),
        (3, 500, "failed"),
    ]
    assert api.get("/v1/admin/webhook-deliveries", role="admin", status="pending").json() == {
        "deliveries": []
    }
    by_hook = api.get("/v1/admin/webhook-deliveries", role="admin", webhook_id=str(hook["id"]))
    assert [d["id"] for d in by_hook.json()["deliveries"]] == [delivery["id"]]
    other_hook = api.get("/v1/admin/webhook-deliveries", role="admin", webhook_id="999")
    assert other_hook.json() == {"deliveries": []}
    bad_status = api.get("/v1/admin/webhook-deliveries", role="admin", status="lost")
    assert bad_status.status_code == 422

    retry_url = f"/v1/admin/webhook-deliveries/{delivery['id']}/retry"
    assert api.client.post(retry_url, headers=api.headers("nurse")).status_code == 403
    receiver.script(default=200)  # the receiver is fixed
    retried = api.client.post(retry_url, headers=api.headers("admin"))
    assert retried.status_code == 202
    assert retried.json() == {"delivery_id": delivery["id"], "status": "pending"}
    eventually(lambda: deliveries(services)[0]["status"] == "delivered", what="the retry delivered")
    [after] = deliveries(services)
    assert after["attempts"] == 1  # a fresh round
    assert after["last_error"] is None
    assert attempts(services, delivery["id"])[-1] == {
        "attempt": 4,
        "status_code": 200,
        "outcome": "delivered",
        "error": None,
    }
    assert [r.status for r in receiver.received] == [500, 500, 500, 200]
    assert {r.delivery for r in receiver.received} == {str(delivery["id"])}

    again = api.client.post(retry_url, headers=api.headers("admin"))
    assert again.status_code == 409  # delivered: nothing to retry
    unknown = api.client.post(
        "/v1/admin/webhook-deliveries/999/retry", headers=api.headers("admin")
    )
    assert unknown.status_code == 404
    assert len(receiver.received) == MAX_ATTEMPTS + 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_a_4xx_fails_at_once_without_retry(
    api: Api, services: Services, receiver: Receiver, status: int
) -> None:
    receiver.script(default=status)
    register(api, receiver.url("/hook"), severity=["urgent"])
    post(api, urgent_course())
    [delivery] = settled(services)
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 1
    assert delivery["last_error"] == f"HTTP {status}"  # refused, not "retries exhausted"
    assert attempts(services, delivery["id"]) == [
        {"attempt": 1, "status_code": status, "outcome": "failed", "error": f"HTTP {status}"}
    ]
    time.sleep(2 * BACKOFF_MAX_S)
    assert len(receiver.received) == 1


def test_429_with_retry_after_is_retried_after_the_wait(
    api: Api, services: Services, receiver: Receiver
) -> None:
    receiver.script([(429, {"Retry-After": "1"})])
    register(api, receiver.url("/hook"), severity=["urgent"])
    post(api, urgent_course())
    [delivery] = settled(services)
    assert delivery["status"] == "delivered"
    assert [(a["status_code"], a["outcome"]) for a in attempts(services, delivery["id"])] == [
        (429, "retry"),
        (200, "delivered"),
    ]
    first, second = receiver.received
    # Retry-After (1 s) is honoured up to the backoff ceiling (0.2 s here), never below it
    assert second.at - first.at >= BACKOFF_MAX_S - 0.005


def test_connection_refused_is_retried_up_to_the_bound(api: Api, services: Services) -> None:
    register(api, f"http://127.0.0.1:{free_port()}/hook", severity=["urgent"])
    post(api, urgent_course())
    [delivery] = settled(services)
    assert delivery["status"] == "failed"
    tried = attempts(services, delivery["id"])
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in tried] == [
        (1, None, "retry"),
        (2, None, "retry"),
        (3, None, "failed"),
    ]
    assert all(a["error"].startswith("ConnectError") for a in tried)
    assert delivery["last_error"].startswith(
        f"retries exhausted after {MAX_ATTEMPTS} attempts; last: ConnectError"
    )


# --- deliver() itself --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "delivered"),
        (202, "delivered"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (408, "retry"),
        (425, "retry"),
        (429, "retry"),
        (301, "failed"),
        (400, "failed"),
        (409, "failed"),
    ],
)
def test_one_attempt_by_status(
    services: Services, receiver: Receiver, status: int, outcome: str
) -> None:
    receiver.script(default=status)
    [delivery_id] = seed(services, receiver.url())
    result = deliver(services, delivery_id)
    assert result.outcome == outcome
    [row] = deliveries(services)
    assert row["attempts"] == 1
    assert row["claimed_until"] is None
    if outcome == "retry":
        assert result.retry_in_s is not None
        assert 0.75 * BACKOFF_S <= result.retry_in_s <= BACKOFF_S
        assert row["status"] == "pending"
    else:
        assert result.retry_in_s is None
        assert row["status"] == ("delivered" if outcome == "delivered" else "failed")
    assert [a["outcome"] for a in attempts(services, delivery_id)] == [outcome]


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("3", 3.0, 3.0),  # honoured
        ("120", 10.0, 10.0),  # capped by webhook_backoff_max_s
        ("0", 0.75 * BACKOFF_S, BACKOFF_S),  # never below the backoff
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.75 * BACKOFF_S, BACKOFF_S),  # a date: ignored
    ],
)
def test_retry_after_sets_the_wait(
    services: Services, receiver: Receiver, retry_after: str, low: float, high: float
) -> None:
    services.settings = services.settings.model_copy(update={"webhook_backoff_max_s": 10.0})
    receiver.script(default=(429, {"Retry-After": retry_after}))
    [delivery_id] = seed(services, receiver.url())
    before = dt.datetime.now(dt.UTC)
    result = deliver(services, delivery_id)
    assert result.outcome == "retry"
    assert result.retry_in_s is not None
    assert low <= result.retry_in_s <= high
    with services.sessions() as session:
        row = session.get(WebhookDeliveryRow, delivery_id)
        assert row is not None
        waited = (row.next_attempt_at - before).total_seconds()
    assert low <= waited <= high + 5


def test_deliver_bounds_attempts_and_then_skips(services: Services, receiver: Receiver) -> None:
    receiver.script(default=503)
    [delivery_id] = seed(services, receiver.url())
    outcomes = [deliver(services, delivery_id).outcome for _ in range(MAX_ATTEMPTS + 1)]
    assert outcomes == ["retry", "retry", "failed", "skipped"]
    assert len(receiver.received) == MAX_ATTEMPTS
    [row] = deliveries(services)
    assert row["last_error"] == f"retries exhausted after {MAX_ATTEMPTS} attempts; last: HTTP 503"


def test_a_disabled_endpoint_fails_its_pending_delivery_without_sending(
    api: Api, services: Services, receiver: Receiver
) -> None:
    [delivery_id] = seed(services, receiver.url())  # pending, its task not run yet
    [hook] = api.get("/v1/admin/webhooks", role="admin").json()["webhooks"]
    gone = api.client.delete(f"/v1/admin/webhooks/{hook['id']}", headers=api.headers("admin"))
    assert gone.status_code == 200
    assert deliver(services, delivery_id).outcome == "failed"
    [row] = deliveries(services)
    assert row["status"] == "failed"
    assert row["last_error"] == "the endpoint was disabled"
    assert attempts(services, delivery_id) == [
        {
            "attempt": 1,
            "status_code": None,
            "outcome": "failed",
            "error": "the endpoint was disabled",
        }
    ]
    assert receiver.received == []
    retried = api.client.post(
        f"/v1/admin/webhook-deliveries/{delivery_id}/retry", headers=api.headers("admin")
    )
    assert retried.status_code == 409
    assert retried.json()["detail"] == f"webhook {hook['id']} is disabled"


# --- the claim ---------------------------------------------------------------------------------


def test_two_concurrent_deliver_calls_send_once(services: Services, receiver: Receiver) -> None:
    receiver.script(default=200, delay_s=0.4)  # a slow endpoint: the first send is in flight
    [delivery_id] = seed(services, receiver.url())
    barrier = threading.Barrier(2)
    results: list[tuple[str, float]] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        outcome = deliver(services, delivery_id).outcome
        with lock:
            results.append((outcome, time.monotonic()))

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcome for outcome, _ in results) == ["delivered", "skipped"]
    # the skip came back while the other send was still in flight: the claim, not the status
    assert results[0][0] == "skipped"
    assert len(receiver.received) == 1
    assert len(attempts(services, delivery_id)) == 1
    assert deliver(services, delivery_id).outcome == "skipped"  # delivered: never again
    assert len(receiver.received) == 1


def test_an_expired_claim_can_be_taken(services: Services, receiver: Receiver) -> None:
    """A worker died mid-send: once its claim has expired, another may send."""
    [delivery_id] = seed(services, receiver.url())
    wall = dt.datetime.now(dt.UTC)
    with services.sessions.begin() as session:
        row = session.get(WebhookDeliveryRow, delivery_id)
        assert row is not None
        row.claimed_until = wall + dt.timedelta(seconds=60)
    assert deliver(services, delivery_id).outcome == "skipped"
    with services.sessions.begin() as session:
        row = session.get(WebhookDeliveryRow, delivery_id)
        assert row is not None
        row.claimed_until = wall - dt.timedelta(seconds=1)
    assert deliver(services, delivery_id).outcome == "delivered"
    assert len(receiver.received) == 1


# --- the re-drive ------------------------------------------------------------------------------

GRACE_S = 5.0


def set_delivery(services: Services, delivery_id: int, **values: Any) -> None:
    with services.sessions.begin() as session:
        row = session.get(WebhookDeliveryRow, delivery_id)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)


def test_due_for_redrive_picks_overdue_unclaimed_pending_deliveries(
    services: Services, receiver: Receiver
) -> None:
    services.settings = services.settings.model_copy(update={"outbox_redrive_after_s": GRACE_S})
    ids = seed(services, receiver.url(), count=7)
    wall = dt.datetime.now(dt.UTC)
    overdue = wall - dt.timedelta(seconds=GRACE_S + 60)
    lost, fresh, claimed, expired, delivered, failed, recent = ids
    set_delivery(services, lost, next_attempt_at=overdue)
    set_delivery(services, fresh, next_attempt_at=wall)
    set_delivery(services, recent, next_attempt_at=wall - dt.timedelta(seconds=GRACE_S - 2))
    set_delivery(
        services,
        claimed,
        next_attempt_at=overdue,
        claimed_until=wall + dt.timedelta(seconds=60),
    )
    set_delivery(
        services,
        expired,
        next_attempt_at=overdue,
        claimed_until=wall - dt.timedelta(seconds=1),
    )
    set_delivery(services, delivered, next_attempt_at=overdue, status="delivered")
    set_delivery(services, failed, next_attempt_at=overdue, status="failed")

    assert due_for_redrive(services) == [lost, expired]
    assert due_for_redrive(services) == []  # restamped: not again before another grace period
    with services.sessions() as session:
        stamped = session.execute(
            select(WebhookDeliveryRow).where(col(WebhookDeliveryRow.id).in_([lost, expired]))
        ).scalars()
        assert all(row.next_attempt_at >= wall for row in stamped)
    assert receiver.received == []  # finding them sends nothing


def test_the_scheduler_job_enqueues_lost_deliveries(
    services: Services, receiver: Receiver, worker: InProcessWorker
) -> None:
    services.settings = services.settings.model_copy(update={"outbox_redrive_after_s": GRACE_S})
    recorder = Recorder()
    services.dispatcher = recorder
    lost, fresh = seed(services, receiver.url(), count=2)
    overdue = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=GRACE_S + 1)
    set_delivery(services, lost, next_attempt_at=overdue)
    assert redrive_deliveries(services) == 1
    assert recorder.deliveries == [[lost]]
    assert redrive_deliveries(services) == 0  # nothing due any more
    assert recorder.deliveries == [[lost]]

    # with a working dispatcher (the embedded worker) the lost delivery is then sent
    services.dispatcher = worker
    set_delivery(services, lost, next_attempt_at=overdue)
    assert redrive_deliveries(services) == 1
    eventually(
        lambda: [d["status"] for d in deliveries(services)] == ["delivered", "pending"],
        what="the re-driven delivery sent",
    )
    assert [r.json["delivery_id"] for r in receiver.received] == [lost]
    assert fresh != lost


# --- the Celery task ---------------------------------------------------------------------------


class Holder:
    """What the module's Celery worker uses for its next task: the current test's services."""

    services: Services | None = None

    def __call__(self) -> Services:
        assert self.services is not None, "a task arrived between tests"
        return self.services


@contextlib.contextmanager
def finalizer_hooks_restored(hide: frozenset[str] = frozenset()) -> Iterator[None]:
    """Celery apps built inside see no earlier app's hooks named in `hide`, and leave none of
    their own behind (the process-wide hook set is put back as it was).

    `workers.app` registers its tasks with Celery's default `shared=True`: an app finalized
    later in the process first takes the task functions of every app built before it (here,
    test_celery_worker.py's, a closure over that module's Holder) and its own are dropped with
    a DuplicateTaskNameWarning. Fixed (`shared=False`, test below); kept as isolation.
    """
    saved = set(_state._on_app_finalizers)
    _state._on_app_finalizers.difference_update(
        {hook for hook in saved if getattr(hook, "__name__", "") in hide}
    )
    try:
        yield
    finally:
        _state._on_app_finalizers.clear()
        _state._on_app_finalizers.update(saved)


OUR_TASKS = frozenset({"process_patient", "deliver_webhook"})


def consuming_app(holder: Holder) -> Celery:
    return create_celery(
        Settings(broker_url="memory://", database_url="sqlite://", fixed_now=FIXED_NOW), holder
    )


@pytest.fixture(scope="module")
def celery_worker() -> Iterator[tuple[Celery, Holder]]:
    """A real worker thread on the in-process `memory://` broker (as test_celery_worker.py)."""
    holder = Holder()
    with finalizer_hooks_restored(hide=OUR_TASKS):
        app = consuming_app(holder)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DuplicateTaskNameWarning)
            app.finalize()
    app.conf.broker_transport_options = {"visibility_timeout": 3600, "polling_interval": 0.01}
    # both queues in one test worker (production runs a worker per queue: deploy files)
    with start_worker(
        app, pool="solo", perform_ping_check=False, shutdown_timeout=30, queues=list(QUEUES)
    ):
        yield app, holder


@pytest.fixture
def celery_api(
    services: Services, celery_worker: tuple[Celery, Holder], tokens: dict[Role, str]
) -> Iterator[Api]:
    app, holder = celery_worker
    services.dispatcher = CeleryDispatcher(app)
    holder.services = services
    with TestClient(create_app(services)) as client:
        yield Api(client, tokens)
    holder.services = None
    services.dispatcher = None


def test_the_celery_task_delivers_with_retries(
    celery_api: Api, services: Services, receiver: Receiver
) -> None:
    receiver.script([500, 500])
    receiver.secrets["/celery"] = SECRET
    register(celery_api, receiver.url("/celery"))
    post(celery_api, urgent_course())
    alerts = feed_when_processed(celery_api, services)
    found = settled(services, len(alerts))
    assert [d["status"] for d in found] == ["delivered"] * len(alerts)
    for delivery in found:
        assert [(a["status_code"], a["outcome"]) for a in attempts(services, delivery["id"])] == [
            (500, "retry"),
            (500, "retry"),
            (200, "delivered"),
        ]
    grouped = requests_by_delivery(receiver.received)
    assert sorted(grouped) == sorted(str(d["id"]) for d in found)
    assert all([r.status for r in group] == [500, 500, 200] for group in grouped.values())
    assert all(r.signature_ok for r in receiver.received)


def test_the_celery_task_stops_at_the_bound(
    celery_api: Api, services: Services, receiver: Receiver, celery_worker: tuple[Celery, Holder]
) -> None:
    receiver.script(default=500)
    register(celery_api, receiver.url("/celery"), severity=["urgent"])
    post(celery_api, urgent_course())
    [delivery] = settled(services)
    assert delivery["status"] == "failed"
    assert (
        delivery["last_error"] == f"retries exhausted after {MAX_ATTEMPTS} attempts; last: HTTP 500"
    )
    time.sleep(3 * BACKOFF_MAX_S)
    assert len(receiver.received) == MAX_ATTEMPTS

    # the admin's retry goes through the broker too
    receiver.script(default=200)
    retried = celery_api.client.post(
        f"/v1/admin/webhook-deliveries/{delivery['id']}/retry", headers=celery_api.headers("admin")
    )
    assert retried.status_code == 202
    eventually(lambda: deliveries(services)[0]["status"] == "delivered", what="retry delivered")
    assert len(receiver.received) == MAX_ATTEMPTS + 1

    app, _holder = celery_worker
    task = app.tasks[DELIVER_TASK_NAME]
    assert task.apply(args=["not-an-id"]).get() == "invalid"
    assert task.apply(args=[delivery["id"]]).get() == "skipped"  # delivered: not sent again
    assert len(receiver.received) == MAX_ATTEMPTS + 1


def test_a_second_consuming_app_keeps_its_own_tasks() -> None:
    with finalizer_hooks_restored(), warnings.catch_warnings():
        warnings.simplefilter("error", DuplicateTaskNameWarning)
        consuming_app(Holder()).finalize()
        consuming_app(Holder()).finalize()
