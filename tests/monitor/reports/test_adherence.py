"""The adherence audit (issue 5, "Definitions"), with hand-computed expected numbers.

Most tests build the audit's own inputs (`AuditEvent`, `AuditDecision`) so each outcome and
edge is set up exactly: every outcome of every kind, the dose tolerance, "whichever comes first",
hours to action bounded by the next recommendation, the period's boundaries, the unit filter,
an empty period and the report's JSON. The end-to-end tests feed real events to
`report_from_events` (the real engine's decisions are audited), and the database form is fed
through the API (late events supersede stored decisions; alerts and their acknowledgements),
then compared with the offline form.

Readings of the definitions these tests pin (see monitor/reports/adherence.py):
- the period holds `from <= at <= to`; events after `to` are ignored;
- "after the decision" is after its triggering event in timeline order (time, event id);
- audits stop at the next enrolment (a new course);
- the drill-down lists deviated and pending recommendations, missed reassessments and
  unanswered escalations ("the items behind each non-followed recommendation").
"""

from __future__ import annotations

import datetime as dt
import json
import math
import pathlib
from collections.abc import Sequence
from typing import Any

import pytest

from monitor.processing.inprocess import InProcessWorker
from monitor.reports.adherence import (
    AdherenceReport,
    AuditDecision,
    AuditEvent,
    AuditItem,
    Period,
    audit_patient,
    item_view,
)
from monitor.reports.sources import report_from_database, report_from_events
from monitor.services import Services
from policies import DEFAULT, LABEL, PolicyPack, pack_from_mapping, parse_event
from tests.common import factories as f
from tests.common.service import Api, rows
from tests.conftest import FIXED_NOW

ROOT = pathlib.Path(__file__).resolve().parents[3]
GRACE = dt.timedelta(days=2)
T = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)  # the decision under audit is at T
WIDE = Period(T - dt.timedelta(days=60), T + dt.timedelta(days=120))

TOP_KEYS = {
    "period",
    "unit",
    "policy",
    "policies",
    "recommendations",
    "reassessments",
    "escalations",
    "alerts",
    "patient_reports",
    "deviations",
    "by_unit",
    "by_month",
    "patients",
}


# --- builders ------------------------------------------------------------------------------------


def h(hours: float = 0, *, days: float = 0, seconds: float = 0) -> dt.datetime:
    return T + dt.timedelta(hours=hours, days=days, seconds=seconds)


def utc(year: int, month: int, day: int, hour: int = 8, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


def enrol(event_id: str, at: dt.datetime, unit: str | None = "U-A") -> AuditEvent:
    return AuditEvent(event_id, "enrollment", at, unit=unit)


def assessed(event_id: str, at: dt.datetime) -> AuditEvent:
    return AuditEvent(event_id, "assessment", at)


def given(event_id: str, at: dt.datetime, dose: float) -> AuditEvent:
    return AuditEvent(event_id, "administration", at, dose_mg_m2=dose)


def change(event_id: str, at: dt.datetime, action: str, dose: float | None = None) -> AuditEvent:
    return AuditEvent(event_id, "treatment_change", at, dose_mg_m2=dose, action=action)


def therapy(event_id: str, at: dt.datetime) -> AuditEvent:
    return AuditEvent(event_id, "immunotherapy", at)


def ended(event_id: str, at: dt.datetime) -> AuditEvent:
    return AuditEvent(event_id, "course_end", at)


def decided(
    decision_id: str, action: str, at: dt.datetime, trigger: str, **fields: Any
) -> AuditDecision:
    return AuditDecision(decision_id, action, at, trigger, **fields)


# The patient of the single-decision tables: enrolled 10 days before T (unit U-A), assessed at T
# (event "a0"), which triggers the decision under audit.
BASE = [enrol("e0", h(days=-10)), assessed("a0", h())]


def audit_one(
    decision: AuditDecision,
    extra: Sequence[AuditEvent],
    other_decisions: Sequence[AuditDecision] = (),
    period: Period = WIDE,
    grace: dt.timedelta = GRACE,
) -> AuditItem:
    """The item of `decision`, audited among BASE + `extra`."""
    items, _ = audit_patient("PT-1", [*BASE, *extra], [decision, *other_decisions], period, grace)
    [item] = [i for i in items if i.decision_id == decision.decision_id]
    return item


def evidence_id(item: AuditItem) -> str | None:
    return None if item.evidence is None else item.evidence.event_id


def outcome(item: AuditItem) -> tuple[str, str | None, float | None]:
    """(outcome, the deciding event's id, hours to action)."""
    return item.outcome, evidence_id(item), item.hours_to_action


# --- reduce_dose ---------------------------------------------------------------------------------

REDUCE = decided("R", "reduce_dose", h(), "a0", dose_mg_m2=1.0)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param([], ("pending", None, None), id="nothing-yet-pending"),
        pytest.param([given("x", h(24), 1.0)], ("followed", "x", None), id="dose-at-recommended"),
        pytest.param([given("x", h(24), 0.7)], ("followed", "x", None), id="dose-below"),
        pytest.param(
            [given("x", h(24), 1.05)], ("followed", "x", None), id="dose-at-tolerance-inclusive"
        ),
        pytest.param([given("x", h(24), 1.06)], ("deviated", "x", None), id="dose-just-above"),
        pytest.param([given("x", h(24), 1.3)], ("deviated", "x", None), id="old-dose"),
        pytest.param(
            [change("c", h(6), "dose_reduced", 1.0), given("x", h(24), 1.3)],
            ("followed", "c", 6.0),
            id="dose-reduced-first-then-a-high-dose",
        ),
        pytest.param(
            [change("c", h(6), "dose_reduced", 1.05)],
            ("followed", "c", 6.0),
            id="dose-reduced-at-tolerance",
        ),
        pytest.param(
            [change("c", h(3), "dose_reduced")],
            ("followed", "c", 3.0),
            id="dose-reduced-without-dose",
        ),
        pytest.param(
            [change("c", h(2), "held"), given("x", h(24), 1.3)],
            ("followed", "c", 2.0),
            id="held-first",
        ),
        pytest.param(
            [change("c", h(1.5), "discontinued")],
            ("followed", "c", 1.5),
            id="discontinued-first",
        ),
        pytest.param(
            [given("x", h(4), 1.3), change("c", h(6), "dose_reduced", 1.0)],
            ("deviated", "x", 6.0),
            id="high-dose-first-then-the-change",
        ),
        pytest.param(
            [change("c", h(2), "dose_reduced", 1.1), given("x", h(24), 1.0)],
            ("followed", "x", None),
            id="reduction-above-recommended-is-skipped",
        ),
        pytest.param(
            [change("c", h(2), "resumed"), change("d", h(3), "completed")],
            ("pending", None, None),
            id="resumed-and-completed-are-skipped",
        ),
        pytest.param(
            [enrol("e1", h(12), "U-B"), given("x", h(24), 1.3)],
            ("pending", None, None),
            id="dose-in-the-next-course-does-not-count",
        ),
        pytest.param(
            [given("0x", h(), 1.3)],
            ("pending", None, None),
            id="same-instant-before-the-trigger-in-timeline-order",
        ),
        pytest.param(
            [given("zx", h(), 1.3)],
            ("deviated", "zx", None),
            id="same-instant-after-the-trigger-in-timeline-order",
        ),
        pytest.param(
            [given("x", h(-2), 1.3)], ("pending", None, None), id="dose-before-the-decision"
        ),
        pytest.param(
            [ended("ce", h(5))], ("pending", None, None), id="course-end-is-not-a-reduction"
        ),
    ],
)
def test_reduce_dose_outcomes(
    extra: list[AuditEvent], expected: tuple[str, str | None, float | None]
) -> None:
    item = audit_one(REDUCE, extra)
    assert outcome(item) == expected
    assert (item.kind, item.action, item.recommended_dose_mg_m2) == (
        "recommendation",
        "reduce_dose",
        1.0,
    )


def in_mg(event_id: str, at: dt.datetime, dose_mg: float, bsa: float | None = None) -> AuditEvent:
    return AuditEvent(event_id, "administration", at, dose_mg=dose_mg, bsa_m2=bsa)


