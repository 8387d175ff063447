"""`GET /v1/units/{unit}/reports`: the unit's patients asked for weekly reports, those whose
current window is still unreported first, with what was reported and missed over the course;
care roles only, scoped to the token's units; and the chair list's `weekly_report`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from monitor.auth.tokens import create_token
from monitor.report_windows.scheduled import open_report_windows
from tests.common import factories as f
from tests.common.service import RunningService, running_service
from tests.conftest import FIXED_NOW
from tests.monitor.report_windows.conftest import patient_report

DAY = dt.timedelta(days=1)


@pytest.fixture
def running(tmp_path: Any) -> Iterator[RunningService]:
    with running_service(tmp_path) as service:
        bodies = [
            f.enrollment(FIXED_NOW - 10 * DAY, "R-A", "a-e", unit="u7"),  # week 1, none yet
            f.enrollment(FIXED_NOW - 10 * DAY, "R-B", "b-e", unit="u7"),  # reported both weeks
            patient_report(FIXED_NOW - 8 * DAY, "R-B"),
            patient_report(FIXED_NOW - DAY, "R-B"),
            f.enrollment(FIXED_NOW - 3 * DAY, "R-C", "c-e", unit="u7"),
            f.treatment_change(FIXED_NOW - 2 * DAY, "held", "R-C", "c-h", reason="infection"),
            f.enrollment(FIXED_NOW - 20 * DAY, "R-E", "e-e", unit="u7"),
            f.course_end(FIXED_NOW - DAY, patient="R-E", event_id="e-x"),  # ended: not asked
            f.enrollment(FIXED_NOW - 3 * DAY, "R-9", "9-e", unit="u9"),  # another unit
        ]
        assert service.api.post_events({"events": bodies}).status_code == 202
        assert service.worker.wait_idle()
        yield service


def _reports(running: RunningService, unit: str = "u7", role: Any = "nurse") -> Any:
    return running.api.client.get(f"/v1/units/{unit}/reports", headers=running.api.headers(role))


def test_the_unreported_come_first_with_counts_over_the_course(running: RunningService) -> None:
    open_report_windows(running.services)
    response = _reports(running)
    assert response.status_code == 200, response.text
    listed = response.json()
    assert (listed["unit"], listed["as_of"]) == ("u7", "2026-10-01T12:00:00Z")
    assert [p["patient_id"] for p in listed["patients"]] == ["R-A", "R-C", "R-B"]
    by_id = {p["patient_id"]: p for p in listed["patients"]}
    assert by_id["R-A"]["weekly_report"] == {
        "window": 1,
        "window_start": "2026-09-28T12:00:00Z",
        "window_end": "2026-10-05T12:00:00Z",
        "state": "due",
        "reported_at": None,
        "reported": 0,
        "missed": 1,
    }
    assert by_id["R-B"]["weekly_report"] == {
        "window": 1,
        "window_start": "2026-09-28T12:00:00Z",
        "window_end": "2026-10-05T12:00:00Z",
        "state": "reported",
        "reported_at": "2026-09-30T12:00:00Z",
        "reported": 2,
        "missed": 0,
    }
    assert by_id["R-C"]["status"] == "held"
    assert by_id["R-C"]["weekly_report"]["state"] == "due"


def test_a_report_moves_the_patient_down_the_list(running: RunningService) -> None:
    open_report_windows(running.services)
    later = FIXED_NOW + dt.timedelta(hours=2)
    running.services.settings = running.services.settings.model_copy(update={"fixed_now": later})
    body = patient_report(FIXED_NOW + dt.timedelta(hours=1), "R-A")
    assert running.api.post_events({"events": [body]}).status_code == 202
    assert running.worker.wait_idle()
    open_report_windows(running.services)
    listed = _reports(running).json()["patients"]
    assert [p["patient_id"] for p in listed] == ["R-C", "R-A", "R-B"]
    assert listed[1]["weekly_report"]["state"] == "reported"
    assert listed[1]["weekly_report"]["missed"] == 1


def test_before_the_job_ran_the_week_is_due_and_earlier_weeks_missed(
    running: RunningService,
) -> None:
    listed = {p["patient_id"]: p["weekly_report"] for p in _reports(running).json()["patients"]}
    assert listed["R-A"]["state"] == "due"
    assert (listed["R-A"]["window"], listed["R-A"]["missed"]) == (1, 1)


@pytest.mark.parametrize("role", ["nurse", "physician", "pharmacy", "infusion", "admin"])
def test_the_care_roles_may_read_it(running: RunningService, role: Any) -> None:
    assert _reports(running, role=role).status_code == 200


@pytest.mark.parametrize("role", ["ingest", "auditor", "cds"])
def test_other_roles_may_not(running: RunningService, role: Any) -> None:
    response = _reports(running, role=role)
    assert response.status_code == 403
    assert "allowed: nurse, physician, pharmacy, infusion, admin" in response.json()["detail"]


def test_a_unit_bound_token_sees_its_units_only(running: RunningService) -> None:
    ward9 = create_token(running.services.sessions, "nurse", "nurse-u9", FIXED_NOW, units=["u9"])
    headers = {"Authorization": f"Bearer {ward9}"}
    other = running.api.client.get("/v1/units/u7/reports", headers=headers)
    assert other.status_code == 404
    assert "no unit 'u7'" in other.json()["detail"]
    own = running.api.client.get("/v1/units/u9/reports", headers=headers)
    assert [p["patient_id"] for p in own.json()["patients"]] == ["R-9"]


def test_the_chair_list_shows_the_weekly_report(running: RunningService) -> None:
    open_report_windows(running.services)
    response = running.api.client.get("/v1/units/u7/chair", headers=running.api.headers("infusion"))
    assert response.status_code == 200, response.text
    by_id = {p["patient_id"]: p["weekly_report"] for p in response.json()["patients"]}
    assert sorted(by_id) == ["R-A", "R-B", "R-C"]
    assert (by_id["R-A"]["state"], by_id["R-A"]["missed"]) == ("due", 1)
    assert (by_id["R-B"]["state"], by_id["R-B"]["reported"]) == ("reported", 2)
