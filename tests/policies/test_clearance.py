"""Clearance for the infusion chair, from the stored course state (monitor.app.clearance)."""

from __future__ import annotations

import datetime as dt

import pytest

from monitor.processing.service import course_summary
from policies import DEFAULT, evaluate_patient
from policies.clearance import clearance
from tests.common.factories import (
    administration,
    assessment,
    at,
    enrollment,
    events,
    treatment_change,
)

NOW = dt.datetime(2026, 2, 1, 12, 0, tzinfo=dt.UTC)


def state_after(*bodies: dict[str, object], now: dt.datetime = NOW) -> dict[str, object]:
    outcome = evaluate_patient(DEFAULT, "P1", events(*bodies), now)
    return course_summary(outcome.state, None)


def test_active_course_with_reassessment_ahead_is_cleared_at_the_recommended_dose() -> None:
    state = state_after(
        enrollment(at(0)), assessment(at(21), sensory=1, cycle=2), now=at(22)
    )  # D1 reduced 1.3 -> 1.0 weekly SC; next due day 42
    result = clearance(state, 0, at(22))
    assert result == {
        "cleared": True,
        "dose_mg_m2": 1.0,
        "schedule": "weekly",
        "route": "SC",
        "status": "active",
        "reasons": ["active course, no pending reassessment or hold"],
    }


def test_reassessment_due_blocks_until_graded() -> None:
    state = state_after(enrollment(at(0)), now=at(21, hours=1))  # due day 21, not yet overdue
    result = clearance(state, 0, at(21, hours=1))
    assert result["cleared"] is False
    assert result["dose_mg_m2"] is None
    assert result["reasons"] == [
        "neuropathy reassessment due 2026-01-26T09:00:00Z has not been recorded: grade first"
    ]


def test_overdue_reassessment_blocks_even_though_nothing_is_pending_any_more() -> None:
    state = state_after(enrollment(at(0)), now=at(30))  # overdue fired at day 23
    assert state["next_reassessment_due"] is None
    assert state["reassessment_overdue_since"] == "2026-01-26T09:00:00Z"
    assert clearance(state, 0, at(30))["cleared"] is False
    graded = state_after(enrollment(at(0)), assessment(at(30), sensory=0), now=at(30))
    assert graded["reassessment_overdue_since"] is None
    assert clearance(graded, 0, at(30))["cleared"] is True


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ("held", "held", "bortezomib is on hold"),
        ("discontinued", "discontinued", "bortezomib was discontinued"),
        ("completed", "completed", "bortezomib was completed"),
    ],
)
def test_hold_or_stop_is_not_cleared(change: str, status: str, reason: str) -> None:
    state = state_after(
        enrollment(at(0)), assessment(at(1)), treatment_change(at(2), change), now=at(3)
    )
    result = clearance(state, 0, at(3))
    assert (result["cleared"], result["status"], result["reasons"][0]) == (False, status, reason)


def test_no_course_and_pending_events_are_both_reasons() -> None:
    state = state_after(administration(at(1), 1.3), now=at(2))
    result = clearance(state, 2, at(2))
    assert result["cleared"] is False
    assert result["reasons"] == [
        "no active bortezomib course on record",
        "2 recent event(s) still being processed: retry shortly",
    ]


def test_the_dose_in_mg_when_the_body_surface_area_is_known() -> None:
    """Issue 13, item 4: with the enrolment's BSA the chair gets the dose in mg too."""
    state = {"status": "active", "dose_mg_m2": 1.3, "schedule": "weekly", "route": "SC",
             "bsa_m2": 1.8333}  # fmt: skip
    result = clearance(state, 0, at(1))
    assert (result["cleared"], result["bsa_m2"], result["dose_mg"]) == (True, 1.83, 2.38)
    held = clearance({**state, "status": "held"}, 0, at(1))
    assert (held["cleared"], held["dose_mg"]) == (False, None)
    assert "dose_mg" not in clearance({**state, "bsa_m2": None}, 0, at(1))


@pytest.mark.parametrize(
    ("hours_after", "cleared"),
    [(0, False), (1.5 / 3600, False), (71.99, False), (72, True), (96, True)],
    ids=["at-once", "1.5-s-later", "just-short", "at-72-h", "after"],
)
def test_version_1_is_never_cleared_for_a_second_dose_inside_72_h(
    hours_after: float, cleared: bool
) -> None:
    """Version 1 has no interval rule (DEFAULT is default@1); the chair still waits the label's
    72 h after a dose (issue 14: "cleared" again 1.5 s after a dose was recorded)."""
    given = at(22)
    state = state_after(
        enrollment(at(0)), assessment(at(21), sensory=0, cycle=2), administration(given, 1.3),
        now=given,
    )  # fmt: skip
    assert state["next_dose_not_before"] is None  # no interval of its own
    result = clearance(state, 0, given + dt.timedelta(hours=hours_after))
    assert result["cleared"] is cleared
    if not cleared:
        assert result["reasons"] == [
            "the last dose was given 2026-01-27T09:00:00Z, less than 72 h ago: the minimum "
            "interval between doses ends 2026-01-30T09:00:00Z"
        ]