# A dose given in mg is judged per m2 at its own BSA, else its course's enrolment's; without one
# it is not comparable: pending, with that dose as the evidence (the drill-down shows it).
@pytest.mark.parametrize(
    ("enrolment_bsa", "extra", "expected", "per_m2"),
    [
        pytest.param(None, [in_mg("x", h(24), 2.0, 2.0)], "followed", 1.0, id="mg-at-its-bsa"),
        pytest.param(None, [in_mg("x", h(24), 2.2, 2.0)], "deviated", 1.1, id="mg-above-its-bsa"),
        pytest.param(2.0, [in_mg("x", h(24), 2.1)], "followed", 1.05, id="mg-enrolment-bsa"),
        pytest.param(1.0, [in_mg("x", h(24), 2.0, 2.0)], "followed", 1.0, id="mg-own-bsa-first"),
        pytest.param(1.0, [in_mg("x", h(24), 2.0)], "deviated", 2.0, id="mg-enrolment-above"),
        pytest.param(None, [in_mg("x", h(24), 2.0)], "pending", None, id="mg-not-comparable"),
        pytest.param(
            None,
            [in_mg("x", h(24), 2.0), given("y", h(48), 1.0)],
            "pending",
            None,
            id="mg-not-comparable-the-first-dose-decides",
        ),
    ],
)
def test_reduce_dose_outcomes_of_doses_in_mg(
    enrolment_bsa: float | None,
    extra: list[AuditEvent],
    expected: str,
    per_m2: float | None,
) -> None:
    events = [AuditEvent("e0", "enrollment", h(days=-10), unit="U-A", bsa_m2=enrolment_bsa)]
    items, _ = audit_patient("PT-1", [*events, assessed("a0", h()), *extra], [REDUCE], WIDE, GRACE)
    [item] = items
    assert (item.outcome, evidence_id(item)) == (expected, "x")
    assert item.evidence is not None
    assert item.evidence.dose_mg == extra[0].dose_mg
    assert item.evidence.dose_mg_m2 == per_m2
    assert item.needs_review == (expected != "followed")
    assert item_view(item)["evidence"]["dose_mg"] == extra[0].dose_mg


def test_a_dose_in_mg_is_judged_at_its_own_courses_bsa() -> None:
    """The BSA is the latest enrolment's before the dose, not a later one's."""
    events = [
        AuditEvent("e0", "enrollment", h(days=-10), unit="U-A", bsa_m2=2.0),
        assessed("a0", h()),
        in_mg("x", h(24), 2.0),
        AuditEvent("e1", "enrollment", h(30), unit="U-A"),
        in_mg("y", h(48), 2.0),
    ]
    items, _ = audit_patient("PT-1", events, [REDUCE], WIDE, GRACE)
    assert [(i.outcome, evidence_id(i)) for i in items] == [("followed", "x")]


# --- hold ----------------------------------------------------------------------------------------

HOLD = decided("H", "hold", h(), "a0")
RESUME = decided("Z", "resume", h(48), "a48", dose_mg_m2=0.7)


@pytest.mark.parametrize(
    ("extra", "resume", "expected"),
    [
        pytest.param([], False, ("pending", None, None), id="nothing-yet-pending"),
        pytest.param([change("c", h(1), "held")], False, ("followed", "c", 1.0), id="held"),
        pytest.param(
            [change("c", h(1), "discontinued")],
            False,
            ("followed", "c", 1.0),
            id="discontinued",
        ),
        pytest.param(
            [given("x", h(24), 1.3)], False, ("deviated", "x", None), id="dose-during-hold"
        ),
        pytest.param(
            [change("c", h(1), "held"), given("x", h(24), 0.7)],
            False,
            ("deviated", "x", 1.0),
            id="held-then-dosed-without-resume",
        ),
        pytest.param(
            [assessed("a48", h(48)), given("x", h(72), 0.7)],
            True,
            ("followed", None, None),
            id="dose-only-after-the-resume-decision",
        ),
        pytest.param(
            [assessed("a48", h(48))], True, ("followed", None, None), id="resumed-nothing-given"
        ),
        pytest.param(
            [given("x", h(24), 1.3), assessed("a48", h(48))],
            True,
            ("deviated", "x", None),
            id="dose-before-the-resume-decision",
        ),
        pytest.param(
            [change("c", h(1), "held"), assessed("a48", h(48)), given("x", h(72), 0.7)],
            True,
            ("followed", "c", 1.0),
            id="held-recorded-then-resumed",
        ),
        pytest.param(
            [change("r", h(30), "resumed"), given("x", h(40), 0.7)],
            False,
            ("followed", "r", None),
            id="recorded-resumed-then-dosed",
        ),
        pytest.param(
            [given("0x", h(48), 0.7), assessed("a48", h(48))],
            True,
            ("deviated", "0x", None),
            id="dose-at-the-resume-instant-before-its-trigger",
        ),
        pytest.param(
            [assessed("a48", h(48)), given("zx", h(48), 0.7)],
            True,
            ("followed", None, None),
            id="dose-at-the-resume-instant-after-its-trigger",
        ),
        pytest.param(
            [enrol("e1", h(12)), given("x", h(24), 1.3)],
            False,
            ("pending", None, None),
            id="dose-in-the-next-course-does-not-count",
        ),
    ],
)
def test_hold_outcomes(
    extra: list[AuditEvent], resume: bool, expected: tuple[str, str | None, float | None]
) -> None:
    item = audit_one(HOLD, extra, [RESUME] if resume else [])
    assert outcome(item) == expected


def test_hold_resumed_after_the_period_end_is_still_pending() -> None:
    # The database holds decisions up to its clock, later than `to`: a resume after `to` does
    # not settle a hold audited up to `to`.
    period = Period(h(-1), h(36))
    item = audit_one(HOLD, [assessed("a48", h(48))], [RESUME], period)
    assert outcome(item) == ("pending", None, None)
    assert outcome(audit_one(HOLD, [assessed("a48", h(48))], [RESUME], Period(h(-1), h(48)))) == (
        "followed",
        None,
        None,
    )


# --- discontinue ---------------------------------------------------------------------------------

DISCONTINUE = decided("D", "discontinue", h(), "a0")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param([], ("pending", None, None), id="nothing-yet-pending"),
        pytest.param(
            [change("c", h(5), "discontinued")], ("followed", "c", 5.0), id="discontinued"
        ),
        pytest.param([change("c", h(5), "completed")], ("followed", "c", 5.0), id="completed"),
        pytest.param([ended("ce", h(5))], ("followed", "ce", 5.0), id="course-end"),
        pytest.param([change("c", h(5), "held")], ("pending", None, None), id="held-only"),
        pytest.param([given("x", h(24), 1.0)], ("deviated", "x", None), id="dose-after"),
        pytest.param(
            [change("c", h(5), "discontinued"), given("x", h(24), 1.0)],
            ("deviated", "x", 5.0),
            id="discontinued-then-dosed",
        ),
        pytest.param(
            [ended("ce", h(5)), enrol("e1", h(100)), given("x", h(124), 1.3)],
            ("followed", "ce", 5.0),
            id="dose-in-the-next-course-does-not-count",
        ),
    ],
)
def test_discontinue_outcomes(
    extra: list[AuditEvent], expected: tuple[str, str | None, float | None]
) -> None:
    assert outcome(audit_one(DISCONTINUE, extra)) == expected


# --- hours to action: bounded by the patient's next recommendation -------------------------------


def test_hours_to_action_stop_at_the_next_recommendation() -> None:
    first = decided("R1", "reduce_dose", h(), "a0", dose_mg_m2=1.0)
    second = decided("R2", "reduce_dose", h(48), "a48", dose_mg_m2=0.7)
    events = [*BASE, assessed("a48", h(48)), change("c", h(60), "dose_reduced", 0.7)]
    items, _ = audit_patient("PT-1", events, [first, second], WIDE, GRACE)
    by_id = {i.decision_id: outcome(i) for i in items}
    # The change at +60 h follows the first reduction (0.7 <= 1.0), but after the next
    # recommendation (+48 h): it is the second's action, 12 h after it.
    assert by_id == {"R1": ("followed", "c", None), "R2": ("followed", "c", 12.0)}
    report = AdherenceReport(WIDE, "default@1")
    report.add_patient("PT-1", items)
    assert report.result()["recommendations"]["median_hours_to_action"] == 12.0


def test_hours_to_action_bound_counts_any_recommendation_kind() -> None:
    reduce = decided("R", "reduce_dose", h(), "a0", dose_mg_m2=1.0)
    stop = decided("S", "discontinue", h(48), "a48")
    events = [*BASE, assessed("a48", h(48)), change("c", h(50), "discontinued")]
    items, _ = audit_patient("PT-1", events, [reduce, stop], WIDE, GRACE)
    assert {i.decision_id: outcome(i) for i in items} == {
        "R": ("followed", "c", None),
        "S": ("followed", "c", 2.0),
    }


# --- reassessments -------------------------------------------------------------------------------

DUE = h(days=21)
REASSESS = decided("S", "schedule_reassessment", h(), "a0", due_at=DUE)


@pytest.mark.parametrize(
    ("extra", "expected", "evidence"),
    [
        pytest.param([assessed("b", DUE - dt.timedelta(days=7))], "on_time", "b", id="early"),
        pytest.param([assessed("b", DUE)], "on_time", "b", id="at-due"),
        pytest.param([assessed("b", DUE + GRACE)], "on_time", "b", id="exactly-due-plus-grace"),
        pytest.param(
            [assessed("b", DUE + GRACE + dt.timedelta(seconds=1))],
            "late",
            "b",
            id="one-second-after-grace",
        ),
        pytest.param([assessed("b", DUE + dt.timedelta(days=10))], "late", "b", id="late"),
        pytest.param([], "missed", None, id="none-missed"),
        pytest.param(
            [assessed("b", DUE + dt.timedelta(days=1)), assessed("c", DUE + dt.timedelta(days=5))],
            "on_time",
            "b",
            id="the-first-assessment-decides",
        ),
        pytest.param([assessed("0b", h())], "missed", None, id="same-instant-before-the-trigger"),
        pytest.param(
            [assessed("b", WIDE.end + dt.timedelta(seconds=1))],
            "missed",
            None,
            id="after-the-report-end",
        ),
    ],
)
def test_reassessment_outcomes(
    extra: list[AuditEvent], expected: str, evidence: str | None
) -> None:
    item = audit_one(REASSESS, extra)
    assert (item.kind, item.outcome, evidence_id(item)) == ("reassessment", expected, evidence)
    assert item.due_at == DUE


