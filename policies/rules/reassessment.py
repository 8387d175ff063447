"""D5: one pending reassessment at a time; overdue after its grace period."""

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
