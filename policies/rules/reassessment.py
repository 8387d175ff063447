"""D5: one pending reassessment at a time; overdue after its grace period; V3, the cycle calendar
of the day-1 doses; V5 (when the pack sets `missed_escalate_days`), a review when it is still not
done that many days after its overdue."""

from __future__ import annotations

import datetime as dt

from policies.decisions import utc_minute
from policies.events import Administration
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
    scheduled_at: dt.datetime | None = None,
) -> None:
    """Replace the pending reassessment by one due at `due_at` and say so. `scheduled_at`: the
    time of its scheduling event (default `at`; V3 keeps it when a dose moves the due time)."""
    course.pending = PendingReassessment(
        due_at=due_at, trigger=trigger, scheduled_at=scheduled_at or at
    )
    fold.emit(
        "schedule_reassessment",
        rule=rule,
        trigger=trigger,
        at=at,
        due_at=due_at,
        rationale=f"Next neuropathy reassessment due {utc_minute(due_at)}: {why}.",
        sources=sources.D5,
    )


def next_cycle_due(
    pack: PolicyPack, course: Course, at: dt.datetime, cycle: int | None
) -> dt.datetime:
    """Day 1 of the next cycle for an assessment at `at` (not stopped).

    With `cycle_anchor` = `day1_dose` and on treatment (V3): the next planned start of the
    dose calendar. Otherwise (version 1, and while held): from the course start when the cycle
    is known; a cycle number that would put the next cycle at or before the assessment itself
    (a late or mistyped cycle) falls back to the assessment time plus one cycle length, so the
    due time is never in the past.
    """
    if pack.cycle_anchor == "day1_dose" and course.on_treatment:
        return next_planned_start(pack, course, at)
    length = course.cycle_length_days * DAY
    if cycle is not None:
        due = course.started_at + cycle * length
        if due > at:
            return due
    return at + length


def next_planned_start(pack: PolicyPack, course: Course, after: dt.datetime) -> dt.datetime:
    """V3: the first planned start (anchor + k x cycle length, k >= 1) more than
    `pre_cycle_window_days` after `after`: a grading that close before a start is that cycle's
    pre-cycle grading, so its next reassessment is the start after."""
    length = course.cycle_length_days * DAY
    past = after + pack.pre_cycle_window_days * DAY - course.cycle_anchor
    return course.cycle_anchor + max(1, past // length + 1) * length


def d5_cycle_started(fold: Fold, course: Course, event: Administration) -> None:
    """V3: a day-1 dose given on treatment starts a cycle and anchors the calendar there.

    A pending reassessment (not yet overdue) then moves to the calendar's first planned start
    more than the pre-cycle window after its scheduling assessment, when that moves it by more
    than a day (a dose at another hour of the planned day changes nothing): a delayed cycle
    gives no false overdue. A pending grading due by the dose, or within the pre-cycle window
    after it, was that cycle's own: it stays, and goes overdue if it is not done (a dose given
    without its pre-cycle grading must not hide the missing grading).
    """
    if fold.pack.cycle_anchor != "day1_dose" or event.day != 1 or not course.on_treatment:
        return
    course.day1_dose_at = at = event.occurred_at
    pending = course.pending
    if pending is None or pending.due_at <= at + fold.pack.pre_cycle_window_days * DAY:
        # that grading was this cycle's pre-cycle grading: a dose given without it does not
        # push it a cycle on (it goes overdue as it would have)
        return
    due = next_planned_start(fold.pack, course, pending.scheduled_at)
    if abs(due - pending.due_at) <= DAY:
        return
    schedule_reassessment(
        fold,
        course,
        due_at=due,
        trigger=event.event_id,
        at=at,
        rule="D5",
        why=f"the day-1 dose of {utc_minute(at)} started a cycle, so before the next one",
        scheduled_at=pending.scheduled_at,
    )


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