def test_reassessment_grace_is_the_given_one() -> None:
    just_after_due = [assessed("b", DUE + dt.timedelta(minutes=1))]
    assert audit_one(REASSESS, just_after_due).outcome == "on_time"
    assert audit_one(REASSESS, just_after_due, grace=dt.timedelta(0)).outcome == "late"
    assert audit_one(REASSESS, [assessed("b", DUE)], grace=dt.timedelta(0)).outcome == "on_time"


def test_reassessment_missed_even_when_grace_runs_past_the_report_end() -> None:
    # Due inside the period, due + grace after it, the assessment after `to`: the definition
    # has no pending state for reassessments, so it is missed.
    period = Period(h(), DUE + dt.timedelta(hours=12))
    item = audit_one(REASSESS, [assessed("b", DUE + dt.timedelta(days=1))], period=period)
    assert item.outcome == "missed"


# --- escalations ---------------------------------------------------------------------------------

ESCALATE = decided("E", "escalate_immunotherapy", h(), "a0")


@pytest.mark.parametrize(
    ("extra", "expected", "days"),
    [
        pytest.param(
            [therapy("0t", h())], "answered_within_7d", 0.0, id="same-instant-at-or-after"
        ),
        pytest.param([therapy("t", h(days=3.5))], "answered_within_7d", 3.5, id="within"),
        pytest.param([therapy("t", h(days=7))], "answered_within_7d", 7.0, id="exactly-7-days"),
        pytest.param(
            [therapy("t", h(days=7, seconds=1))],
            "answered_late",
            7 + 1 / 86400,
            id="7-days-and-a-second",
        ),
        pytest.param([therapy("t", h(days=10))], "answered_late", 10.0, id="late"),
        pytest.param([], "unanswered", None, id="none-unanswered"),
        pytest.param([therapy("t", h(days=-1))], "unanswered", None, id="therapy-before-it"),
        pytest.param(
            [therapy("t", h(days=-1)), therapy("u", h(days=2))],
            "answered_within_7d",
            2.0,
            id="the-first-at-or-after-it",
        ),
        pytest.param(
            [therapy("t", WIDE.end + dt.timedelta(seconds=1))],
            "unanswered",
            None,
            id="after-the-report-end",
        ),
    ],
)
def test_escalation_outcomes(extra: list[AuditEvent], expected: str, days: float | None) -> None:
    item = audit_one(ESCALATE, extra)
    assert (item.kind, item.outcome) == ("escalation", expected)
    assert item.days_to_therapy == (None if days is None else pytest.approx(days))


def test_median_days_to_therapy_and_hours_to_action() -> None:
    # Escalations answered after 1, 4 and 10 days (median 4.0); a fourth after 2 days makes an
    # even count (median (2 + 4) / 2 = 3.0). Unanswered ones add nothing.
    report = AdherenceReport(WIDE, "default@1")
    for n, days in enumerate([1, 4, 10, None]):
        extra = [] if days is None else [therapy("t", h(days=days))]
        report.add_patient(f"PT-{n}", [audit_one(ESCALATE, extra)])
    escalations = report.result()["escalations"]
    assert escalations == {
        "total": 4,
        "answered_within_7d": 2,
        "answered_late": 1,
        "unanswered": 1,
        "median_days_to_therapy": 4.0,
    }
    report.add_patient("PT-9", [audit_one(ESCALATE, [therapy("t", h(days=2))])])
    assert report.result()["escalations"]["median_days_to_therapy"] == 3.0
    # Hours to action 1.5, 2 and 6.25 (median 2.0); pending ones add nothing.
    report = AdherenceReport(WIDE, "default@1")
    for n, hours in enumerate([6.25, 1.5, 2, None]):
        extra = [] if hours is None else [change("c", h(hours), "discontinued")]
        report.add_patient(f"PT-{n}", [audit_one(DISCONTINUE, extra)])
    recommendations = report.result()["recommendations"]
    assert (recommendations["median_hours_to_action"], recommendations["pending"]) == (2.0, 1)


# --- a whole report, by hand ---------------------------------------------------------------------


def rec(
    total: int, followed: int, deviated: int, pending: int, rate: float | None
) -> dict[str, Any]:
    return {
        "total": total,
        "followed": followed,
        "deviated": deviated,
        "pending": pending,
        "rate": rate,
    }


def rea(due: int, on_time: int, late: int, missed: int, rate: float | None) -> dict[str, Any]:
    return {"due": due, "on_time": on_time, "late": late, "missed": missed, "rate": rate}


def esc(total: int, within: int, late: int, unanswered: int) -> dict[str, Any]:
    return {
        "total": total,
        "answered_within_7d": within,
        "answered_late": late,
        "unanswered": unanswered,
    }


def summary(r: dict[str, Any], s: dict[str, Any], e: dict[str, Any]) -> dict[str, Any]:
    return {"recommendations": r, "reassessments": s, "escalations": e}


Q1 = Period(utc(2026, 1, 1, 0), dt.datetime(2026, 3, 31, 23, 59, 59, tzinfo=dt.UTC))


def clinic() -> dict[str, tuple[list[AuditEvent], list[AuditDecision]]]:
    """Four patients over the first quarter of 2026 (Q1); expected outcomes in the comments."""
    return {
        "P-A": (  # unit U-A
            [
                enrol("a-e", utc(2026, 1, 2)),
                assessed("a-1", utc(2026, 1, 10)),
                change("a-c1", utc(2026, 1, 10, 14), "dose_reduced", 1.0),
                assessed("a-2", utc(2026, 2, 2)),
                given("a-x2", utc(2026, 2, 3), 1.0),
                change("a-c2", utc(2026, 2, 4), "dose_reduced", 0.7),
                assessed("a-3", utc(2026, 3, 1)),
            ],
            [
                # followed by a-c1, 6 h
                decided("R1", "reduce_dose", utc(2026, 1, 10), "a-1", dose_mg_m2=1.0),
                # due 31 Jan, a-2 at due + 2 d: on time (month 2026-01)
                decided(
                    "S1", "schedule_reassessment", utc(2026, 1, 10), "a-1", due_at=utc(2026, 1, 31)
                ),
                # a-x2 at 1.0 > 0.75 first: deviated; a-c2 at 0.7 acts after 48 h
                decided("R2", "reduce_dose", utc(2026, 2, 2), "a-2", dose_mg_m2=0.7),
                # due 23 Feb, a-3 on 1 Mar: late
                decided(
                    "S2", "schedule_reassessment", utc(2026, 2, 2), "a-2", due_at=utc(2026, 2, 23)
                ),
                decided(
                    "AD1",
                    "adherence_deviation",
                    utc(2026, 2, 3),
                    "a-x2",
                    reason="dose_above_recommended",
                ),
            ],
        ),
        "P-B": (  # unit U-B
            [
                enrol("b-e", utc(2026, 1, 5), "U-B"),
                assessed("b-1", utc(2026, 2, 10)),
                change("b-c", utc(2026, 2, 10, 20), "discontinued"),
                assessed("b-2", utc(2026, 3, 1)),
                therapy("b-t", utc(2026, 3, 4, 20)),
            ],
            [
                # followed by b-c, 12 h
                decided("D1", "discontinue", utc(2026, 2, 10), "b-1"),
                # due 24 Feb, b-2 on 1 Mar: late
                decided(
                    "S3", "schedule_reassessment", utc(2026, 2, 10), "b-1", due_at=utc(2026, 2, 24)
                ),
                # b-t 3.5 days later: within 7 d
                decided("E1", "escalate_immunotherapy", utc(2026, 3, 1), "b-2"),
                # due 15 Mar, nothing after b-2: missed
                decided(
                    "S4", "schedule_reassessment", utc(2026, 3, 1), "b-2", due_at=utc(2026, 3, 15)
                ),
            ],
        ),
        "P-C": (  # no unit
            [
                enrol("c-e", utc(2026, 1, 3), None),
                assessed("c-0", utc(2026, 1, 20)),
                therapy("c-t", utc(2026, 1, 30)),
                assessed("c-1", utc(2026, 3, 20)),
                given("c-x", utc(2026, 3, 21), 1.3),
                assessed("c-2", utc(2026, 4, 2)),
            ],
            [
                # c-t 10 days later: answered late
                decided("E2", "escalate_immunotherapy", utc(2026, 1, 20), "c-0"),
                # c-x during the hold: deviated
                decided("H1", "hold", utc(2026, 3, 20), "c-1"),
                # due 10 Apr: after Q1, not counted
                decided(
                    "S5", "schedule_reassessment", utc(2026, 3, 20), "c-1", due_at=utc(2026, 4, 10)
                ),
                decided(
                    "AD2", "adherence_deviation", utc(2026, 3, 21), "c-x", reason="dose_during_hold"
                ),
                # after Q1: not counted
                decided("R3", "reduce_dose", utc(2026, 4, 2), "c-2", dose_mg_m2=1.0),
            ],
        ),
        "P-D": (  # unit U-A
            [
                enrol("d-e", utc(2025, 12, 1)),
                assessed("d-0", utc(2025, 12, 20)),
                assessed("d-1", utc(2026, 1, 11)),
                assessed("d-2", utc(2026, 3, 25)),
            ],
            [
                # before Q1: not counted...
                decided("R0", "reduce_dose", utc(2025, 12, 20), "d-0", dose_mg_m2=1.0),
                # ...but its reassessment is due 10 Jan, in Q1: d-1 on 11 Jan, on time
                decided(
                    "S0", "schedule_reassessment", utc(2025, 12, 20), "d-0", due_at=utc(2026, 1, 10)
                ),
                # nothing after: pending, unanswered
                decided("D2", "discontinue", utc(2026, 3, 25), "d-2"),
                decided("E3", "escalate_immunotherapy", utc(2026, 3, 25), "d-2"),
            ],
        ),
    }


