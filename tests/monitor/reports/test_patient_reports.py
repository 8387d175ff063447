"""The adherence report's `patient_reports` section (issue 16): weekly report completion,
reviews per patient-week, time from a report to its review's acknowledgement, and the D8
outcomes, with hand-computed numbers.

The D9 and D8 decisions are made up here (AuditDecision, or stored rows through
tests/common/reviews.py) until the core makes them: re-check against real folds after issue
16's merge (the database test's counts should then come from the fold itself)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from monitor.processing.inprocess import InProcessWorker
from monitor.reports.adherence import AdherenceReport, AuditDecision, AuditEvent, Period
from monitor.reports.patient_reports import immunotherapy_episodes, tally_patient
from monitor.reports.sources import report_from_database, report_from_events
from monitor.services import Services
from policies import parse_event
from tests.common import factories as f
from tests.common.reviews import D9, patient_report, store_decision
from tests.common.service import Api
from tests.conftest import FIXED_NOW

E = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)  # the enrolment; weeks count from it


def day(days: float, hours: float = 0) -> dt.datetime:
    return E + dt.timedelta(days=days, hours=hours)


def enrol(at: dt.datetime = E, unit: str | None = "U-A", event_id: str = "e0") -> AuditEvent:
    return AuditEvent(event_id, "enrollment", at, unit=unit)


def reported(event_id: str, at: dt.datetime) -> AuditEvent:
    return AuditEvent(event_id, "assessment", at, source="patient")


def graded(event_id: str, at: dt.datetime) -> AuditEvent:
    return AuditEvent(event_id, "assessment", at)


def therapy(event_id: str, at: dt.datetime, name: str = "ivig") -> AuditEvent:
    return AuditEvent(event_id, "immunotherapy", at, therapy=name)


def review(decision_id: str, trigger: str, at: dt.datetime, reason: str) -> AuditDecision:
    return AuditDecision(decision_id, "review_required", at, trigger, reason=reason)


PERIOD = Period(E, day(35))  # five weekly windows, all ended by day 35


def test_each_ended_weekly_window_is_due_and_reported_when_a_report_falls_in_it() -> None:
    # reports on days 1 and 3 (window 0, counted once), 13.9 (window 1), 28 (window 4: its
    # first instant); windows 2 and 3 missed
    events = [enrol(), *(reported(f"r{d}", day(d)) for d in (1, 3, 13.9, 28))]
    tally = tally_patient(events, [], PERIOD)
    assert (tally.expected, tally.reported) == (5, 3)
    # a window still open at the period's end is not due yet (day 34: window 4 open)
    assert tally_patient(events, [], Period(E, day(34))).expected == 4
    # the period's start: windows that ended before it are not counted
    assert tally_patient(events, [], Period(day(14), day(35))).expected == 3


def test_weeks_stop_at_the_course_end_the_watch_closing_or_a_new_enrolment() -> None:
    ended = [enrol(), AuditEvent("x", "course_end", day(10))]
    assert tally_patient(ended, [], PERIOD).expected == 2  # windows 0 and 1 began before day 10
    closed = AuditDecision("d-closed", "watch_closed", day(14), "a14")
    assert tally_patient([enrol()], [closed], PERIOD).expected == 2  # window 2 begins at 14
    renewed = [enrol(), enrol(day(21), event_id="e1")]
    # the first course's windows 0-2, then the second's [21, 28) and [28, 35)
    assert tally_patient(renewed, [], PERIOD).expected == 5
    assert tally_patient(renewed, [], Period(E, day(34))).expected == 4
    # a held or discontinued course goes on being watched: weeks go on until one of those
    held = [enrol(), AuditEvent("h", "treatment_change", day(5), action="held")]
    assert tally_patient(held, [], PERIOD).expected == 5


def test_the_unit_filter_counts_that_units_courses_only() -> None:
    events = [enrol(unit="U-B"), reported("r1", day(1))]
    assert tally_patient(events, [], Period(E, day(35), "U-A")).expected == 0
    assert tally_patient(events, [], Period(E, day(35), "U-B")).expected == 5


def test_d8_outcomes_and_checks_not_done() -> None:
    events = [
        enrol(),
        graded("a0", day(0)),
        therapy("iv1", day(1)),
        therapy("iv2", day(3)),  # the same episode: due day 29
        therapy("px", day(2), "plasma_exchange"),  # another episode: due day 30
        graded("a30", day(30, 1)),  # qualifies for both
    ]
    decisions = [
        AuditDecision("d-r", "immunotherapy_response", day(30, 1), "a30"),
        review("d-n", "a30", day(30, 1), "immunotherapy_no_response"),
    ]
    tally = tally_patient(events, decisions, Period(E, day(40)))
    assert (tally.responses, tally.non_responses, tally.not_done) == (1, 1, 0)
    # no grading after the check date: both checks not done (a patient report does not count)
    late = [*events[:5], reported("r30", day(30, 1))]
    assert tally_patient(late, [], Period(E, day(40))).not_done == 2
    # a check date after the period: not counted yet
    assert tally_patient(late, [], Period(E, day(28))).not_done == 0
    # no grading before the therapy: D8 cannot check it
    bare = [enrol(), therapy("iv1", day(1))]
    tally = tally_patient(bare, [], Period(E, day(40)))
    assert (tally.not_done, tally.without_baseline) == (0, 1)


def test_episodes_group_a_therapy_within_seven_days_of_its_first_event() -> None:
    found = immunotherapy_episodes([(day(0), "ivig"), (day(7), "ivig"), (day(7.1), "ivig")])
    assert [(e.start, e.last, e.events) for e in found] == [
        (day(0), day(7), 2),
        (day(7.1), day(7.1), 1),
    ]


def test_the_section_reviews_per_patient_week_and_hours_to_acknowledgement() -> None:
    report = AdherenceReport(PERIOD, "default@2")
    events = [enrol(), reported("r1", day(1)), reported("r8", day(8))]
    decisions = [
        review("d-1", "r1", day(1), "patient_reported_change"),
        review("d-8", "r8", day(8), "patient_reported_change"),
        review("d-x", "r8", day(8), "dose_not_comparable"),  # another review: not counted
    ]
    report.add_patient("P1", [], [], 35 * 86400.0, tally_patient(events, decisions, PERIOD))
    report.add_review_ack("d-1", day(1, 3))
    report.add_review_ack("d-1", day(1, 5))  # a later acknowledgement: the first counts
    report.add_review_ack("d-x", day(9))  # not a patient report's review
    section = report.result()["patient_reports"]
    assert section == {
        "weekly_reports": {"expected": 5, "reported": 2, "missed": 3, "completion_rate": 0.4},
        "reviews": {"total": 2, "patient_weeks": 5.0, "per_patient_week": 0.4},
        "acknowledgement": {
            "acknowledged": 1,
            "unacknowledged": 1,
            "median_hours_to_ack": 3.0,
            "p90_hours_to_ack": 3.0,
        },
        "immunotherapy_response": {
            "responses": 0,
            "non_responses": 0,
            "checks_not_done": 0,
            "without_baseline": 0,
        },
    }
    report.close()


def test_database_and_event_file_reports_agree_and_the_database_times_acknowledgements(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    enrolled = FIXED_NOW - dt.timedelta(days=21)
    bodies: list[dict[str, Any]] = [
        f.enrollment(enrolled, patient="PR-1", event_id="pr1-e", unit="U-A"),
        f.assessment(enrolled, patient="PR-1", event_id="pr1-a0"),
        patient_report(enrolled + dt.timedelta(days=2), "PR-1", "pr-1a", severity=3,
                       interference=3, comment="sch\u00fctteln"),  # a \\u escape when stored
        patient_report(enrolled + dt.timedelta(days=16), "PR-1", "pr-1b", severity=1,
                       interference=0),
    ]  # fmt: skip
    response = api.post_events({"events": bodies})
    assert response.status_code == 202, response.text
    assert worker.wait_idle()
    reported_at = enrolled + dt.timedelta(days=2)
    review_id = store_decision(services, "PR-1", "pr-1a", reported_at, D9, unit="U-A")
    [alert] = [a for a in api.get("/v1/alerts", role="admin").json()["alerts"]
               if a["decision_id"] == review_id]  # fmt: skip
    acked = api.client.post(
        f"/v1/alerts/{alert['id']}/ack",
        json={"at": (reported_at + dt.timedelta(hours=6)).isoformat()},
        headers=api.headers("nurse"),
    )
    assert acked.status_code == 200, acked.text
    period = Period(enrolled, FIXED_NOW)
    database = report_from_database(services, period)
    section = database.result()["patient_reports"]
    database.close()
    # windows [0, 7), [7, 14), [14, 21) ended by now: reports in the first and the third
    assert section["weekly_reports"] == {
        "expected": 3,
        "reported": 2,
        "missed": 1,
        "completion_rate": 0.6667,
    }
    assert section["reviews"]["total"] == 1
    assert section["reviews"]["patient_weeks"] == 3.0
    assert section["acknowledgement"] == {
        "acknowledged": 1,
        "unacknowledged": 0,
        "median_hours_to_ack": 6.0,
        "p90_hours_to_ack": 6.0,
    }
    offline = report_from_events(services.pack, [parse_event(b) for b in bodies], period)
    weekly = offline.result()["patient_reports"]
    offline.close()
    assert weekly["acknowledgement"] is None  # alerts live in the database only
    assert weekly["weekly_reports"] == section["weekly_reports"]  # no D9 in replay yet
