"""The nurse feed over HTTP (CONTRACT.md, role `nurse`): the alert list with its cursors and
filters, acknowledgement, the live stream (Server-Sent Events, against a real server), the
patient history behind the charts, and the web page's files.

Alerts come from events posted through the API and processed by the in-process worker; the
expected alerts are derived from what the API says about the decisions (one alert per decision
with an audience) and the expected filter results from the full list, so each check compares two
independent answers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from monitor.app import create_app
from monitor.auth.roles import Role
from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services
from tests.common import factories as f
from tests.common.service import Api, eventually, rows
from tests.conftest import FIXED_NOW

VIEW_FIELDS = {
    "id",
    "kind",
    "severity",
    "action",
    "audience",
    "patient_id",
    "unit",
    "message",
    "decision_id",
    "decision_url",
    "escalates_alert_id",
    "clinical_at",
    "created_at",
    "acknowledged",
    "ack",
    "patient_report",  # the feed's own: what a patient reported, for a D9 review
}
NOW_TEXT = "2026-10-01T12:00:00Z"
CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
Params = Sequence[tuple[str, str | int]]
JSON = {"Content-Type": "application/json"}


def days_ago(days: float) -> dt.datetime:
    """Clinical times shortly before the service clock: no reassessment is overdue yet."""
    return FIXED_NOW - dt.timedelta(days=days)


def three_patients() -> list[dict[str, Any]]:
    """PT-1 (unit U-A) grade 2 sensory: a dose reduction (warning); PT-2 (unit U-B) grade 3: a
    discontinuation (urgent, nurse among others); PT-3 (no unit) motor grade 3: an immune
    work-up (urgent, physician and neurology only)."""
    return [
        f.enrollment(days_ago(10), patient="PT-1", event_id="pt1-e", unit="U-A"),
        f.assessment(days_ago(3), patient="PT-1", event_id="pt1-a3", sensory=2),
        f.enrollment(days_ago(10), patient="PT-2", event_id="pt2-e", unit="U-B"),
        f.assessment(days_ago(3), patient="PT-2", event_id="pt2-a3", sensory=3),
        f.enrollment(days_ago(10), patient="PT-3", event_id="pt3-e"),
        f.assessment(days_ago(3), patient="PT-3", event_id="pt3-a3", motor=3),
    ]


def post(api: Api, worker: InProcessWorker, *bodies: dict[str, Any]) -> None:
    response = api.post_events({"events": list(bodies)})
    assert response.status_code == 202, response.text
    assert worker.wait_idle()


def get_alerts(api: Api, params: Params = (), role: Role | None = "admin") -> httpx.Response:
    """GET /v1/alerts with repeatable query parameters (admin by default: every audience; the
    care roles' own views are tested in tests/monitor/auth/test_roles_and_units.py)."""
    response: httpx.Response = api.client.get(
        "/v1/alerts", params=list(params), headers=api.headers(role)
    )
    return response


def page(api: Api, params: Params = ()) -> dict[str, Any]:
    response = get_alerts(api, params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def all_alerts(api: Api) -> list[dict[str, Any]]:
    """Every alert, newest first (one page: the tests hold far fewer than the page limit)."""
    alerts: list[dict[str, Any]] = page(api, [("limit", 500)])["alerts"]
    return alerts


def nurses(alerts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alerts a nurse may acknowledge (addressed to the nurse)."""
    return [a for a in alerts if "nurse" in a["audience"]]


def ids(alerts: Sequence[dict[str, Any]]) -> list[int]:
    return [a["id"] for a in alerts]


def ack(api: Api, alert_id: int, body: Any = None, role: Role | None = "admin") -> httpx.Response:
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    response: httpx.Response = api.client.post(
        f"/v1/alerts/{alert_id}/ack", headers=api.headers(role), **kwargs
    )
    return response


def error_fields(response: httpx.Response) -> set[str]:
    """The top-level names of the fields a 422 complains about ("severity.0" -> "severity")."""
    return {e["field"].split(".")[0] for e in response.json()["errors"]}


# --- alerts appear for decisions with an audience ------------------------------------------------


def test_every_decision_with_an_audience_becomes_one_alert_with_the_full_view(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    assert page(api)["alerts"] == []
    assert page(api)["last_id"] == 0
    bodies = three_patients()
    post(api, worker, *bodies)
    decisions = {
        d["decision_id"]: d
        for patient in ("PT-1", "PT-2", "PT-3")
        for d in api.decisions(patient)
        if d["audience"]
    }
    assert {d["action"] for d in decisions.values()} >= {
        "reduce_dose",
        "discontinue",
        "immune_workup",
    }
    alerts = all_alerts(api)
    assert sorted(a["decision_id"] for a in alerts) == sorted(decisions)  # one each
    units = {"PT-1": "U-A", "PT-2": "U-B", "PT-3": None}
    for alert in alerts:
        assert set(alert) == VIEW_FIELDS
        decision = decisions[alert["decision_id"]]
        assert alert["kind"] == "new"
        assert alert["severity"] == decision["severity"]
        assert alert["action"] == decision["action"]
        assert alert["audience"] == decision["audience"]
        assert alert["patient_id"] == decision["patient_id"]
        assert alert["unit"] == units[alert["patient_id"]]
        assert alert["message"] == decision["rationale"]
        assert alert["decision_url"] == (
            f"/v1/patients/{alert['patient_id']}/decisions/{alert['decision_id']}"
        )
        assert alert["escalates_alert_id"] is None
        assert alert["created_at"] == NOW_TEXT
        assert alert["clinical_at"] == decision["at"]  # the trigger's time, not the raising
        assert (alert["acknowledged"], alert["ack"]) == (False, None)
    # The link leads to the decision (each one).
    for alert in alerts:
        linked = api.client.get(alert["decision_url"], headers=api.headers("nurse"))
        assert linked.status_code == 200, linked.text
        assert linked.json() == decisions[alert["decision_id"]]
    other = api.client.get(
        alerts[0]["decision_url"].replace(alerts[0]["patient_id"], "PT-9"),
        headers=api.headers("nurse"),
    )
    assert other.status_code == 404  # a decision is found under its own patient only
    # What the database holds, in the API's words.
    stored = rows(services, "SELECT id, decision_id, severity, unit FROM alert ORDER BY id DESC")
    assert [(r["id"], r["decision_id"], r["severity"], r["unit"]) for r in stored] == [
        (a["id"], a["decision_id"], a["severity"], a["unit"]) for a in alerts
    ]
    # The same events again (duplicates) and another processing pass: no second alert.
    post(api, worker, *bodies)
    assert all_alerts(api) == alerts
    assert page(api)["last_id"] == max(ids(alerts))


# --- the list: order, cursors, filters -----------------------------------------------------------


@dataclass
class Feed:
    """Three patients' alerts, one correction (a late event moved PT-1's reduction), and two
    alerts acknowledged."""

    alerts: list[dict[str, Any]]  # newest first
    acked: set[int] = field(default_factory=set)

    def where(self, keep: Callable[[dict[str, Any]], bool]) -> list[int]:
        return [a["id"] for a in self.alerts if keep(a)]


@pytest.fixture
def feed(api: Api, worker: InProcessWorker) -> Feed:
    post(api, worker, *three_patients())
    post(api, worker, f.assessment(days_ago(6), patient="PT-1", event_id="pt1-a6", sensory=2))
    alerts = all_alerts(api)
    assert "correction" in {a["kind"] for a in alerts}
    acked = {alerts[0]["id"], alerts[-1]["id"]}
    for alert_id in acked:
        assert ack(api, alert_id).status_code == 200
    return Feed(all_alerts(api), acked)


def test_the_list_is_newest_first_and_says_the_last_id(api: Api, feed: Feed) -> None:
    listed = ids(feed.alerts)
    assert len(listed) >= 10
    assert listed == sorted(listed, reverse=True)
    assert listed == list(range(len(listed), 0, -1))  # ids in commit order, no gaps
    first = page(api)  # the default page is 50 long: everything here
    assert ids(first["alerts"]) == listed
    assert first["last_id"] == listed[0]
    assert first["next_cursor"] is None  # not a full page: nothing older
    assert first["next_after"] is None  # only given with after=
    short = page(api, [("limit", 3)])
    assert ids(short["alerts"]) == listed[:3]
    assert short["next_cursor"] == listed[2]


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_cursor_pages_walk_every_alert_once(api: Api, feed: Feed, limit: int) -> None:
    seen: list[int] = []
    params: list[tuple[str, str | int]] = [("limit", limit)]
    cursor = None
    for _ in range(len(feed.alerts) + 2):
        body = page(api, params + ([("cursor", cursor)] if cursor is not None else []))
        assert len(body["alerts"]) <= limit
        assert body["next_after"] is None
        assert body["last_id"] == feed.alerts[0]["id"]
        seen += ids(body["alerts"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert cursor == seen[-1]
    else:
        pytest.fail("the cursor never ended")
    assert seen == ids(feed.alerts)  # newest first, no gap, no repeat


def test_cursor_pages_with_a_filter_walk_the_filtered_alerts(api: Api, feed: Feed) -> None:
    expected = feed.where(lambda a: "nurse" in a["audience"])
    assert 2 < len(expected) < len(feed.alerts)
    seen: list[int] = []
    cursor: int | None = None
    while True:
        params: list[tuple[str, str | int]] = [("audience", "nurse"), ("limit", 2)]
        body = page(api, params + ([("cursor", cursor)] if cursor is not None else []))
        seen += ids(body["alerts"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


def test_after_returns_newer_alerts_oldest_first_with_next_after(api: Api, feed: Feed) -> None:
    oldest_first = sorted(ids(feed.alerts))
    pivot = oldest_first[3]
    body = page(api, [("after", pivot)])
    assert ids(body["alerts"]) == oldest_first[4:]
    assert body["next_after"] == oldest_first[-1]
    assert body["next_cursor"] is None
    assert body["last_id"] == oldest_first[-1]
    # Polling with next_after from 0, three at a time, walks everything once, in order.
    seen: list[int] = []
    after = 0
    for _ in range(len(oldest_first) + 2):
        body = page(api, [("after", after), ("limit", 3)])
        if not body["alerts"]:
            assert body["next_after"] == after  # nothing new: ask again from the same place
            break
        seen += ids(body["alerts"])
        after = body["next_after"]
        assert after == seen[-1]
    assert seen == oldest_first
    # After the newest: nothing, and next_after stays.
    assert page(api, [("after", oldest_first[-1])])["alerts"] == []


def test_cursor_and_after_together_is_422(api: Api, feed: Feed) -> None:
    response = get_alerts(api, [("cursor", 5), ("after", 1)])
    assert response.status_code == 422
    assert "not both" in response.json()["detail"]


def test_filters_each_return_exactly_the_matching_alerts(api: Api, feed: Feed) -> None:
    cases: list[tuple[Params, Callable[[dict[str, Any]], bool]]] = [
        ([("severity", "urgent")], lambda a: a["severity"] == "urgent"),
        (
            [("severity", "urgent"), ("severity", "warning")],
            lambda a: a["severity"] in ("urgent", "warning"),
        ),
        ([("severity", "info")], lambda a: a["severity"] == "info"),
        ([("audience", "neurology")], lambda a: "neurology" in a["audience"]),
        (
            [("audience", "neurology"), ("audience", "pharmacy")],
            lambda a: {"neurology", "pharmacy"} & set(a["audience"]),
        ),
        ([("audience", "nurse")], lambda a: "nurse" in a["audience"]),
        ([("unit", "U-A")], lambda a: a["unit"] == "U-A"),
        ([("unit", "U-A"), ("unit", "U-B")], lambda a: a["unit"] in ("U-A", "U-B")),
        ([("unit", "U-none")], lambda a: False),
        ([("kind", "correction")], lambda a: a["kind"] == "correction"),
        ([("kind", "new"), ("kind", "reminder")], lambda a: a["kind"] == "new"),
        ([("acknowledged", "true")], lambda a: a["id"] in feed.acked),
        ([("acknowledged", "false")], lambda a: a["id"] not in feed.acked),
        # different parameters: all of them
        (
            [("severity", "urgent"), ("unit", "U-B")],
            lambda a: a["severity"] == "urgent" and a["unit"] == "U-B",
        ),
        (
            [("audience", "nurse"), ("acknowledged", "false"), ("kind", "new")],
            lambda a: "nurse" in a["audience"] and a["id"] not in feed.acked,
        ),
    ]
    total = len(feed.alerts)
    for params, keep in cases:
        expected = feed.where(keep)
        if params != [("unit", "U-none")]:
            assert 0 < len(expected) < total, params  # each filter really filters
        newest_first = page(api, [*params, ("limit", 500)])
        assert ids(newest_first["alerts"]) == expected, params
        assert newest_first["last_id"] == total  # the feed's last id, whatever the filter
        oldest_first = page(api, [*params, ("after", 0)])
        assert ids(oldest_first["alerts"]) == sorted(expected), params
    # The acknowledged flag agrees with the ack in each view.
    for alert in feed.alerts:
        assert alert["acknowledged"] == (alert["id"] in feed.acked)
        assert (alert["ack"] is not None) == alert["acknowledged"]


INVALID_FILTERS: list[tuple[Params, str]] = [
    ([("severity", "critical")], "severity"),
    ([("severity", "urgent"), ("severity", "Urgent")], "severity"),
    ([("audience", "doctor")], "audience"),
    ([("kind", "old")], "kind"),
    ([("unit", "")], "unit"),
    ([("unit", "U" * 65)], "unit"),
    ([("acknowledged", "maybe")], "acknowledged"),
    ([("cursor", "0")], "cursor"),
    ([("cursor", "x")], "cursor"),
    ([("after", "-1")], "after"),
    ([("limit", "0")], "limit"),
    ([("limit", "501")], "limit"),
]


def test_invalid_filters_are_422_naming_the_field(api: Api, worker: InProcessWorker) -> None:
    post(api, worker, f.enrollment(days_ago(3), patient="PT-1", unit="U-A"))
    for params, name in INVALID_FILTERS:
        response = get_alerts(api, params)
        assert response.status_code == 422, (params, response.text)
        assert error_fields(response) == {name}, params
    assert page(api, [("severity", "info"), ("unit", "U" * 64)])["alerts"] == []  # the bound


def test_the_list_is_for_the_care_team_and_admins(api: Api) -> None:
    allowed: dict[Role | None, int] = {
        "nurse": 200,
        "physician": 200,
        "pharmacy": 200,
        "infusion": 200,
        "admin": 200,
        None: 401,
        "ingest": 403,
        "auditor": 403,
    }
    assert {role: get_alerts(api, role=role).status_code for role in allowed} == allowed


# --- acknowledgement ----------------------------------------------------------------------------


def acks_of(services: Services, alert_id: int) -> list[dict[str, Any]]:
    return rows(
        services,
        "SELECT acknowledged_by, token_name, acknowledged_at, note, recorded_at FROM alert_ack "
        "WHERE alert_id = :a",
        a=alert_id,
    )


def audit_rows(services: Services, action: str) -> list[tuple[str, str, str, int]]:
    return [
        (r["actor"], r["role"], r["resource"], r["status_code"])
        for r in rows(
            services,
            "SELECT actor, role, resource, status_code FROM audit_log WHERE action = :a "
            "ORDER BY id",
            a=action,
        )
    ]


ACK_ACTION = "POST /v1/alerts/{alert_id}/ack"


def test_ack_defaults_to_the_token_and_the_service_clock(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    post(api, worker, *three_patients())
    target = nurses(all_alerts(api))[-1]
    response = ack(api, target["id"], role="nurse")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["already_acknowledged"] is False
    assert {k: v for k, v in body.items() if k != "already_acknowledged"} == target | {
        "acknowledged": True,
        "ack": {
            "by": "test-nurse",
            "token": "test-nurse",
            "at": NOW_TEXT,
            "note": None,
            "recorded_at": NOW_TEXT,
        },
    }
    # The feed shows it acknowledged.
    listed = next(a for a in all_alerts(api) if a["id"] == target["id"])
    assert listed["acknowledged"] is True
    assert listed["ack"] == body["ack"]
    assert len(acks_of(services, target["id"])) == 1
    assert audit_rows(services, ACK_ACTION) == [
        ("test-nurse", "nurse", f"alert:{target['id']}", 200)
    ]


def test_ack_records_who_when_with_offset_as_utc_and_a_note(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    post(api, worker, *three_patients())
    target = nurses(all_alerts(api))[0]
    response = ack(
        api,
        target["id"],
        {"by": "RN 4417", "at": "2026-10-01T14:01:00+02:00", "note": "seen"},
        role="nurse",
    )
    assert response.status_code == 200, response.text
    assert response.json()["ack"] == {
        "by": "RN 4417",
        "token": "test-nurse",
        "at": "2026-10-01T12:01:00Z",
        "note": "seen",
        "recorded_at": NOW_TEXT,
    }
    [stored] = acks_of(services, target["id"])
    assert (stored["acknowledged_by"], stored["token_name"], stored["note"]) == (
        "RN 4417",
        "test-nurse",
        "seen",
    )
    assert str(stored["acknowledged_at"]).startswith("2026-10-01 12:01:00")  # kept as UTC


def test_a_second_ack_is_harmless_and_the_first_stands(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    post(api, worker, *three_patients())
    target = nurses(all_alerts(api))[1]
    first = ack(api, target["id"], {"by": "RN 1", "note": "first"}, role="nurse")
    assert first.status_code == 200
    assert first.json()["already_acknowledged"] is False
    stored = acks_of(services, target["id"])
    # Later, someone else (an admin, other who/when/note) acknowledges the same alert.
    services.settings = services.settings.model_copy(
        update={"fixed_now": FIXED_NOW + dt.timedelta(minutes=20)}
    )
    second = ack(
        api,
        target["id"],
        {"by": "RN 2", "at": "2026-10-01T12:10:00Z", "note": "second"},
        role="admin",
    )
    assert second.status_code == 200, second.text
    assert second.json()["already_acknowledged"] is True
    assert second.json()["ack"] == first.json()["ack"]
    assert {k: v for k, v in second.json().items() if k != "already_acknowledged"} == {
        k: v for k, v in first.json().items() if k != "already_acknowledged"
    }
    assert acks_of(services, target["id"]) == stored  # no second row, the first unchanged
    assert len(rows(services, "SELECT id FROM alert_ack")) == 1
    # Both calls are in the access log.
    assert audit_rows(services, ACK_ACTION) == [
        ("test-nurse", "nurse", f"alert:{target['id']}", 200),
        ("test-admin", "admin", f"alert:{target['id']}", 200),
    ]


def test_ack_of_an_unknown_alert_is_404(api: Api, services: Services) -> None:
    response = ack(api, 999, role="nurse")
    assert response.status_code == 404
    assert "999" in response.json()["detail"]
    assert rows(services, "SELECT id FROM alert_ack") == []
    assert audit_rows(services, ACK_ACTION) == [("test-nurse", "nurse", "alert:999", 404)]


INVALID_ACKS: list[tuple[dict[str, Any], str]] = [
    ({"at": "2026-10-01T11:00:00"}, "body.at"),  # naive: no offset
    ({"at": "yesterday"}, "body.at"),
    ({"by": "RN 1", "when": "2026-10-01T11:00:00Z"}, "body.when"),  # unknown field
    ({"by": ""}, "body.by"),
    ({"by": "RN\n1"}, "body.by"),
    ({"note": "x" * 2001}, "body.note"),
]


def test_ack_with_an_invalid_body_is_422_naming_the_field(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    post(api, worker, f.enrollment(days_ago(3), patient="PT-1"))
    for body, name in INVALID_ACKS:
        response = ack(api, 1, body)
        assert response.status_code == 422, (body, response.text)
        assert {e["field"] for e in response.json()["errors"]} == {name}, body
    not_an_object = api.client.post(
        "/v1/alerts/1/ack", content=b"[]", headers=api.headers("nurse") | JSON
    )
    assert not_an_object.status_code == 422
    assert rows(services, "SELECT id FROM alert_ack") == []


def test_ack_at_a_time_in_the_future_is_422(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    post(api, worker, *three_patients())
    response = ack(api, 1, {"at": "2026-10-01T13:00:00Z"})  # an hour after the clock
    assert response.status_code == 422
    assert "in the future" in response.json()["detail"]
    assert rows(services, "SELECT id FROM alert_ack") == []
    # A little clock skew between the ward's device and the service is tolerated.
    skewed = ack(api, 1, {"at": "2026-10-01T14:02:00+02:00"})
    assert skewed.status_code == 200, skewed.text
    assert skewed.json()["ack"]["at"] == "2026-10-01T12:02:00Z"


def test_ack_is_for_the_alerts_audience_and_admins(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    post(api, worker, *three_patients())
    first = all_alerts(api)[-1]
    assert first["id"] == 1
    assert first["audience"] == ["nurse"]
    refused: dict[Role | None, int] = {"ingest": 403, "auditor": 403, None: 401, "infusion": 403}
    assert {role: ack(api, 1, role=role).status_code for role in refused} == refused
    assert rows(services, "SELECT id FROM alert_ack") == []
    assert audit_rows(services, ACK_ACTION) == [
        *((f"test-{role}", role, "denied", 403) for role in ("ingest", "auditor")),
        ("anonymous", "none", "-", 401),  # refused before anyone was known: recorded too
        ("test-infusion", "infusion", "alert:1", 403),  # a care role, not of its audience
    ]
    assert ack(api, 1, role="nurse").status_code == 200
    assert ack(api, 2, role="admin").status_code == 200
    assert [(r["alert_id"], r["token_name"]) for r in rows(
        services, "SELECT alert_id, token_name FROM alert_ack ORDER BY alert_id"
    )] == [(1, "test-nurse"), (2, "test-admin")]  # fmt: skip


# --- the stream, against a real server -----------------------------------------------------------


@dataclass
class Live:
    """The app served by uvicorn on a free port, with the in-process worker."""

    base: str
    api: Api  # for the checks that need no real server (GET /v1/alerts?after=)
    worker: InProcessWorker
    tokens: dict[Role, str]

    def headers(self, role: Role | None = "admin", **extra: str | bytes) -> dict[str, str | bytes]:
        auth: dict[str, str | bytes] = (
            {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}
        )
        return auth | extra

    def post(self, *bodies: dict[str, Any]) -> list[int]:
        """Post events to the real server; the ids of the alerts they raised."""
        before = self.api.client.get(
            "/v1/alerts", params={"limit": 1}, headers=self.api.headers("nurse")
        ).json()["last_id"]
        with httpx.Client(base_url=self.base, timeout=10) as client:
            response = client.post(
                "/v1/events", json={"events": list(bodies)}, headers=self.headers("ingest")
            )
        assert response.status_code == 202, response.text
        assert self.worker.wait_idle()
        return ids(self.after(before))

    def after(self, alert_id: int, params: Params = ()) -> list[dict[str, Any]]:
        body = page(self.api, [*params, ("after", alert_id), ("limit", 500)])
        alerts: list[dict[str, Any]] = body["alerts"]
        return alerts


@pytest.fixture
def live(
    services: Services, worker: InProcessWorker, api: Api, tokens: dict[Role, str]
) -> Iterator[Live]:
    services.settings = services.settings.model_copy(update={"stream_poll_s": 0.05})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(services),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        eventually(lambda: server.started, timeout=10, what="uvicorn started")
        yield Live(f"http://127.0.0.1:{port}", api, worker, tokens)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive()


@dataclass
class Frame:
    event: str | None
    id: str | None
    data: str
    comment: list[str]
    retry: int | None

    def alert(self) -> dict[str, Any]:
        assert self.event == "alert"
        value: dict[str, Any] = json.loads(self.data)
        return value


class Stream:
    """An open SSE response read frame by frame (a small parser of the wire format)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()

    def frame(self) -> Frame:
        """The next frame, comments included; httpx's read timeout bounds the wait."""
        fields: dict[str, list[str]] = {}
        comments: list[str] = []
        for line in self.lines:
            if line == "":
                if fields or comments:
                    retry = fields.get("retry", [None])[-1]
                    return Frame(
                        event=fields.get("event", [None])[-1],
                        id=fields.get("id", [None])[-1],
                        data="\n".join(fields.get("data", [])),
                        comment=comments,
                        retry=int(retry) if retry is not None else None,
                    )
                continue
            if line.startswith(":"):
                comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
        raise AssertionError("the stream ended")

    def opened(self) -> Frame:
        """The first frame: the server has chosen where it starts."""
        first = self.frame()
        assert first.comment == ["bipn-monitor alert stream"]
        assert first.retry == 3000
        return first

    def alerts(self, count: int) -> list[dict[str, Any]]:
        """The next `count` alert frames (keep-alive comments skipped); each frame's id is its
        alert's id."""
        found: list[dict[str, Any]] = []
        while len(found) < count:
            frame = self.frame()
            if frame.event is None and frame.comment:
                continue  # a keep-alive
            alert = frame.alert()
            assert frame.id == str(alert["id"])
            found.append(alert)
        return found

    def until_closed(self) -> list[dict[str, Any]]:
        """The alert frames left before the server ends the response."""
        found: list[dict[str, Any]] = []
        for line in self.lines:
            if line.startswith("data:"):
                found.append(json.loads(line.removeprefix("data:").strip()))
        return found


@contextlib.contextmanager
def open_stream(
    live: Live, params: Params = (), role: Role | None = "admin", **headers: str
) -> Iterator[Stream]:
    with (
        httpx.Client(base_url=live.base, timeout=httpx.Timeout(10.0)) as client,
        client.stream(
            "GET", "/v1/alerts/stream", params=list(params), headers=live.headers(role, **headers)
        ) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        stream.opened()
        yield stream


def stream_status(
    live: Live, params: Params = (), role: Role | None = "admin", **headers: str | bytes
) -> httpx.Response:
    """Open the stream expecting a refusal: the status and body, read in full."""
    with (
        httpx.Client(base_url=live.base, timeout=httpx.Timeout(10.0)) as client,
        client.stream(
            "GET", "/v1/alerts/stream", params=list(params), headers=live.headers(role, **headers)
        ) as response,
    ):
        response.read()
        return response


def test_stream_sends_an_alert_raised_after_it_opened_without_a_new_request(live: Live) -> None:
    existing = live.post(*three_patients())
    assert existing
    with open_stream(live) as stream:  # default: live only, from the current last id
        raised = live.post(f.enrollment(days_ago(1), patient="PT-9", unit="U-C"))
        assert raised
        assert min(raised) > max(existing)
        got = stream.alerts(len(raised))
        assert ids(got) == raised  # nothing from before the stream opened
        assert got == live.after(max(existing))  # the same views the list gives
        assert {a["patient_id"] for a in got} == {"PT-9"}
        # Still open: a second event arrives on the same response.
        more = live.post(f.assessment(days_ago(0.5), patient="PT-9", sensory=3))
        assert ids(stream.alerts(len(more))) == more


def test_stream_resumes_after_the_last_event_id_without_gaps_or_repeats(live: Live) -> None:
    first = live.post(*three_patients())
    with open_stream(live, [("after", 0)]) as stream:
        seen = stream.alerts(4)
    assert ids(seen) == first[:4]
    last_seen = seen[-1]["id"]
    # While disconnected: the rest of the first batch is unsent, and more alerts are raised.
    missed = live.post(
        f.enrollment(days_ago(2), patient="PT-4", unit="U-A"),
        f.assessment(days_ago(1), patient="PT-4", sensory=2),
    )
    expected = live.after(last_seen)
    assert ids(expected) == first[4:] + missed
    with open_stream(live, **{"Last-Event-ID": str(last_seen)}) as stream:
        resumed = stream.alerts(len(expected))
        assert resumed == expected
        # Then nothing else was queued: the next frame is the next new alert.
        sentinel = live.post(f.enrollment(days_ago(1), patient="PT-5"))
        assert ids(stream.alerts(1)) == sentinel[:1]
    # Last-Event-ID wins over ?after= (a browser reconnecting keeps the page's URL).
    with open_stream(live, [("after", 0)], **{"Last-Event-ID": str(sentinel[-1])}) as stream:
        newest = live.post(f.enrollment(days_ago(1), patient="PT-6"))
        assert ids(stream.alerts(1)) == newest[:1]


def test_stream_after_zero_replays_everything_then_goes_live(live: Live) -> None:
    first = live.post(*three_patients())
    with open_stream(live, [("after", 0)]) as stream:
        replayed = stream.alerts(len(first))
        assert replayed == live.after(0)
        assert ids(replayed) == sorted(ids(replayed)) == list(range(1, len(first) + 1))
        newer = live.post(f.enrollment(days_ago(1), patient="PT-7"))
        assert ids(stream.alerts(len(newer))) == newer


def test_stream_applies_the_filters(live: Live) -> None:
    first = live.post(*three_patients())
    params: Params = [("severity", "urgent"), ("severity", "warning"), ("unit", "U-A"),
                      ("unit", "U-B")]  # fmt: skip
    expected = live.after(0, params)
    assert 0 < len(expected) < len(first)
    with open_stream(live, [*params, ("after", 0)]) as stream:
        assert stream.alerts(len(expected)) == expected
        # Only info alerts (a new patient in U-A), then a warning in U-C, then an urgent one in
        # U-B: the next frame is the urgent one.
        info = live.post(f.enrollment(days_ago(2), patient="PT-8", unit="U-A"))
        other_unit = live.post(
            f.enrollment(days_ago(2), patient="PT-10", unit="U-C"),
            f.assessment(days_ago(1), patient="PT-10", sensory=2),
        )
        urgent = live.post(f.assessment(days_ago(1), patient="PT-2", motor=3))
        assert {a["severity"] for a in live.after(min(info) - 1)} >= {"info", "warning"}
        wanted = ids(live.after(max(other_unit), params))
        assert wanted
        assert set(wanted) <= set(urgent)
        got = stream.alerts(len(wanted))
        assert ids(got) == wanted
        assert all(a["unit"] in ("U-A", "U-B") for a in got)
        assert all(a["severity"] in ("urgent", "warning") for a in got)


def test_stream_ends_after_stream_max_s_and_the_client_resumes(
    live: Live, services: Services
) -> None:
    """Long streams end (`stream_max_s`) so the token is checked again on the reconnect; with
    Last-Event-ID nothing is lost in between."""
    services.settings = services.settings.model_copy(update={"stream_max_s": 0.3})
    first = live.post(*three_patients())
    with open_stream(live, [("after", 0)]) as stream:
        sent = stream.alerts(len(first))
        assert stream.until_closed() == []  # ends by itself, nothing more
    assert ids(sent) == first
    missed = live.post(f.enrollment(days_ago(1), patient="PT-11"))
    with open_stream(live, **{"Last-Event-ID": str(sent[-1]["id"])}) as stream:
        assert ids(stream.alerts(len(missed))) == missed


BAD_LAST_EVENT_IDS = [b"abc", b"-1", b"12x", b"1.5", b"7 8", b"9" * 20, b"9" * 5000]
BAD_LAST_EVENT_IDS += [
    b"9223372036854775808",  # 2**63: the bound of ?after=, or the query overflows mid-stream
    b"2147483648",  # 2**31: alert ids are 32-bit integers (PostgreSQL refuses a larger one)
    b"\xb2",  # "\u00b2" in Latin-1 (how headers are decoded): isdigit() says yes, int() no
]


def test_stream_refusals_come_before_streaming(live: Live) -> None:
    """Each refusal is a plain JSON error response, never a 200 stream that breaks."""
    for value in BAD_LAST_EVENT_IDS:
        response = stream_status(live, **{"Last-Event-ID": value})
        assert response.status_code == 422, value
        assert response.headers["content-type"].startswith("application/json"), value
        assert "Last-Event-ID" in response.json()["detail"], value
    for params, name in [([("after", "-1")], "after"), ([("severity", "bad")], "severity")]:
        response = stream_status(live, params)
        assert response.status_code == 422, params
        assert error_fields(response) == {name}
    for role, status in [(None, 401), ("ingest", 403), ("auditor", 403)]:
        assert stream_status(live, role=role).status_code == status, role
    # The largest id allowed opens a stream (that has nothing after it).
    with open_stream(live, **{"Last-Event-ID": str(2**31 - 1)}) as stream:
        assert stream.response.status_code == 200


# --- the patient history (the chart's data) -----------------------------------------------------


def test_history_has_grades_in_time_order_doses_and_dose_decisions(
    api: Api, worker: InProcessWorker
) -> None:
    on_time = [
        f.enrollment(days_ago(30), patient="PT-H", event_id="h-e", unit="U-A"),
        f.administration(days_ago(29), 1.3, patient="PT-H", event_id="h-d29", cycle=1, day=1),
        f.assessment(days_ago(22), patient="PT-H", event_id="h-a22", cycle=1, sensory=1),
        f.administration(days_ago(21), 1.3, patient="PT-H", event_id="h-d21", cycle=2, day=1),
        f.assessment(days_ago(8), patient="PT-H", event_id="h-a8", cycle=2, sensory=2, pain=1),
        f.administration(days_ago(7), 1.0, patient="PT-H", event_id="h-d7", cycle=3, day=1),
    ]
    post(api, worker, *on_time)
    # Posted last, dated in between: the history is in clinical time, not arrival order.
    post(api, worker, f.assessment(days_ago(15), patient="PT-H", event_id="h-a15", motor=1))
    response = api.get("/v1/patients/PT-H/history")
    assert response.status_code == 200, response.text
    history = response.json()
    assert history["patient_id"] == "PT-H"

    def utc(moment: dt.datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    assert history["grades"] == [
        {"at": utc(days_ago(22)), "cycle": 1, "sensory": 1},
        {"at": utc(days_ago(15)), "cycle": None, "motor": 1},
        {"at": utc(days_ago(8)), "cycle": 2, "sensory": 2, "pain": 1},
    ]
    assert history["doses"] == [
        {"at": utc(days_ago(30)), "dose_mg_m2": 1.3, "source": "enrollment"},
        {"at": utc(days_ago(29)), "dose_mg_m2": 1.3, "source": "given"},
        {"at": utc(days_ago(21)), "dose_mg_m2": 1.3, "source": "given"},
        {"at": utc(days_ago(7)), "dose_mg_m2": 1.0, "source": "given"},
    ]
    dose_actions = ("reduce_dose", "hold", "resume", "discontinue")
    expected = [
        {"at": d["at"], "action": d["action"], "dose_mg_m2": d.get("dose_mg_m2"), "rule": d["rule"]}
        for d in api.decisions("PT-H")
        if d["action"] in dose_actions
    ]
    assert history["dose_decisions"] == expected
    # Grade 1 at day -22 and grade 2 with pain at day -8: one level down each time.
    assert [(d["at"], d["action"], d["dose_mg_m2"]) for d in expected] == [
        (utc(days_ago(22)), "reduce_dose", 1.0),
        (utc(days_ago(8)), "reduce_dose", 0.7),
    ]
    times = [d["at"] for d in expected]
    assert times == sorted(times)


def test_history_roles(api: Api, worker: InProcessWorker) -> None:
    post(api, worker, f.enrollment(days_ago(3), patient="PT-R"))
    expected: dict[Role | None, int] = {
        "nurse": 200,
        "infusion": 200,
        "admin": 200,
        "auditor": 403,
        "ingest": 403,
        None: 401,
    }
    got = {role: api.get("/v1/patients/PT-R/history", role=role).status_code for role in expected}
    assert got == expected


def test_history_of_an_unknown_patient_is_404(api: Api) -> None:
    response = api.get("/v1/patients/PT-404/history")
    assert response.status_code == 404
    assert "PT-404" in response.json()["detail"]
    assert api.get("/v1/patients/PT%20404/history").status_code == 422


# --- the web page ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/patients/PT-1"])
def test_pages_are_html_with_a_content_security_policy(api: Api, path: str) -> None:
    response = api.client.get(path)  # no token: the page asks for one and calls the API
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    html = response.text
    assert '<script src="/static/app.js"' in html
    # Under default-src 'self' an inline script would not run: there is none.
    assert html.count("<script") == html.count('<script src="/static/')


def test_static_files_are_served(api: Api) -> None:
    script = api.client.get("/static/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "/v1/alerts/stream" in script.text
    style = api.client.get("/static/app.css")
    assert style.status_code == 200
    assert style.headers["content-type"].startswith("text/css")
    assert api.client.get("/static/missing.js").status_code == 404