def clinic_report(period: Period = Q1) -> dict[str, Any]:
    report = AdherenceReport(period, "default@1", with_alerts=False)
    for patient_id, (events, decisions) in clinic().items():
        items, deviations = audit_patient(patient_id, events, decisions, period, GRACE)
        report.add_patient(patient_id, items, deviations)
    return report.result()


def test_a_whole_report_matches_the_hand_computed_figures() -> None:
    result = clinic_report()
    assert set(result) == TOP_KEYS
    assert result["period"] == {"from": "2026-01-01T00:00:00Z", "to": "2026-03-31T23:59:59Z"}
    assert (result["unit"], result["policy"], result["alerts"]) == (None, "default@1", None)
    # Recommendations: R1 followed, R2 deviated, D1 followed, H1 deviated, D2 pending (R0 and
    # R3 outside). Hours to action: R1 6, R2 48, D1 12 -> median 12.
    assert result["recommendations"] == {
        **rec(5, 2, 2, 1, 0.5),
        "median_hours_to_action": 12.0,
        "by_action": {
            "reduce_dose": rec(2, 1, 1, 0, 0.5),
            "hold": rec(1, 0, 1, 0, 0.0),
            "discontinue": rec(2, 1, 0, 1, 1.0),
        },
    }
    # S0 on time, S1 on time (exactly due + 2 d), S2 late, S3 late, S4 missed (S5 due after).
    assert result["reassessments"] == rea(5, 2, 2, 1, 0.4)
    # E1 3.5 d, E2 10 d, E3 unanswered: median of 3.5 and 10.
    assert result["escalations"] == {**esc(3, 1, 1, 1), "median_days_to_therapy": 6.75}
    assert result["deviations"] == {
        "total": 2,
        "by_reason": {"dose_above_recommended": 1, "dose_during_hold": 1},
    }
    assert result["by_unit"] == {
        "(none)": summary(rec(1, 0, 1, 0, 0.0), rea(0, 0, 0, 0, None), esc(1, 0, 1, 0)),
        "U-A": summary(rec(3, 1, 1, 1, 0.5), rea(3, 2, 1, 0, 0.6667), esc(1, 0, 0, 1)),
        "U-B": summary(rec(1, 1, 0, 0, 1.0), rea(2, 0, 1, 1, 0.0), esc(1, 1, 0, 0)),
    }
    # Months: of the decision, or of the due date for reassessments (S0 decided in December).
    assert result["by_month"] == {
        "2026-01": summary(rec(1, 1, 0, 0, 1.0), rea(2, 2, 0, 0, 1.0), esc(1, 0, 1, 0)),
        "2026-02": summary(rec(2, 1, 1, 0, 0.5), rea(2, 0, 2, 0, 0.0), esc(0, 0, 0, 0)),
        "2026-03": summary(rec(2, 0, 1, 1, 0.0), rea(1, 0, 0, 1, 0.0), esc(2, 1, 0, 1)),
    }
    patients = {p["patient_id"]: p for p in result["patients"]}
    assert [p["patient_id"] for p in result["patients"]] == ["P-A", "P-B", "P-C", "P-D"]
    assert {pid: p["units"] for pid, p in patients.items()} == {
        "P-A": ["U-A"],
        "P-B": ["U-B"],
        "P-C": ["(none)"],
        "P-D": ["U-A"],
    }
    assert {pid: summary(*(p[k] for k in ("recommendations", "reassessments", "escalations")))
            for pid, p in patients.items()} == {
        "P-A": summary(rec(2, 1, 1, 0, 0.5), rea(2, 1, 1, 0, 0.5), esc(0, 0, 0, 0)),
        "P-B": summary(rec(1, 1, 0, 0, 1.0), rea(2, 0, 1, 1, 0.0), esc(1, 1, 0, 0)),
        "P-C": summary(rec(1, 0, 1, 0, 0.0), rea(0, 0, 0, 0, None), esc(1, 0, 1, 0)),
        "P-D": summary(rec(1, 0, 0, 1, None), rea(1, 1, 0, 0, 1.0), esc(1, 0, 0, 1)),
    }  # fmt: skip
    # The drill-down: only what was not followed (deviated or pending), missed, unanswered.
    assert {pid: [(i["decision_id"], i["outcome"]) for i in p["items"]]
            for pid, p in patients.items()} == {
        "P-A": [("R2", "deviated")],
        "P-B": [("S4", "missed")],
        "P-C": [("H1", "deviated")],
        "P-D": [("D2", "pending"), ("E3", "unanswered")],
    }  # fmt: skip
    assert set(patients["P-A"]) == {
        "patient_id",
        "units",
        "recommendations",
        "reassessments",
        "escalations",
        "items",
    }
    assert patients["P-A"]["items"] == [
        {
            "kind": "recommendation",
            "decision_id": "R2",
            "patient_id": "P-A",
            "unit": "U-A",
            "action": "reduce_dose",
            "at": "2026-02-02T08:00:00Z",
            "due_at": None,
            "outcome": "deviated",
            "policy": None,
            "recommended_dose_mg_m2": 0.7,
            "evidence": {
                "event_id": "a-x2",
                "type": "administration",
                "at": "2026-02-03T08:00:00Z",
                "dose_mg_m2": 1.0,
                "dose_mg": None,
                "action": None,
            },
            "hours_to_action": 48.0,
            "days_to_therapy": None,
        }
    ]
    assert patients["P-B"]["items"][0]["due_at"] == "2026-03-15T08:00:00Z"
    assert patients["P-B"]["items"][0]["evidence"] is None
    json.dumps(result)  # JSON as it stands


def test_item_view_rounds_durations_and_names_the_evidence() -> None:
    item = audit_one(ESCALATE, [therapy("t", h(days=7, seconds=1))])
    view = item_view(item)
    assert (view["days_to_therapy"], view["hours_to_action"]) == (7.0, None)
    assert view["evidence"] == {
        "event_id": "t",
        "type": "immunotherapy",
        "at": "2026-03-09T08:00:01Z",
        "dose_mg_m2": None,
        "dose_mg": None,
        "action": None,
    }
    assert view["outcome"] == "answered_late"  # the rounding is for display only


def test_rates_with_zero_denominators_are_null() -> None:
    # Only pending recommendations: followed + deviated = 0; no reassessment due.
    report = AdherenceReport(WIDE, "default@1", with_alerts=False)
    report.add_patient("PT-1", [audit_one(DISCONTINUE, []), audit_one(HOLD, [])])
    result = report.result()
    assert result["recommendations"] == {
        **rec(2, 0, 0, 2, None),
        "median_hours_to_action": None,
        "by_action": {
            "reduce_dose": rec(0, 0, 0, 0, None),
            "hold": rec(1, 0, 0, 1, None),
            "discontinue": rec(1, 0, 0, 1, None),
        },
    }
    assert result["reassessments"] == rea(0, 0, 0, 0, None)
    assert result["escalations"]["median_days_to_therapy"] is None


# --- the period's boundaries ---------------------------------------------------------------------

START, END = utc(2026, 4, 1, 0), utc(2026, 4, 30, 0)
ONE_SECOND = dt.timedelta(seconds=1)


