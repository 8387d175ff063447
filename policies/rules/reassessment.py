"""D5: one pending reassessment at a time; overdue after its grace period; and (V5, when the
pack sets `missed_escalate_days`) a review when it is still not done that many days later."""

from __future__ import annotations

import datetime as dt

from policies.decisions import utc_minute
from policies.fold import Fold
from policies.packs import PolicyPack
from policies.rules import sources
from policies.state import Course, PendingReassessment

DAY = dt.timedelta(days=1)


def schedule_reassessment(
    fold: Fold,
    course: Course,
    *,
    due_at: dt.datetime,
    trigger: str,
    at: dt.datetime,
    rule: str,
    why: str,
) -> None:
    """Replace the pending reassessment by one due at `due_at` and say so."""
    course.pending = PendingReassessment(due_at=due_at, trigger=trigger)
    fold.emit(
        "schedule_reassessment",
        rule=rule,
        trigger=trigger,
        at=at,
        due_at=due_at,
        rationale=f"Next neuropathy reassessment due {utc_minute(due_at)}: {why}.",
        sources=sources.D5,
    )


def next_cycle_due(course: Course, at: dt.datetime, cycle: int | None) -> dt.datetime:
    """On treatment: day 1 of the next cycle (from the course start when the cycle is known).

    A cycle number that would put the next cycle at or before the assessment itself (a late or
    mistyped cycle) falls back to the assessment time plus one cycle length, so the due time is
    never in the past.
    """
    length = course.cycle_length_days * DAY
    if cycle is not None:
        due = course.started_at + cycle * length
        if due > at:
            return due
    return at + length


def overdue_at(pack: PolicyPack, course: Course) -> dt.datetime | None:
    if course.pending is None:
        return None
    return course.pending.due_at + pack.overdue_grace_days * DAY


def d5_reassessment_overdue(fold: Fold, course: Course, at: dt.datetime) -> None:
    """The pending reassessment was not done by due + grace: one overdue, nothing rescheduled."""
    pending = course.pending
    assert pending is not None
    course.pending = None
    course.overdue = pending
    course.missed_fired = False  # a new overdue reassessment: its own V5 timer
    fold.emit(
        "reassessment_overdue",
        rule="D5",
        trigger="timer:reassessment_overdue",
        at=at,
        due_at=pending.due_at,
        rationale=(
            f"The neuropathy reassessment due {utc_minute(pending.due_at)} was not "
            f"recorded within the {fold.pack.overdue_grace_days}-day grace period: "
            "grade the patient before the next dose."
        ),
        sources=sources.D5,
    )


def missed_at(pack: PolicyPack, course: Course) -> dt.datetime | None:
    """V5: due + grace + `missed_escalate_days` of the overdue reassessment, once; None when the
    pack does not escalate (version 1) or an assessment has made it up."""
    days = pack.missed_escalate_days
    if days is None or course.overdue is None or course.missed_fired:
        return None
    return course.overdue.due_at + (pack.overdue_grace_days + days) * DAY


def d5_reassessment_missed(fold: Fold, course: Course, at: dt.datetime) -> None:
    """V5: still not graded `missed_escalate_days` after the overdue: the patient may be lost to
    follow-up, so a physician and the nurse review (urgent), once per due reassessment."""
    overdue = course.overdue
    assert overdue is not None
    course.missed_fired = True
    fold.emit(
        "review_required",
        rule="D5",
        trigger="timer:reassessment_missed",
        at=at,
        reason="reassessment_missed",
        severity="urgent",
        audience=("physician", "nurse"),
        rationale=(
            f"The neuropathy reassessment due {utc_minute(overdue.due_at)} is still not "
            f"recorded {fold.pack.missed_escalate_days} days after it became overdue: the "
            "patient may be lost to follow-up; contact the patient and arrange the grading."
        ),
        sources=sources.D5,
    )
