"""The read API (issue 3, item 4): `GET /v1/patients/{id}`, `/decisions`, `/clearance`, and the
operations endpoints `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from monitor.processing.inprocess import InProcessWorker
from monitor.processing.jobs import dead_letter
from monitor.services import Services
from monitor.storage.database import make_session_factory
from policies import pack_from_mapping
from tests.common import factories as f
from tests.common.service import Api, expected_decisions, rows
from tests.conftest import FIXED_NOW

ENROLLED = FIXED_NOW - dt.timedelta(days=2)
ENROLLMENT = f.enrollment(ENROLLED, patient="PS", event_id="ps-e0", unit="u7")


class Parked:
    """A dispatcher that keeps the work (the worker is busy elsewhere): nothing is processed."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def enqueue(self, patient_ids: list[str]) -> int:
        self.sent += patient_ids
        return len(patient_ids)

    def ping(self) -> bool:
        return True


ACTIVE_STATE = {
    "patient_id": "PS",
    "status": "active",
    "course_started_at": "2026-09-29T12:00:00Z",
    "unit": "u7",
    "dose_mg_m2": 1.3,
    "schedule": "weekly",
    "route": "SC",
    "cycle_length_days": 21,
    "bsa_m2": None,
    "last_dose_at": None,
    "next_dose_not_before": None,
    "watch": {"state": "none", "stopped_at": None, "window_end": None},
    "escalation": {"escalated_at": None, "answered": False},
    "next_reassessment_due": "2026-10-20T12:00:00Z",
    "reassessment_overdue_since": None,
    "next_timer_at": "2026-10-22T12:00:00Z",
    "courses_ended": 0,
    "pending_events": 0,
    "evaluated_at": "2026-10-01T12:00:00Z",
    "monitoring": {"status": "running"},
    "quarantined_events": [],
}


