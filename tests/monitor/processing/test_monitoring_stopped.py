"""Issue 11, item 1: what the service accepts it can process, and a fold that still fails never
silences a patient.

- The issue's own cases (a cycle of 10^8 over HTTP and as a FHIR extension, an `extra` nested
  250 levels, an enrolment dated 9999) are refused with 422 now, nothing stored; the patient's
  later grade 3 discontinues with its urgent alert, as it should.
- A fold that fails anyway (an event stored before a bound existed, or a rule that raises)
  dead-letters naming the event, raises an urgent alert to admin and physician, refuses
  clearance ("monitoring error"), and admin can quarantine that one event (audited, shown on
  the patient page, left out of folds) so the rest is evaluated again at once.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from fhir.resources.R4B.extension import Extension

from monitor.interop.fhir.codes import EXTENSION
from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services
from monitor.storage.models import EventRow, OutboxRow
from tests.common import factories as f
from tests.common.service import Api, rows
from tests.conftest import FIXED_NOW
from tests.monitor.interop.fhir.test_inbound import as_json, grading
from tests.policies.test_bounds import fail_at

PATIENT = "PX-9"
START = FIXED_NOW - dt.timedelta(days=30)


def days(n: float) -> dt.datetime:
    return START + dt.timedelta(days=n)


def enrol(api: Api, worker: InProcessWorker) -> None:
    body = f.enrollment(days(0), patient=PATIENT, event_id="x-e0", unit="u7")
    assert api.post_events(body).status_code == 202
    assert worker.wait_idle()


def decisions_by_action(api: Api) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for decision in api.decisions(PATIENT):
        found.setdefault(decision["action"], []).append(decision)
    return found


def alerts(api: Api) -> list[dict[str, Any]]:
    response = api.get("/v1/alerts", role="admin", limit="200")
    assert response.status_code == 200
    found: list[dict[str, Any]] = response.json()["alerts"]
    return found


def grade_3(event_id: str, when: float = 21) -> dict[str, Any]:
    return f.assessment(days(when), patient=PATIENT, event_id=event_id, sensory=3, cycle=2)


# --- the issue's measurements: refused at the door now ---------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cycle": 100_000_000}, "cycle"),
        ({"occurred_at": "9999-06-01T00:00:00Z"}, "occurred_at"),
        ({"occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
    ],
    ids=["cycle-1e8", "year-9999", "year-1-plus-14h"],
)
def test_the_issues_poison_events_are_422_and_the_grade_3_still_discontinues(
    api: Api, services: Services, worker: InProcessWorker, change: dict[str, Any], field: str
) -> None:
    enrol(api, worker)
    poison = f.assessment(days(14), patient=PATIENT, event_id="x-bad", sensory=1) | change
    response = api.post_events(poison)
    assert response.status_code == 422
    assert [p["field"] for p in response.json()["errors"][0]["problems"]] == [field]
    assert rows(services, "SELECT id FROM event WHERE event_id = 'x-bad'") == []
    assert api.post_events(grade_3("x-g3")).status_code == 202
    assert worker.wait_idle()
    assert "discontinue" in decisions_by_action(api)
    assert any(a["action"] == "discontinue" and a["severity"] == "urgent" for a in alerts(api))
    assert rows(services, "SELECT id FROM dead_letter") == []


def test_an_extra_nested_250_levels_is_refused(api: Api, services: Services) -> None:
    deep: dict[str, Any] = {}
    for _ in range(249):
        deep = {"k": deep}
    body = f.enrollment(days(0), patient=PATIENT, event_id="x-deep", extra=deep)
    response = api.post_events(body)
    assert response.status_code == 400  # deeper than any body the service reads
    assert "nested too deeply" in response.json()["detail"]
    shallow: dict[str, Any] = {}
    for _ in range(9):
        shallow = {"k": shallow}
    response = api.post_events(body | {"extra": shallow})
    assert response.status_code == 422
    assert "more than 8 levels" in response.json()["errors"][0]["problems"][0]["message"]
    assert rows(services, "SELECT id FROM event") == []


def test_a_cycle_of_10_8_as_a_fhir_extension_is_refused(api: Api, services: Services) -> None:
    observation = grading(
        ident="x-fhir",
        subject={"reference": f"Patient/{PATIENT}"},
        extension=[Extension(url=EXTENSION + "cycle", valueInteger=100_000_000)],
    )
    response = api.client.post(
        "/fhir/r4",
        json=as_json(observation),
        headers=api.headers("ingest") | {"Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 422, response.text
    issues = response.json()["issue"]
    assert any("at most 100" in issue.get("diagnostics", "") for issue in issues), issues
    assert rows(services, "SELECT id FROM event") == []


# --- a fold that fails anyway ----------------------------------------------------------------


def store_unchecked(services: Services, body: dict[str, Any]) -> None:
    """An event stored as a version before the bounds would have stored it: the body as given,
    with its outbox row (what `store_events` writes), then the patient's work enqueued."""
    with services.sessions.begin() as session:
        row = EventRow(
            event_id=body["event_id"],
            patient_id=body["patient_id"],
            type=body["type"],
            occurred_at=dt.datetime.fromisoformat(body["occurred_at"]),
            received_at=FIXED_NOW,
            body=json.dumps(body, sort_keys=True),
            body_hash="0" * 64,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        session.add(OutboxRow(event_pk=row.id, patient_id=body["patient_id"], created_at=FIXED_NOW))
    assert services.dispatcher is not None
    services.dispatcher.enqueue([body["patient_id"]])


def test_a_fold_that_fails_stops_nothing_silently_and_quarantine_resumes_it(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    enrol(api, worker)
    bad = f.assessment(days(14), patient=PATIENT, event_id="x-old", sensory=1) | {
        "cycle": 100_000_000
    }
    store_unchecked(services, bad)
    assert worker.wait_idle()

    # the dead letter names the event, the reason, and nothing of the patient's data
    [dead] = rows(services, "SELECT * FROM dead_letter")
    assert (dead["patient_id"], dead["reason"], dead["event_id"]) == (
        PATIENT,
        "processing_error",
        "x-old",
    )
    assert dead["error"] == "StoredEventError: stored event x-old is invalid (cycle)"

    # an urgent alert to admin and physician
    [stopped] = [a for a in alerts(api) if a["kind"] == "monitoring"]
    assert (stopped["severity"], stopped["audience"], stopped["action"]) == (
        "urgent",
        ["admin", "physician"],
        "monitoring_stopped",
    )
    assert stopped["message"].startswith(f"Monitoring of patient {PATIENT} stopped: ")
    assert f"dead letter {dead['id']}" in stopped["message"]
    assert "at event x-old" in stopped["message"]
    assert stopped["unit"] == "u7"
    assert stopped["decision_url"] == f"/v1/patients/{PATIENT}"
    by_admin = api.get("/v1/alerts", role="admin", audience="admin").json()["alerts"]
    assert [a["id"] for a in by_admin] == [stopped["id"]]

    # the patient page's data and the chair say so
    state = api.get(f"/v1/patients/{PATIENT}").json()
    assert state["monitoring"] == {
        "status": "stopped",
        "since": "2026-10-01T12:00:00Z",
        "dead_letter_id": dead["id"],
        "reason": "processing_error",
        "error": dead["error"],
        "event_id": "x-old",
    }
    assert state["pending_events"] == 0  # parked, not "being processed": nobody waits for it
    chair = api.get(f"/v1/patients/{PATIENT}/clearance", role="infusion").json()
    assert chair["cleared"] is False
    assert chair["reasons"][0].startswith("monitoring error: ")

    # a grade 3 now is stored, but nothing can evaluate it: a second alert says so
    assert api.post_events(grade_3("x-g3")).status_code == 202
    assert worker.wait_idle()
    assert "discontinue" not in decisions_by_action(api)
    assert len([a for a in alerts(api) if a["kind"] == "monitoring"]) == 2

    # admin sets the old event aside: the rest is folded again at once
    response = api.client.post(
        "/v1/admin/quarantined-events",
        json={"event_id": "x-old", "reason": "cycle 100000000: a typo in the feed"},
        headers=api.headers("admin"),
    )
    assert response.status_code == 200, response.text
    assert response.json() | {"quarantined_at": None} == {
        "event_id": "x-old",
        "patient_id": PATIENT,
        "quarantined": True,
        "changed": True,
        "quarantined_at": None,
        "quarantined_by": "test-admin",
        "reason": "cycle 100000000: a typo in the feed",
    }
    assert worker.wait_idle()
    assert "discontinue" in decisions_by_action(api)
    assert any(a["action"] == "discontinue" for a in alerts(api))
    state = api.get(f"/v1/patients/{PATIENT}").json()
    assert state["monitoring"] == {"status": "running"}
    assert state["status"] == "discontinued"
    assert [q["event_id"] for q in state["quarantined_events"]] == ["x-old"]
    assert state["quarantined_events"][0]["reason"] == "cycle 100000000: a typo in the feed"
    listed = api.get("/v1/admin/quarantined-events", role="admin").json()
    assert [q["event_id"] for q in listed["quarantined_events"]] == ["x-old"]
    # the rest of the timeline equals replay without the quarantined event
    assert rows(services, "SELECT count(*) AS n FROM dead_letter WHERE retried_at IS NULL") == [
        {"n": 0}
    ]

    # quarantining twice changes nothing; a nurse may not
    again = api.client.post(
        "/v1/admin/quarantined-events",
        json={"event_id": "x-old", "reason": "again"},
        headers=api.headers("admin"),
    )
    assert again.json()["changed"] is False
    assert again.json()["reason"] == "cycle 100000000: a typo in the feed"
    nurse = api.client.post(
        "/v1/admin/quarantined-events",
        json={"event_id": "x-old", "reason": "x"},
        headers=api.headers("nurse"),
    )
    assert nurse.status_code == 403
    missing = api.client.post(
        "/v1/admin/quarantined-events",
        json={"event_id": "nope", "reason": "x"},
        headers=api.headers("admin"),
    )
    assert missing.status_code == 404

    # released, the event is folded again, and fails again: monitoring stops again
    released = api.client.delete(
        "/v1/admin/quarantined-events",
        params={"event_id": "x-old"},
        headers=api.headers("admin"),
    )
    assert released.status_code == 200
    assert released.json()["quarantined"] is False
    assert worker.wait_idle()
    assert api.get(f"/v1/patients/{PATIENT}").json()["monitoring"]["status"] == "stopped"

    audited = rows(
        services,
        "SELECT actor, action, resource, status_code FROM audit_log "
        "WHERE action LIKE '%quarantined-events%' ORDER BY id",
    )
    assert audited == [
        {
            "actor": "test-admin",
            "action": "POST /v1/admin/quarantined-events",
            "resource": "event:x-old",
            "status_code": 200,
        },
        {
            "actor": "test-admin",
            "action": "GET /v1/admin/quarantined-events",
            "resource": "quarantined_events",
            "status_code": 200,
        },
        {
            "actor": "test-admin",
            "action": "POST /v1/admin/quarantined-events",
            "resource": "event:x-old",
            "status_code": 200,
        },
        {
            "actor": "test-nurse",
            "action": "POST /v1/admin/quarantined-events",
            "resource": "denied",
            "status_code": 403,
        },
        {
            "actor": "test-admin",
            "action": "POST /v1/admin/quarantined-events",
            "resource": "event:nope",
            "status_code": 404,
        },
        {
            "actor": "test-admin",
            "action": "DELETE /v1/admin/quarantined-events",
            "resource": "event:x-old",
            "status_code": 200,
        },
    ]


def test_a_rule_that_raises_is_dead_lettered_naming_the_event(
    api: Api, services: Services, worker: InProcessWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_at(monkeypatch, "x-boom")
    enrol(api, worker)
    assert api.post_events(grade_3("x-boom", when=14)).status_code == 202
    assert worker.wait_idle()
    [dead] = rows(services, "SELECT reason, event_id, error FROM dead_letter")
    assert dead == {
        "reason": "processing_error",
        "event_id": "x-boom",
        "error": "FoldError: the fold failed at event x-boom <- OverflowError: date value out "
        "of range",
    }
    assert api.get(f"/v1/patients/{PATIENT}/clearance", role="infusion").json()["cleared"] is False
    # the timer scan leaves a stopped patient to the admin: no dead letter every re-drive
    from monitor.processing.scheduled import fire_due_timers

    services.settings = services.settings.model_copy(
        update={"fixed_now": FIXED_NOW + dt.timedelta(days=60)}
    )
    assert fire_due_timers(services) == 0


def test_a_successful_fold_ends_the_stopped_monitoring(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    """A patient dead-lettered by a passing cause (here: the database out of reach, retries
    exhausted) is monitored again by its next fold that goes through: not shown stopped, not
    refused at the chair, its timers firing again, for ever after."""
    from sqlalchemy.exc import OperationalError

    from monitor.processing.jobs import dead_letter

    enrol(api, worker)
    outage = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    dead_id = dead_letter(services, PATIENT, outage, 6)
    assert api.get(f"/v1/patients/{PATIENT}").json()["monitoring"]["status"] == "stopped"
    assert api.post_events(grade_3("x-after")).status_code == 202
    assert worker.wait_idle()
    assert "discontinue" in decisions_by_action(api)
    assert api.get(f"/v1/patients/{PATIENT}").json()["monitoring"] == {"status": "running"}
    chair = api.get(f"/v1/patients/{PATIENT}/clearance", role="infusion").json()
    assert not any(r.startswith("monitoring error") for r in chair["reasons"])
    [closed] = rows(services, "SELECT retried_at FROM dead_letter WHERE id = :i", i=dead_id)
    assert closed["retried_at"] is not None