def test_period_boundaries_are_inclusive_at_both_ends() -> None:
    period = Period(START, END)
    events = [
        enrol("e", START - dt.timedelta(days=30)),
        assessed("a-before", START - ONE_SECOND),
        assessed("a-start", START),
        given("0-x-end", END, 0.7),  # the last event that counts (before a-end in order)
        assessed("a-end", END),
        assessed("a-after", END + ONE_SECOND),
        given("x-after", END + ONE_SECOND, 1.3),  # after `to`: ignored
    ]
    decisions = [
        decided("R-before", "reduce_dose", START - ONE_SECOND, "a-before", dose_mg_m2=1.0),
        decided("R-start", "reduce_dose", START, "a-start", dose_mg_m2=0.7),
        decided("R-end", "reduce_dose", END, "a-end", dose_mg_m2=0.7),
        decided("R-after", "reduce_dose", END + ONE_SECOND, "a-after", dose_mg_m2=0.7),
        # reassessments count by due date, wherever the decision is
        decided("S-due-before", "schedule_reassessment", START - dt.timedelta(days=30),
                "e", due_at=START - ONE_SECOND),
        decided("S-due-start", "schedule_reassessment", START - dt.timedelta(days=30),
                "e", due_at=START),
        decided("S-due-end", "schedule_reassessment", START, "a-start", due_at=END),
        decided("S-due-after", "schedule_reassessment", START, "a-start",
                due_at=END + ONE_SECOND),
        decided("A-start", "adherence_deviation", START, "a-start", reason="r-start"),
        decided("A-after", "adherence_deviation", END + ONE_SECOND, "x-after", reason="r-after"),
    ]  # fmt: skip
    items, deviations = audit_patient("PT-1", events, decisions, period, GRACE)
    assert [(i.decision_id, i.outcome, evidence_id(i)) for i in items] == [
        ("S-due-start", "on_time", "a-before"),
        ("R-start", "followed", "0-x-end"),  # the dose exactly at `to` counts
        ("S-due-end", "on_time", "a-end"),
        ("R-end", "pending", None),  # the dose a second after `to` does not
    ]
    assert [(d.decision_id, unit) for d, unit in deviations] == [("A-start", "U-A")]


def test_reassessment_months_are_due_months() -> None:
    period = Period(utc(2026, 1, 1, 0), utc(2026, 12, 31, 0))
    events = [enrol("e", utc(2026, 1, 5)), assessed("a", utc(2026, 1, 31, 23, 30))]
    decisions = [
        decided("R", "reduce_dose", utc(2026, 1, 31, 23, 30), "a", dose_mg_m2=1.0),
        decided("S", "schedule_reassessment", utc(2026, 1, 31, 23, 30), "a",
                due_at=utc(2026, 2, 21, 23, 30)),
    ]  # fmt: skip
    report = AdherenceReport(period, "default@1", with_alerts=False)
    report.add_patient("PT-1", *audit_patient("PT-1", events, decisions, period, GRACE))
    assert report.result()["by_month"] == {
        "2026-01": summary(rec(1, 0, 0, 1, None), rea(0, 0, 0, 0, None), esc(0, 0, 0, 0)),
        "2026-02": summary(rec(0, 0, 0, 0, None), rea(1, 0, 0, 1, 0.0), esc(0, 0, 0, 0)),
    }


# --- the unit filter -----------------------------------------------------------------------------


def test_unit_filter_keeps_the_unit_decisions_only() -> None:
    result = AdherenceReport(Period(Q1.start, Q1.end, "U-A"), "default@1", with_alerts=False)
    for patient_id, (events, decisions) in clinic().items():
        result.add_patient(
            patient_id, *audit_patient(patient_id, events, decisions, result.period, GRACE)
        )
    unit_a = result.result()
    everything = clinic_report()
    assert unit_a["unit"] == "U-A"
    # The same figures as the whole report's U-A row (P-A and P-D).
    assert (
        summary(
            {k: v for k, v in unit_a["recommendations"].items() if k in rec(0, 0, 0, 0, None)},
            unit_a["reassessments"],
            {k: v for k, v in unit_a["escalations"].items() if k != "median_days_to_therapy"},
        )
        == everything["by_unit"]["U-A"]
    )
    assert unit_a["recommendations"]["median_hours_to_action"] == 27.0  # R1 6 h, R2 48 h
    assert unit_a["escalations"]["median_days_to_therapy"] is None  # E3 unanswered
    assert list(unit_a["by_unit"]) == ["U-A"]
    assert [p["patient_id"] for p in unit_a["patients"]] == ["P-A", "P-D"]
    assert unit_a["deviations"] == {"total": 1, "by_reason": {"dose_above_recommended": 1}}


def test_unit_is_the_course_unit_when_a_patient_moves() -> None:
    events = [
        enrol("e1", utc(2026, 1, 1)),
        assessed("a1", utc(2026, 1, 15)),
        enrol("e2", utc(2026, 2, 1), "U-B"),
        assessed("a2", utc(2026, 2, 15)),
        given("x2", utc(2026, 2, 20), 1.3),
    ]
    decisions = [
        decided("R", "reduce_dose", utc(2026, 1, 15), "a1", dose_mg_m2=1.0),
        decided("D", "discontinue", utc(2026, 2, 15), "a2"),
    ]
    for unit, expected in [(None, {"R": "U-A", "D": "U-B"}), ("U-A", {"R": "U-A"}),
                           ("U-B", {"D": "U-B"}), ("U-C", {})]:  # fmt: skip
        period = Period(Q1.start, Q1.end, unit)
        items, _ = audit_patient("PT-1", events, decisions, period, GRACE)
        assert {i.decision_id: i.unit for i in items} == expected, unit
    # R's course ended at the second enrolment: its audit stops there (pending); the dose of
    # the second course deviates from D only.
    items, _ = audit_patient("PT-1", events, decisions, Q1, GRACE)
    assert [(i.decision_id, i.outcome) for i in items] == [("R", "pending"), ("D", "deviated")]


def test_unit_is_the_course_of_the_trigger_when_a_course_starts_at_the_same_instant() -> None:
    # An assessment, then (same instant, later in timeline order) the course ends and a new one
    # starts in U-B: the assessment's decision belongs to the first course (U-A).
    events = [*BASE, ended("b-end", h()), enrol("c-enrol", h(), "U-B")]
    decisions = [
        decided("R", "reduce_dose", h(), "a0", dose_mg_m2=1.0),
        decided("S", "schedule_reassessment", h(), "c-enrol", due_at=h(days=21)),
    ]
    items, _ = audit_patient("PT-1", events, decisions, WIDE, GRACE)
    assert {i.decision_id: i.unit for i in items} == {"R": "U-A", "S": "U-B"}
    only_b, _ = audit_patient("PT-1", events, decisions, Period(WIDE.start, WIDE.end, "U-B"), GRACE)
    assert [i.decision_id for i in only_b] == ["S"]


# --- an empty period -----------------------------------------------------------------------------


def test_an_empty_period_gives_zeros_nulls_and_no_rows() -> None:
    period = Period(utc(2027, 1, 1, 0), utc(2027, 1, 31, 0))
    report = AdherenceReport(period, "default@1")
    for patient_id, (events, decisions) in clinic().items():
        report.add_patient(patient_id, *audit_patient(patient_id, events, decisions, period, GRACE))
    no_alerts = {"total": 0, "acknowledged": 0, "median_minutes_to_ack": None,
                 "p90_minutes_to_ack": None}  # fmt: skip
    assert report.result() == {
        "period": {"from": "2027-01-01T00:00:00Z", "to": "2027-01-31T00:00:00Z"},
        "unit": None,
        "policy": "default@1",
        "policies": {},
        "recommendations": {
            **rec(0, 0, 0, 0, None),
            "median_hours_to_action": None,
            "by_action": {a: rec(0, 0, 0, 0, None) for a in ("reduce_dose", "hold", "discontinue")},
        },
        "reassessments": rea(0, 0, 0, 0, None),
        "escalations": {**esc(0, 0, 0, 0), "median_days_to_therapy": None},
        "alerts": {
            "total": 0,
            "acknowledged": 0,
            "by_severity": {s: no_alerts for s in ("urgent", "warning", "info")},
            "urgent_acknowledged_within_target": {
                "target_minutes": 60.0,
                "count": 0,
                "share": None,
            },
            "burden": {
                "patient_weeks": 0.0,
                "per_patient_week": None,
                "by_severity": {"urgent": None, "warning": None, "info": None},
            },
        },
        "patient_reports": {
            "weekly_reports": {"expected": 0, "reported": 0, "missed": 0, "completion_rate": None},
            "reviews": {"total": 0, "patient_weeks": 0.0, "per_patient_week": None},
            "acknowledgement": {
                "acknowledged": 0,
                "unacknowledged": 0,
                "median_hours_to_ack": None,
                "p90_hours_to_ack": None,
            },
            "immunotherapy_response": {
                "responses": 0,
                "non_responses": 0,
                "checks_not_done": 0,
                "without_baseline": 0,
            },
        },
        "deviations": {"total": 0, "by_reason": {}},
        "by_unit": {},
        "by_month": {},
        "patients": [],
    }


# --- alerts (pure) -------------------------------------------------------------------------------


def test_alert_section_figures() -> None:
    report = AdherenceReport(WIDE, "default@1", ack_target_minutes=60)
    created = h()
    for minutes in (20, 60, 61, 120, None):  # urgent: 60 is within the target (inclusive)
        acked = None if minutes is None else created + dt.timedelta(minutes=minutes)
        report.add_alert("urgent", created, acked)
    report.add_alert("warning", created, created + dt.timedelta(minutes=10))
    report.add_alert("info", created, None)
    alerts = report.result()["alerts"]
    # urgent minutes 20, 60, 61, 120: median (60 + 61) / 2; p90 (inclusive) at position
    # 0.9 * 3 = 2.7 of the sorted four: 61 + 0.7 * (120 - 61) = 102.3.
    assert alerts == {
        "total": 7,
        "acknowledged": 5,
        "by_severity": {
            "urgent": {"total": 5, "acknowledged": 4, "median_minutes_to_ack": 60.5,
                       "p90_minutes_to_ack": 102.3},
            "warning": {"total": 1, "acknowledged": 1, "median_minutes_to_ack": 10.0,
                        "p90_minutes_to_ack": 10.0},
            "info": {"total": 1, "acknowledged": 0, "median_minutes_to_ack": None,
                     "p90_minutes_to_ack": None},
        },
        "urgent_acknowledged_within_target": {"target_minutes": 60, "count": 2, "share": 0.4},
        "burden": {"patient_weeks": 0.0, "per_patient_week": None,
                   "by_severity": {"urgent": None, "warning": None, "info": None}},
    }  # fmt: skip