def test_course_state_before_and_after_processing(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    services.dispatcher = Parked()
    assert api.post_events(ENROLLMENT).status_code == 202
    assert api.get("/v1/patients/PS").json() == {
        "patient_id": "PS",
        "status": "none",
        "pending_events": 1,
        "evaluated_at": None,
        "monitoring": {"status": "running"},
        "quarantined_events": [],
    }
    assert api.get("/v1/patients/PS/clearance", role="infusion").json() == {
        "cleared": False,
        "dose_mg_m2": None,
        "schedule": None,
        "route": None,
        "status": "none",
        "reasons": [
            "no active bortezomib course on record",
            "1 recent event(s) still being processed: retry shortly",
        ],
    }
    assert api.decisions("PS") == []
    services.dispatcher = worker
    worker.enqueue(["PS"])
    assert worker.wait_idle()
    assert api.get("/v1/patients/PS").json() == ACTIVE_STATE
    assert api.get("/v1/patients/PS", role="infusion").json() == ACTIVE_STATE
    assert api.get("/v1/patients/PS/clearance", role="infusion").json() == {
        "cleared": True,
        "dose_mg_m2": 1.3,
        "schedule": "weekly",
        "route": "SC",
        "status": "active",
        "reasons": ["active course, no pending reassessment or hold"],
    }
    assert api.decisions("PS") == expected_decisions(services.pack, [ENROLLMENT], FIXED_NOW)


def test_a_hold_is_not_cleared(api: Api, worker: InProcessWorker) -> None:
    held = f.treatment_change(ENROLLED + dt.timedelta(days=1), "held", patient="PS", event_id="h")
    assert api.post_events({"events": [ENROLLMENT, held]}).status_code == 202
    assert worker.wait_idle()
    assert api.get("/v1/patients/PS").json() == ACTIVE_STATE | {"status": "held"}
    assert api.get("/v1/patients/PS/clearance", role="infusion").json() == {
        "cleared": False,
        "dose_mg_m2": None,
        "schedule": None,
        "route": None,
        "status": "held",
        "reasons": ["bortezomib is on hold"],
    }


def test_a_dose_within_the_minimum_interval_is_not_cleared(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    """POLICY V2: the chair waits until `min_dose_interval_hours` after the last dose."""
    services.pack = pack_from_mapping(
        {"base": "default@1", "name": "v2test", "min_dose_interval_hours": 72}
    )
    dose = f.administration(FIXED_NOW - dt.timedelta(hours=30), 1.3, patient="PS", event_id="x1")
    assert api.post_events({"events": [ENROLLMENT, dose]}).status_code == 202
    assert worker.wait_idle()
    assert api.get("/v1/patients/PS").json() == ACTIVE_STATE | {
        "last_dose_at": "2026-09-30T06:00:00Z",
        "next_dose_not_before": "2026-10-03T06:00:00Z",
    }
    assert api.get("/v1/patients/PS/clearance", role="infusion").json() == {
        "cleared": False,
        "dose_mg_m2": None,
        "schedule": None,
        "route": None,
        "status": "active",
        "reasons": [
            "the last dose was given 2026-09-30T06:00:00Z, less than 72 h ago: the minimum "
            "interval between doses ends 2026-10-03T06:00:00Z"
        ],
    }


def test_the_chair_gets_the_dose_in_mg_when_the_enrolment_gives_height_and_weight(
    api: Api, worker: InProcessWorker
) -> None:
    """Issue 13, item 4: the body surface area (Mosteller's, from height and weight) gives the
    dose in mg at the chair."""
    enrolment = {**ENROLLMENT, "patient_id": "PM", "event_id": "pm-e0",
                 "height_cm": 170, "weight_kg": 70}  # fmt: skip
    assert api.post_events(enrolment).status_code == 202
    assert worker.wait_idle()
    assert api.get("/v1/patients/PM").json()["bsa_m2"] == pytest.approx(1.818, abs=0.001)
    answer = api.get("/v1/patients/PM/clearance", role="infusion").json()
    assert (answer["cleared"], answer["dose_mg_m2"], answer["bsa_m2"]) == (True, 1.3, 1.82)
    assert answer["dose_mg"] == round(1.3 * (170 * 70 / 3600) ** 0.5, 2) == 2.36


def test_a_dose_given_in_mg_is_accepted_compared_and_charted(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    """A dose in mg: 202; at the administration's BSA it is compared per m2 (1.65 mg/m2 is above
    1.3), without a BSA it gets `dose_not_comparable`; the history shows both in mg, the first
    converted."""
    given = ENROLLED + dt.timedelta(hours=1)
    later = ENROLLED + dt.timedelta(days=1)
    bodies = [
        {**ENROLLMENT, "patient_id": "PG", "event_id": "pg-e0"},
        {**f.administration(given, 0, patient="PG", event_id="pg-x1"), "dose_mg": 3.0,
         "bsa_m2": 1.82},
        {**f.administration(later, 0, patient="PG", event_id="pg-x2"), "dose_mg": 2.4},
    ]  # fmt: skip
    for body in bodies[1:]:
        del body["dose_mg_m2"]
    response = api.post_events({"events": bodies})
    assert response.status_code == 202, response.text
    assert worker.wait_idle()
    decisions = api.decisions("PG")
    assert decisions == expected_decisions(services.pack, bodies, FIXED_NOW)
    by_trigger = {(d["trigger"], d["action"]): d for d in decisions}
    above = by_trigger["pg-x1", "adherence_deviation"]
    assert above["reason"] == "dose_above_recommended"
    assert "3.00 mg (1.65 mg/m2 at BSA 1.82 m2)" in above["rationale"]
    review = by_trigger["pg-x2", "review_required"]
    assert (review["reason"], review["severity"], review["audience"], review["rule"]) == (
        "dose_not_comparable",
        "warning",
        ["infusion_unit", "pharmacy"],
        "D6",
    )
    history = api.get("/v1/patients/PG/history").json()
    assert history["doses"] == [
        {"at": "2026-09-29T12:00:00Z", "dose_mg_m2": 1.3, "source": "enrollment"},
        {"at": "2026-09-29T13:00:00Z", "dose_mg_m2": 3.0 / 1.82, "source": "given", "dose_mg": 3.0},
        {"at": "2026-09-30T12:00:00Z", "dose_mg_m2": None, "source": "given", "dose_mg": 2.4},
    ]


def test_decisions_hide_superseded_ones_unless_asked(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    on_time = [ENROLLMENT, f.assessment(ENROLLED + dt.timedelta(hours=3), patient="PS", sensory=2)]
    assert api.post_events({"events": on_time}).status_code == 202
    assert worker.wait_idle()
    before = api.decisions("PS")
    # A late assessment an hour before the other: the reduction moves to it.
    late = f.assessment(ENROLLED + dt.timedelta(hours=2), patient="PS", sensory=2)
    assert api.post_events(late).status_code == 202
    assert worker.wait_idle()
    current = api.decisions("PS")
    everything = api.decisions("PS", superseded=True)
    assert current == expected_decisions(services.pack, [*on_time, late], FIXED_NOW)
    superseded = [d for d in everything if "superseded_at" in d]
    assert superseded
    assert [d for d in everything if "superseded_at" not in d] == current
    assert {d["decision_id"] for d in superseded} == (
        {d["decision_id"] for d in before} - {d["decision_id"] for d in current}
    )


def test_an_unknown_patient_is_404(api: Api) -> None:
    for path in ("/v1/patients/NOPE", "/v1/patients/NOPE/decisions"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json() == {"detail": "no events for patient 'NOPE'"}
    assert api.get("/v1/patients/NOPE/clearance", role="infusion").status_code == 404


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/patients/" + "x" * 65, "patient_id"),
        ("/v1/patients/a%20b", "patient_id"),
        ("/v1/patients/P%2C1/decisions", "patient_id"),
        ("/v1/patients/J%C3%B6hn/clearance", "patient_id"),
        ("/v1/patients/PS/decisions?include=all", "include"),
    ],
    ids=["too-long", "space", "comma", "accent", "include"],
)
def test_invalid_path_or_query_is_422_naming_it(api: Api, path: str, field: str) -> None:
    response = api.client.get(path, headers=api.headers("infusion"))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["detail"] == "invalid request"
    assert [e["field"] for e in body["errors"]] == [field]


def test_a_slash_in_the_id_matches_no_route(api: Api) -> None:
    response = api.client.get("/v1/patients/P%2F1/decisions", headers=api.headers("nurse"))
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


def test_admin_dead_letter_ids_out_of_range_are_422(api: Api) -> None:
    admin = api.headers("admin")
    # ids are 32-bit integers: a larger one is refused, not sent to PostgreSQL (issue 11)
    for dead_id in ("0", "-1", "2147483648", "9223372036854775808", "999999999999999999999", "x"):
        response = api.client.post(f"/v1/admin/dead-letters/{dead_id}/retry", headers=admin)
        assert response.status_code == 422, (dead_id, response.text)
        assert [e["field"] for e in response.json()["errors"]] == ["dead_letter_id"]
    response = api.client.post("/v1/admin/dead-letters/2147483647/retry", headers=admin)
    assert response.status_code == 404


# --- operations --------------------------------------------------------------------------------


def test_healthz(api: Api) -> None:
    response = api.get("/healthz", role=None)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_checks_the_database_and_the_queue(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    ready = api.get("/readyz", role=None)
    assert (ready.status_code, ready.json()) == (
        200,
        {"ready": True, "database": "ok", "queue": "ok"},
    )
    worker.stop()
    stopped = api.get("/readyz", role=None)
    assert (stopped.status_code, stopped.json()) == (
        503,
        {"ready": False, "database": "ok", "queue": "unreachable"},
    )
    services.dispatcher = None
    assert api.get("/readyz", role=None).json()["queue"] == "unreachable"


def test_readyz_reports_an_unreachable_database(api: Api, services: Services) -> None:
    engine = services.engine
    services.engine = create_engine("sqlite:////nonexistent-dir/monitor.db")
    try:
        response = api.get("/readyz", role=None)
    finally:
        services.engine.dispose()
        services.engine = engine
    assert response.status_code == 503
    assert response.json() == {
        "ready": False,
        "database": "unreachable: OperationalError",
        "queue": "ok",
    }


def metrics(api: Api) -> dict[str, float]:
    response = api.get("/metrics", role=None)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if not sample.labels:
                values[sample.name] = sample.value
    return values


def delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after[name] - before.get(name, 0.0)


def test_metrics_count_what_happened(api: Api, services: Services, worker: InProcessWorker) -> None:
    """Counters are per process (deltas); the database gauges are absolute."""
    start = metrics(api)
    batch = [ENROLLMENT, f.assessment(ENROLLED + dt.timedelta(days=1), patient="PS")]
    assert api.post_events({"events": batch}).status_code == 202
    assert api.post_events(ENROLLMENT).status_code == 202  # duplicate
    bad = [f.assessment(ENROLLED, patient="PS"), {"type": "x"}, f.enrollment(patient="PS")]
    assert api.post_events({"events": bad}).status_code == 422
    assert api.post_events(dict(ENROLLMENT, age=70)).status_code == 409
    assert worker.wait_idle()
    after = metrics(api)
    assert delta(after, start, "monitor_events_accepted_total") == 2
    assert delta(after, start, "monitor_events_duplicate_total") == 1
    assert delta(after, start, "monitor_events_rejected_total") == 3 + 1
    assert delta(after, start, "monitor_events_processed_total") == 2
    assert delta(after, start, "monitor_processing_latency_seconds_count") == 2
    assert after["monitor_outbox_open"] == 0
    assert after["monitor_queue_lag_seconds"] == 0
    assert after["monitor_dead_letters_open"] == 0


def test_metrics_gauges_show_the_backlog(api: Api, services: Services) -> None:
    services.dispatcher = Parked()
    assert api.post_events(ENROLLMENT).status_code == 202
    assert api.post_events(f.enrollment(ENROLLED, patient="PQ")).status_code == 202
    dead_letter(services, "PQ", RuntimeError("bad"), 1)
    services.settings = services.settings.model_copy(
        update={"fixed_now": FIXED_NOW + dt.timedelta(seconds=90)}
    )
    values: dict[str, Any] = metrics(api)
    assert values["monitor_outbox_open"] == 1  # PQ's row is parked on its dead letter
    assert values["monitor_queue_lag_seconds"] == 90
    assert values["monitor_dead_letters_open"] == 1


def test_metrics_are_served_when_the_database_is_down(api: Api, services: Services) -> None:
    """The process's counters stay scrapeable; the database gauges give way to `..._up 0`."""
    assert metrics(api)["monitor_database_up"] == 1
    engine, sessions = services.engine, services.sessions
    services.engine = create_engine("sqlite:////nonexistent-dir/monitor.db")
    services.sessions = make_session_factory(services.engine)
    try:
        values = metrics(api)
    finally:
        services.engine.dispose()
        services.engine, services.sessions = engine, sessions
    assert values["monitor_database_up"] == 0
    assert "monitor_events_accepted_total" in values
    assert "monitor_outbox_open" not in values
    assert "monitor_dead_letters_open" not in values


def test_metrics_give_the_alert_burden_by_severity(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    """Alerts of the last 28 days per patient-week of the patients monitored now (issue 14)."""
    now = services.settings.now()
    bodies = [
        f.enrollment(now - dt.timedelta(days=10), patient="PB1", event_id="pb1-e"),
        f.assessment(now - dt.timedelta(days=3), patient="PB1", event_id="pb1-a", sensory=3),
        f.enrollment(now - dt.timedelta(days=10), patient="PB2", event_id="pb2-e"),
    ]
    assert api.post_events({"events": bodies}).status_code == 202
    assert worker.wait_idle()
    raised = {
        s: len(rows(services, "SELECT id FROM alert WHERE severity = :s", s=s))
        for s in ("urgent", "warning", "info")
    }
    assert raised["urgent"] == 1  # the discontinuation
    response = api.get("/metrics", role=None)
    burden = {
        sample.labels["severity"]: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "monitor_alert_burden_per_patient_week"
    }
    weeks = 2 * 28 / 7  # two patients monitored now, over the 28-day window
    assert burden == {s: pytest.approx(n / weeks) for s, n in raised.items()}
