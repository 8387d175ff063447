"""The chair list and the chair's forms (issue 14, item 3): a unit's patients with today's
clearance, the dose in mg/m2 and mg, the 72-hour rule; recording a dose re-checks clearance
and refuses a second dose inside the interval; a grading recorded there reaches the fold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from monitor.auth.tokens import create_token
from tests.common import factories as f
from tests.common.service import RunningService, rows, running_service
from tests.conftest import FIXED_NOW

DAY = dt.timedelta(days=1)
SIZE = {"height_cm": 170, "weight_kg": 70}  # Mosteller: 1.82 m2


@pytest.fixture
def running(tmp_path: Any) -> Iterator[RunningService]:
    with running_service(tmp_path) as service:
        bodies = [
            f.enrollment(FIXED_NOW - 20 * DAY, "C1", "c1-e", unit="u7", **SIZE),
            f.enrollment(FIXED_NOW - 20 * DAY, "C2", "c2-e", unit="u7"),
            f.treatment_change(FIXED_NOW - 2 * DAY, "held", "C2", "c2-h", reason="infection"),
            f.enrollment(FIXED_NOW - 20 * DAY, "C9", "c9-e", unit="u9"),
            f.enrollment(FIXED_NOW - 20 * DAY, "C3", "c3-e", unit="u7"),
            f.assessment(FIXED_NOW - 10 * DAY, "C3", "c3-a", sensory=3),  # discontinued
        ]
        assert service.api.post_events({"events": bodies}).status_code == 202
        assert service.worker.wait_idle()
        yield service


def _chair(running: RunningService, unit: str = "u7", role: Any = "infusion", **params: Any) -> Any:
    return running.api.client.get(
        f"/v1/units/{unit}/chair", headers=running.api.headers(role), params=params
    )


def _give(running: RunningService, patient: str, unit: str = "u7", **body: Any) -> Any:
    return running.api.client.post(
        f"/v1/units/{unit}/chair/{patient}/administrations",
        json={"route": "SC", "dose_mg_m2": 1.3} | body,
        headers=running.api.headers("infusion"),
    )


def test_the_chair_lists_the_units_patients_on_treatment(running: RunningService) -> None:
    response = _chair(running)
    assert response.status_code == 200, response.text
    listed = response.json()
    assert (listed["unit"], listed["date"], listed["as_of"]) == (
        "u7",
        "2026-10-01",
        "2026-10-01T12:00:00Z",
    )
    by_id = {p["patient_id"]: p for p in listed["patients"]}
    assert sorted(by_id) == ["C1", "C2"]  # C3 discontinued, C9 in another unit
    c1, c2 = by_id["C1"], by_id["C2"]
    # the enrolment's reassessment (day 21) is due tomorrow: C1 may be dosed today
    assert c1["clearance"]["cleared"] is True
    assert c1["clearance"]["dose_mg"] == 2.36
    assert c1["regimen"] == {"dose_mg_m2": 1.3, "dose_mg": 2.36, "schedule": "weekly",
                             "route": "SC"}  # fmt: skip
    assert c1["reassessment"] == {"due_at": "2026-10-02T12:00:00Z", "overdue": False}
    assert c1["last_dose_at"] is None
    assert c2["status"] == "held"
    assert c2["clearance"]["cleared"] is False
    assert "bortezomib is on hold" in c2["clearance"]["reasons"]
    assert c2["regimen"]["dose_mg"] is None  # no body surface area on record


def test_another_day_is_judged_at_noon(running: RunningService) -> None:
    later = _chair(running, date="2026-10-05").json()
    assert later["as_of"] == "2026-10-05T12:00:00Z"
    c1 = next(p for p in later["patients"] if p["patient_id"] == "C1")
    assert c1["clearance"]["cleared"] is False  # the reassessment will be overdue by then


def test_recording_a_dose_rechecks_and_refuses_a_second_inside_72_h(
    running: RunningService,
) -> None:
    first = _give(running, "C1", cycle=1, day=8)
    assert first.status_code == 201, first.text
    event_id = first.json()["event_id"]
    assert first.json()["patient_id"] == "C1"
    [stored] = rows(running.services, "SELECT body FROM event WHERE event_id = :e", e=event_id)
    assert '"dose_mg_m2":1.3' in stored["body"].replace(" ", "")
    again_at_once = _give(running, "C1")
    assert again_at_once.status_code == 409
    assert running.worker.wait_idle()
    again = _give(running, "C1", dose_mg=2.3, dose_mg_m2=None)
    assert again.status_code == 409, again.text
    detail = again.json()["detail"]
    assert detail["message"] == "the dose is not cleared: nothing was recorded"
    assert any("less than 72 h ago" in r for r in detail["reasons"])
    doses = rows(running.services, "SELECT event_id FROM event WHERE type = 'administration'")
    assert [d["event_id"] for d in doses] == [event_id]
    # and the chair list shows it
    c1 = next(p for p in _chair(running).json()["patients"] if p["patient_id"] == "C1")
    assert c1["last_dose_at"] == "2026-10-01T12:00:00Z"
    assert c1["clearance"]["cleared"] is False


def test_a_dose_is_refused_when_not_cleared(running: RunningService) -> None:
    response = _give(running, "C2")
    assert response.status_code == 409
    assert "bortezomib is on hold" in response.json()["detail"]["reasons"]
    assert rows(running.services, "SELECT count(*) AS n FROM event WHERE type = "
                "'administration'") == [{"n": 0}]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"dose_mg": 2.3}, 422),  # both doses (dose_mg_m2 from the default body)
        ({"dose_mg_m2": 2.0}, 422),  # above the bound
        ({"route": "IM"}, 422),
        ({"given_at": "2026-10-01T12:00:00"}, 422),  # no offset
        ({"extra": 1}, 422),
    ],
)
def test_bad_forms_are_refused_and_change_nothing(
    running: RunningService, body: dict[str, Any], status: int
) -> None:
    assert _give(running, "C1", **body).status_code == status
    assert rows(running.services, "SELECT count(*) AS n FROM event WHERE type = "
                "'administration'") == [{"n": 0}]  # fmt: skip


def test_other_units_and_patients_are_404(running: RunningService) -> None:
    assert _give(running, "C9").status_code == 404  # C9 is in u9
    assert _give(running, "NOPE").status_code == 404
    ward9 = create_token(running.services.sessions, "infusion", "chair-u9", FIXED_NOW, units=["u9"])
    headers = {"Authorization": f"Bearer {ward9}"}
    assert running.api.client.get("/v1/units/u7/chair", headers=headers).status_code == 404
    own = running.api.client.get("/v1/units/u9/chair", headers=headers)
    assert [p["patient_id"] for p in own.json()["patients"]] == ["C9"]


def test_a_grading_recorded_at_the_chair_is_folded(running: RunningService) -> None:
    response = running.api.client.post(
        "/v1/units/u7/chair/C1/assessments",
        json={"grades": {"sensory": 2, "pain": 1}, "cycle": 1},
        headers=running.api.headers("nurse"),
    )
    assert response.status_code == 201, response.text
    assert running.worker.wait_idle()
    decisions = running.api.decisions("C1")
    event_id = response.json()["event_id"]
    assert {d["action"] for d in decisions if d["trigger"] == event_id} >= {"reduce_dose"}
    [stored] = rows(running.services, "SELECT body FROM event WHERE event_id = :e", e=event_id)
    assert '"source":"nurse"' in stored["body"].replace(" ", "")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/units/u7/chair", {"infusion", "nurse", "admin"}),
        ("POST", "/v1/units/u7/chair/C2/assessments", {"infusion", "nurse", "admin"}),
        ("POST", "/v1/units/u7/chair/C2/administrations", {"infusion", "admin"}),
    ],
)
def test_the_chair_is_for_infusion_and_nurses(
    running: RunningService, method: str, path: str, allowed: set[str]
) -> None:
    dose = {"route": "SC", "dose_mg_m2": 1.0}
    body = {"grades": {"sensory": 0}} if path.endswith("assessments") else dose
    for role in ("nurse", "physician", "pharmacy", "infusion", "auditor", "ingest", "admin"):
        response = running.api.client.request(
            method, path, json=body if method == "POST" else None,
            headers=running.api.headers(role),  # type: ignore[arg-type]
        )  # fmt: skip
        if role in allowed:
            assert response.status_code in (200, 201, 409), (role, response.text)
        else:
            assert response.status_code == 403, role