# --- end to end: the real engine's decisions, by replay ------------------------------------------


def result_of(report: Any) -> dict[str, Any]:
    """`report_from_*` give the report (or, in an earlier form, its result)."""
    result: dict[str, Any] = report.result() if hasattr(report, "result") else report
    return result


def replayed(
    *bodies: dict[str, Any], period: Period, pack: PolicyPack = DEFAULT
) -> tuple[dict[str, Any], list[AuditItem]]:
    items: list[AuditItem] = []
    report = report_from_events(pack, f.events(*bodies), period, on_item=items.append)
    return result_of(report), items


E2E = Period(f.at(0), f.at(30))  # 5 Jan to 4 Feb 2026


def given_mg(at: dt.datetime, dose_mg: float, event_id: str, **fields: Any) -> dict[str, Any]:
    """PT-1's administration of `dose_mg` mg."""
    body = f.administration(at, 0, patient="PT-1", event_id=event_id, dose_mg=dose_mg, **fields)
    del body["dose_mg_m2"]
    return body


def course(*bodies: dict[str, Any], assessment: dict[str, Any]) -> list[dict[str, Any]]:
    """PT-1 enrolled at day 0 in unit U-A (1.3 mg/m2), assessed at day 21, then `bodies`."""
    return [
        f.enrollment(f.at(0), patient="PT-1", event_id="e0", unit="U-A"),
        f.assessment(f.at(21), patient="PT-1", event_id="a21", **assessment),
        *bodies,
    ]


def recommendation_items(items: list[AuditItem]) -> list[tuple[str, str, str | None, Any]]:
    return [
        (i.action, i.outcome, evidence_id(i), i.hours_to_action)
        for i in items
        if i.kind == "recommendation"
    ]


@pytest.mark.parametrize(
    ("after", "expected", "deviations"),
    [
        pytest.param([], ("pending", None, None), {}, id="nothing-yet"),
        pytest.param(
            [f.administration(f.at(22), 1.3, patient="PT-1", event_id="x22")],
            ("deviated", "x22", None),
            {"dose_above_recommended": 1},
            id="given-at-1.3",
        ),
        pytest.param(
            [f.administration(f.at(22), 1.0, patient="PT-1", event_id="x22")],
            ("followed", "x22", None),
            {},
            id="given-at-1.0",
        ),
        pytest.param(
            [f.administration(f.at(22), 1.05, patient="PT-1", event_id="x22")],
            ("followed", "x22", None),
            {},
            id="given-at-the-tolerance",
        ),
        pytest.param(
            [
                f.treatment_change(
                    f.at(21, hours=6), "dose_reduced", patient="PT-1", event_id="c", dose_mg_m2=1.0
                ),
                f.administration(f.at(22), 1.3, patient="PT-1", event_id="x22"),
            ],
            ("followed", "c", 6.0),
            {"dose_above_recommended": 1},  # the engine still flags the later dose
            id="dose-reduced-first",
        ),
        pytest.param(
            [given_mg(f.at(22), 2.0, "x22", bsa_m2=2.0)],
            ("followed", "x22", None),
            {},
            id="given-in-mg-at-1.0",
        ),
        pytest.param(
            [given_mg(f.at(22), 2.6, "x22", bsa_m2=2.0)],
            ("deviated", "x22", None),
            {"dose_above_recommended": 1},
            id="given-in-mg-at-1.3",
        ),
        pytest.param(
            [given_mg(f.at(22), 2.0, "x22")],
            ("pending", "x22", None),
            {},  # D6's review_required (dose_not_comparable) is not a deviation
            id="given-in-mg-without-a-bsa",
        ),
    ],
)
def test_end_to_end_reduce_dose(
    after: list[dict[str, Any]],
    expected: tuple[str, str | None, float | None],
    deviations: dict[str, int],
) -> None:
    # Sensory grade 2 at day 21: the engine reduces 1.3 -> 1.0.
    result, items = replayed(*course(*after, assessment={"sensory": 2}), period=E2E)
    assert recommendation_items(items) == [("reduce_dose", *expected)]
    [item] = [i for i in items if i.kind == "recommendation"]
    assert (item.recommended_dose_mg_m2, item.at, item.unit) == (1.0, f.at(21), "U-A")
    followed, deviated = int(expected[0] == "followed"), int(expected[0] == "deviated")
    rate = None if expected[0] == "pending" else float(followed)
    assert result["recommendations"]["by_action"]["reduce_dose"] == rec(
        1, followed, deviated, 1 - followed - deviated, rate
    )
    assert result["recommendations"]["median_hours_to_action"] == expected[2]
    assert result["deviations"] == {"total": sum(deviations.values()), "by_reason": deviations}
    assert result["alerts"] is None  # offline: no alert section
    assert result["policy"] == "default@1"


@pytest.mark.parametrize(
    ("after", "expected", "deviations"),
    [
        pytest.param([], ("pending", None, None), {}, id="nothing-yet"),
        pytest.param(
            [f.administration(f.at(22), 1.3, patient="PT-1", event_id="x22")],
            ("deviated", "x22", None),
            {"dose_during_hold": 1},
            id="dose-during-hold",
        ),
        pytest.param(
            [f.treatment_change(f.at(21, hours=2), "held", patient="PT-1", event_id="c")],
            ("followed", "c", 2.0),
            {},
            id="held-recorded",
        ),
        pytest.param(
            [
                f.assessment(f.at(28), patient="PT-1", event_id="a28", sensory=1),
                f.administration(f.at(29), 0.7, patient="PT-1", event_id="x29"),
            ],
            ("followed", None, None),
            {},
            id="resumed-then-dosed",
        ),
        pytest.param(
            [
                f.administration(f.at(28), 0.7, patient="PT-1", event_id="0x28"),
                f.assessment(f.at(28), patient="PT-1", event_id="a28", sensory=1),
            ],
            ("deviated", "0x28", None),
            {"dose_during_hold": 1},  # given at the resume's instant, but before it
            id="dosed-at-the-resume-instant-before-it",
        ),
    ],
)
def test_end_to_end_hold(
    after: list[dict[str, Any]],
    expected: tuple[str, str | None, float | None],
    deviations: dict[str, int],
) -> None:
    # Pack label: sensory 2 with pain at day 21 is a hold (L2); sensory 1 later resumes.
    bodies = course(*after, assessment={"sensory": 2, "pain": 1})
    result, items = replayed(*bodies, period=E2E, pack=LABEL)
    assert recommendation_items(items) == [("hold", *expected)]
    assert result["deviations"] == {"total": sum(deviations.values()), "by_reason": deviations}
    assert result["policy"] == "label@1"


@pytest.mark.parametrize(
    ("after", "expected", "deviations"),
    [
        pytest.param([], ("pending", None, None), {}, id="nothing-yet"),
        pytest.param(
            [f.treatment_change(f.at(21, hours=3), "discontinued", patient="PT-1", event_id="c")],
            ("followed", "c", 3.0),
            {},
            id="discontinued-recorded",
        ),
        pytest.param(
            [f.course_end(f.at(25), patient="PT-1", event_id="ce")],
            ("followed", "ce", 96.0),
            {},
            id="course-end",
        ),
        pytest.param(
            [f.administration(f.at(22), 1.0, patient="PT-1", event_id="x22")],
            ("deviated", "x22", None),
            {"dose_after_discontinuation": 1},
            id="dose-after",
        ),
    ],
)
def test_end_to_end_discontinue(
    after: list[dict[str, Any]],
    expected: tuple[str, str | None, float | None],
    deviations: dict[str, int],
) -> None:
    # Sensory grade 3 at day 21: the engine discontinues (D2).
    result, items = replayed(*course(*after, assessment={"sensory": 3}), period=E2E)
    assert recommendation_items(items) == [("discontinue", *expected)]
    assert result["deviations"] == {"total": sum(deviations.values()), "by_reason": deviations}


@pytest.mark.parametrize(
    ("answer", "expected", "days"),
    [
        pytest.param(f.at(35), "answered_within_7d", 7.0, id="exactly-7-days"),
        pytest.param(f.at(35, hours=1), "answered_late", 7.04, id="7-days-and-an-hour"),
        pytest.param(None, "unanswered", None, id="none"),
    ],
)
def test_end_to_end_escalation(
    answer: dt.datetime | None, expected: str, days: float | None
) -> None:
    # Discontinued at day 21 (grade 3), then motor 1 at day 28: higher motor than at the stop
    # escalates (D4).
    bodies = course(
        f.assessment(f.at(28), patient="PT-1", event_id="a28", sensory=3, motor=1),
        *([] if answer is None else [f.immunotherapy(answer, patient="PT-1", event_id="iv")]),
        assessment={"sensory": 3},
    )
    result, items = replayed(*bodies, period=Period(f.at(0), f.at(40)))
    [item] = [i for i in items if i.kind == "escalation"]
    assert (item.at, item.outcome) == (f.at(28), expected)
    assert result["escalations"] == {
        **esc(1, int(expected == "answered_within_7d"), int(expected == "answered_late"),
              int(expected == "unanswered")),
        "median_days_to_therapy": days,
    }  # fmt: skip
    drill_down = [(i["action"], i["outcome"]) for i in result["patients"][0]["items"]]
    assert (("escalate_immunotherapy", "unanswered") in drill_down) == (expected == "unanswered")


@pytest.mark.parametrize(
    ("assessed_at", "grace_days", "expected"),
    [
        (f.at(23), 2, "on_time"),  # exactly due (day 21) + 2 days
        (f.at(23, hours=1), 2, "late"),
        (f.at(21, hours=1), 0, "late"),  # a pack with no grace
        (f.at(21), 0, "on_time"),
        (None, 2, "missed"),
    ],
)
def test_end_to_end_reassessment_grace_comes_from_the_pack(
    assessed_at: dt.datetime | None, grace_days: int, expected: str
) -> None:
    pack = DEFAULT
    if grace_days != 2:
        pack = pack_from_mapping({"base": "default", "name": "tight", "overdue_grace_days": 0})
    bodies = [f.enrollment(f.at(0), patient="PT-1", event_id="e0", unit="U-A")]
    if assessed_at is not None:
        bodies.append(f.assessment(assessed_at, patient="PT-1", event_id="b", sensory=0))
    # The enrolment's reassessment is due at day 1 of cycle 2 (day 21); the period ends before
    # the next one (due 21 days after the assessment).
    result, items = replayed(*bodies, period=Period(f.at(0), f.at(30)), pack=pack)
    [item] = [i for i in items if i.kind == "reassessment"]
    assert (item.due_at, item.outcome) == (f.at(21), expected)
    assert result["reassessments"] == rea(
        1, int(expected == "on_time"), int(expected == "late"), int(expected == "missed"),
        1.0 if expected == "on_time" else 0.0,
    )  # fmt: skip


def test_end_to_end_months_are_utc_months() -> None:
    # An assessment at 00:30 on 1 February, local time +01:00, is 31 January in UTC.
    cet = dt.timezone(dt.timedelta(hours=1))
    bodies = [
        f.enrollment(dt.datetime(2026, 1, 11, 9, 0, tzinfo=cet), patient="PT-1", event_id="e"),
        f.assessment(dt.datetime(2026, 2, 1, 0, 30, tzinfo=cet), patient="PT-1", event_id="a",
                     sensory=2),
    ]  # fmt: skip
    result, _ = replayed(*bodies, period=Period(utc(2026, 1, 1, 0), utc(2026, 3, 31, 0)))
    # January: the reduction (pending). February: the enrolment's reassessment (due 1 Feb
    # 08:00 UTC, done 31 Jan: on time) and the assessment's (due 21 Feb 23:30: missed).
    assert result["by_month"] == {
        "2026-01": summary(rec(1, 0, 0, 1, None), rea(0, 0, 0, 0, None), esc(0, 0, 0, 0)),
        "2026-02": summary(rec(0, 0, 0, 0, None), rea(2, 1, 0, 1, 0.5), esc(0, 0, 0, 0)),
    }
    assert result["by_unit"] == {"(none)": result["by_month"]["2026-01"] | {
        "reassessments": rea(2, 1, 0, 1, 0.5)}}  # fmt: skip


# --- late events supersede decisions -------------------------------------------------------------

LATE_PERIOD = Period(f.at(0), f.at(60))


def timely() -> list[dict[str, Any]]:
    """PT-1 (U-A): a dose of 1.3 at day 15, grade 2 at day 21 (reduce to 1.0), 1.0 at day 28."""
    return [
        f.enrollment(f.at(0), patient="PT-1", event_id="e0", unit="U-A"),
        f.administration(f.at(15), 1.3, patient="PT-1", event_id="x15"),
        f.assessment(f.at(21), patient="PT-1", event_id="a21", sensory=2),
        f.administration(f.at(28), 1.0, patient="PT-1", event_id="x28"),
    ]


# Arrives last, dated day 14: grade 2 already then, so the reduction moves to day 14 (and the
# dose at day 15 deviates); the day-21 grade is stable: its reduction is no longer supported.
LATE = f.assessment(f.at(14), patient="PT-1", event_id="a14", sensory=2)


def test_a_late_event_changes_what_is_counted() -> None:
    before, before_items = replayed(*timely(), period=LATE_PERIOD)
    after, after_items = replayed(*timely(), LATE, period=LATE_PERIOD)
    assert [(i.at, i.outcome, evidence_id(i)) for i in before_items
            if i.kind == "recommendation"] == [(f.at(21), "followed", "x28")]  # fmt: skip
    assert [(i.at, i.outcome, evidence_id(i)) for i in after_items
            if i.kind == "recommendation"] == [(f.at(14), "deviated", "x15")]  # fmt: skip
    superseded = {i.decision_id for i in before_items if i.kind == "recommendation"}
    assert superseded.isdisjoint(i.decision_id for i in after_items)
    assert before["recommendations"]["by_action"]["reduce_dose"] == rec(1, 1, 0, 0, 1.0)
    assert after["recommendations"]["by_action"]["reduce_dose"] == rec(1, 0, 1, 0, 0.0)
    assert before["deviations"]["total"] == 0
    assert after["deviations"] == {"total": 1, "by_reason": {"dose_above_recommended": 1}}
    # Reassessments: the enrolment's (due day 21) done by a21 (or a14); a21's (due day 42)
    # missed; with the late event, a14's (due day 35) done by a21.
    assert before["reassessments"] == rea(2, 1, 0, 1, 0.5)
    assert after["reassessments"] == rea(3, 2, 0, 1, 0.6667)


# --- the database form ---------------------------------------------------------------------------


def post(api: Api, worker: InProcessWorker, *bodies: dict[str, Any]) -> None:
    response = api.post_events({"events": list(bodies)})
    assert response.status_code == 202, response.text
    assert worker.wait_idle()


def from_database(services: Services, period: Period) -> tuple[dict[str, Any], list[AuditItem]]:
    items: list[AuditItem] = []
    report = report_from_database(services, period, on_item=items.append)
    return result_of(report), items


def without_alerts(result: dict[str, Any]) -> dict[str, Any]:
    """The report but its database-only parts: alerts, CDS Hooks cards, and the patient
    reports' review acknowledgements."""
    kept = {k: v for k, v in result.items() if k not in ("alerts", "cds")}
    return kept | {"patient_reports": {**result["patient_reports"], "acknowledgement": None}}


def test_database_excludes_decisions_superseded_by_a_late_event(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    post(api, worker, *timely())
    _, first_items = from_database(services, LATE_PERIOD)
    [reduction] = [i for i in first_items if i.kind == "recommendation"]
    assert (reduction.at, reduction.outcome) == (f.at(21), "followed")
    post(api, worker, LATE)
    stored = rows(
        services,
        "SELECT decision_id, superseded_at FROM decision WHERE action = 'reduce_dose'",
    )
    superseded = {r["decision_id"] for r in stored if r["superseded_at"] is not None}
    [current] = [r["decision_id"] for r in stored if r["superseded_at"] is None]
    assert superseded == {reduction.decision_id}  # still stored, no longer current
    result, items = from_database(services, LATE_PERIOD)
    audited = {i.decision_id for i in items}
    assert reduction.decision_id not in audited
    assert current in audited
    assert result["recommendations"]["by_action"]["reduce_dose"] == rec(1, 0, 1, 0, 0.0)
    assert result["deviations"] == {"total": 1, "by_reason": {"dose_above_recommended": 1}}
    assert result["reassessments"] == rea(3, 2, 0, 1, 0.6667)
    # The same as the offline form over all the events, but for the alerts.
    offline, _ = replayed(*timely(), LATE, period=LATE_PERIOD)
    assert without_alerts(result) == without_alerts(offline)
    assert result["alerts"] is not None


def test_database_equals_replay_for_doses_in_mg(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    """Doses in mg read from the stored bodies as replay reads them: at the enrolment's BSA
    (Mosteller's), at the administration's own, and not comparable."""
    mosteller = f.enrollment(f.at(0), patient="PT-M", event_id="m-e0", unit="U-A",
                             height_cm=170, weight_kg=70)  # fmt: skip
    bodies = [
        mosteller,
        f.assessment(f.at(21), patient="PT-M", event_id="m-a21", sensory=2),
        {**given_mg(f.at(22), 2.36, "m-x22"), "patient_id": "PT-M"},  # 1.298: above 1.05
        *course(given_mg(f.at(22), 2.0, "x22"), assessment={"sensory": 2}),
        f.enrollment(f.at(0), patient="PT-B", event_id="b-e0", unit="U-B"),
        f.assessment(f.at(21), patient="PT-B", event_id="b-a21", sensory=2),
        {**given_mg(f.at(22), 2.0, "b-x22", bsa_m2=2.0), "patient_id": "PT-B"},
    ]
    post(api, worker, *bodies)
    database, items = from_database(services, E2E)
    offline, _ = replayed(*bodies, period=E2E)
    assert without_alerts(database) == without_alerts(offline)
    assert {i.patient_id: (i.outcome, i.evidence and i.evidence.dose_mg_m2) for i in items
            if i.kind == "recommendation"} == {
        "PT-M": ("deviated", 2.36 / math.sqrt(170 * 70 / 3600)),
        "PT-1": ("pending", None),
        "PT-B": ("followed", 1.0),
    }  # fmt: skip


def days_ago(days: float) -> dt.datetime:
    return FIXED_NOW - dt.timedelta(days=days)


def discontinued(patient: str, unit: str) -> list[dict[str, Any]]:
    """Grade 3 three days ago: an urgent `discontinue` alert (and info ones)."""
    return [
        f.enrollment(days_ago(10), patient=patient, event_id=f"{patient}-e", unit=unit),
        f.assessment(days_ago(3), patient=patient, event_id=f"{patient}-a", sensory=3),
    ]


def test_database_alert_section_ack_times_by_severity_and_unit(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    # Urgent discontinuations: PT-1, PT-4 (U-A), PT-2, PT-5 (U-B); PT-3 (U-A) grade 2: a
    # warning reduction. Every alert is created at the service clock (FIXED_NOW).
    post(
        api,
        worker,
        *discontinued("PT-1", "U-A"),
        *discontinued("PT-2", "U-B"),
        f.enrollment(days_ago(10), patient="PT-3", event_id="PT-3-e", unit="U-A"),
        f.assessment(days_ago(3), patient="PT-3", event_id="PT-3-a", sensory=2),
        *discontinued("PT-4", "U-A"),
        *discontinued("PT-5", "U-B"),
    )
    listed = api.get("/v1/alerts", role="admin", limit="500").json()["alerts"]
    alert = {(a["patient_id"], a["action"]): a for a in listed}
    assert {a["created_at"] for a in listed} == {"2026-10-01T12:00:00Z"}
    # Acknowledged later (the clock moves on; each ack says when it happened).
    services.settings = services.settings.model_copy(
        update={"fixed_now": FIXED_NOW + dt.timedelta(days=1)}
    )
    acks = {
        ("PT-1", "discontinue"): 20,
        ("PT-4", "discontinue"): 60,  # exactly the 60-minute target: within
        ("PT-2", "discontinue"): 120,
        ("PT-3", "reduce_dose"): 10,
        ("PT-1", "coasting_watch_started"): 5,
    }
    for key, minutes in acks.items():
        moment = FIXED_NOW + dt.timedelta(minutes=minutes)
        response = api.client.post(
            f"/v1/alerts/{alert[key]['id']}/ack",
            headers=api.headers("admin"),
            json={"at": moment.isoformat()},
        )
        assert response.status_code == 200, response.text
    info = {u: sum(1 for a in listed if a["severity"] == "info" and a["unit"] == u)
            for u in ("U-A", "U-B")}  # fmt: skip
    # Per discontinuation: the enrolment's and the watch's reassessments and the watch start
    # (3 info alerts); the reduction: 2 reassessments.
    assert info == {"U-A": 3 + 3 + 2, "U-B": 3 + 3}
    period = Period(FIXED_NOW - dt.timedelta(days=30), FIXED_NOW)

    def sev(total: int, acked: int, median: float | None, p90: float | None) -> dict[str, Any]:
        return {"total": total, "acknowledged": acked, "median_minutes_to_ack": median,
                "p90_minutes_to_ack": p90}  # fmt: skip

    whole, _ = from_database(services, period)
    # urgent 20, 60, 120 (and one not acknowledged): median 60; p90 at position 1.8 of the
    # sorted three: 60 + 0.8 * 60 = 108. Within 60 min: 2 of the 4 urgent alerts.
    assert whole["alerts"] == {
        "total": 19,
        "acknowledged": 5,
        "by_severity": {
            "urgent": sev(4, 3, 60.0, 108.0),
            "warning": sev(1, 1, 10.0, 10.0),
            "info": sev(14, 1, 5.0, 5.0),
        },
        "urgent_acknowledged_within_target": {"target_minutes": 60.0, "count": 2, "share": 0.5},
        # five patients, each monitored the 10 days from its enrolment to the period's end
        "burden": {
            "patient_weeks": 7.14,
            "per_patient_week": 2.66,  # 19 / (50 / 7)
            "by_severity": {"urgent": 0.56, "warning": 0.14, "info": 1.96},
        },
    }
    # Five recommendations, none acted on: the courses have no administrations (pending).
    assert whole["recommendations"]["by_action"] == {
        "reduce_dose": rec(1, 0, 0, 1, None),
        "hold": rec(0, 0, 0, 0, None),
        "discontinue": rec(4, 0, 0, 4, None),
    }
    unit_a, items = from_database(services, Period(period.start, period.end, "U-A"))
    # U-A urgent 20, 60: median 40, p90 20 + 0.9 * 40 = 56.
    assert unit_a["alerts"] == {
        "total": 11,
        "acknowledged": 4,
        "by_severity": {
            "urgent": sev(2, 2, 40.0, 56.0),
            "warning": sev(1, 1, 10.0, 10.0),
            "info": sev(8, 1, 5.0, 5.0),
        },
        "urgent_acknowledged_within_target": {"target_minutes": 60.0, "count": 2, "share": 1.0},
        # the unit's three patients only: 30 days
        "burden": {
            "patient_weeks": 4.29,
            "per_patient_week": 2.567,  # 11 / (30 / 7)
            "by_severity": {"urgent": 0.467, "warning": 0.233, "info": 1.867},
        },
    }
    assert {i.patient_id for i in items} == {"PT-1", "PT-3", "PT-4"}
    assert unit_a["recommendations"]["total"] == 3
    unit_b, _ = from_database(services, Period(period.start, period.end, "U-B"))
    assert unit_b["alerts"]["by_severity"]["urgent"] == sev(2, 1, 120.0, 120.0)
    assert unit_b["alerts"]["by_severity"]["warning"] == sev(0, 0, None, None)
    assert unit_b["alerts"]["urgent_acknowledged_within_target"]["share"] == 0.0
    # Alerts count by creation time: a period ending a second before it has none.
    earlier, _ = from_database(services, Period(period.start, FIXED_NOW - dt.timedelta(seconds=1)))
    assert (earlier["alerts"]["total"], earlier["recommendations"]["total"]) == (0, 5)


def test_database_report_keys_and_empty_period(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    post(api, worker, *discontinued("PT-1", "U-A"))
    result, _ = from_database(services, Period(utc(2025, 1, 1, 0), utc(2025, 12, 31, 0)))
    assert set(result) == TOP_KEYS | {"cds"}  # the CDS Hooks section: database reports only
    assert set(result["recommendations"]) == {
        "total", "followed", "deviated", "pending", "rate", "median_hours_to_action", "by_action"
    }  # fmt: skip
    assert set(result["reassessments"]) == {"due", "on_time", "late", "missed", "rate"}
    assert set(result["escalations"]) == {
        "total", "answered_within_7d", "answered_late", "unanswered", "median_days_to_therapy"
    }  # fmt: skip
    assert set(result["deviations"]) == {"total", "by_reason"}
    assert set(result["alerts"]) == {
        "total", "acknowledged", "by_severity", "urgent_acknowledged_within_target", "burden"
    }  # fmt: skip
    assert (result["patients"], result["by_month"], result["by_unit"]) == ([], {}, {})
    assert result["recommendations"]["total"] == 0
    assert result["recommendations"]["rate"] is None
    assert result["reassessments"]["rate"] is None
    assert result["alerts"]["total"] == 0


# --- the database equals the replay for the example timeline -------------------------------------


def example_bodies() -> list[dict[str, Any]]:
    lines = (ROOT / "examples" / "timeline.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.mark.parametrize(
    "period",
    [
        Period(utc(2026, 1, 1, 0), utc(2026, 7, 1, 0)),
        Period(utc(2026, 1, 1, 0), utc(2026, 4, 28, 7, 0)),  # mid-timeline
        Period(utc(2026, 3, 1, 0), utc(2026, 6, 1, 0), "onc-b"),
    ],
    ids=["whole", "until-28-april", "onc-b-spring"],
)
def test_database_equals_replay_for_the_example_timeline(
    api: Api, services: Services, worker: InProcessWorker, period: Period
) -> None:
    bodies = example_bodies()
    post(api, worker, *bodies)
    assert services.settings.now() > max(parse_event(b).occurred_at for b in bodies)
    database, _ = from_database(services, period)
    offline, _ = replayed(*bodies, period=period)
    assert without_alerts(database) == without_alerts(offline)
    assert database["recommendations"]["total"] > 0
    assert database["reassessments"]["due"] > 0
