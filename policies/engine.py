"""`evaluate(pack, events, until) -> decisions`: a fold over each patient's time-ordered events.

Pure: no I/O, no clock, no database. The same function serves `replay`, the workers and the
tests. Events are sorted by (`occurred_at`, `event_id`); the timers (`reassessment_overdue`,
`escalation_unanswered`, and `reassessment_missed` when the pack sets it, V5) fire in time order
between events, up to `until`; an event at the same instant as a timer is applied first. Each
patient's fold is one pass over its events with O(1) work per event.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from policies.decisions import Decision, TimerKind
from policies.events import (
    Administration,
    Assessment,
    CourseEnd,
    Enrollment,
    Event,
    Immunotherapy,
    TreatmentChange,
    canonical_body,
)
from policies.fold import Fold
from policies.packs import PolicyPack
from policies.rules.adherence import d6_adherence
from policies.rules.enrolment import d0_enrolment
from policies.rules.immunotherapy import (
    d8_immunotherapy_given,
    d8_record_grading,
    d8_response_check,
)
from policies.rules.no_course import d7_no_active_course
from policies.rules.patient_reports import d9_patient_reported_change, reports_new_weakness
from policies.rules.reassessment import (
    d5_cycle_started,
    d5_reassessment_missed,
    d5_reassessment_overdue,
    missed_at,
    next_cycle_due,
    overdue_at,
    schedule_reassessment,
)
from policies.rules.treatment import (
    d2_workup_at_any_grade,
    default_on_treatment,
    label_on_treatment,
)
from policies.rules.watch import (
    d3_d4_after_stop,
    d3_first_watch_reassessment,
    d3_start_watch,
    d4_escalation_unanswered,
    escalation_deadline,
)
from policies.state import Course, CourseStatus, GradeSet, Measures, PatientState


class ConflictingEventError(ValueError):
    """The same `event_id` was given twice with different bodies."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"event_id {event_id!r} is used by two events with different bodies")
        self.event_id = event_id


class FoldError(Exception):
    """The fold of one patient failed: at which event (`event_id`; for a timer, the last event
    applied before it), and why (`__cause__`). Bounded events never get here; this names the
    event that did, so it can be set aside and the rest folded."""

    def __init__(self, event_id: str | None, stage: str) -> None:
        where = f"event {event_id}" if event_id else "the start"
        super().__init__(f"the fold failed {stage} {where}")
        self.event_id = event_id
        self.stage = stage


@dataclass(frozen=True, slots=True)
class PatientOutcome:
    """One patient's decisions (in fold order) and the state at the end of the fold."""

    decisions: list[Decision]
    state: PatientState


def timeline_order(event: Event) -> tuple[dt.datetime, str]:
    """(instant in UTC, event_id). UTC keys also compare fast: every parsed time has its own
    tzinfo object, and comparing times with different tzinfo objects takes a slow path."""
    return (event.occurred_at.astimezone(dt.UTC), event.event_id)


def unique_events(events: Iterable[Event]) -> list[Event]:
    """Drop exact duplicates (same id, same body); a reused id with another body is an error."""
    seen: dict[str, Event] = {}
    for event in events:
        earlier = seen.get(event.event_id)
        if earlier is None:
            seen[event.event_id] = event
        elif canonical_body(earlier) != canonical_body(event):
            raise ConflictingEventError(event.event_id)
    return list(seen.values())


def evaluate(
    pack: PolicyPack, events: Iterable[Event], until: dt.datetime | None = None
) -> list[Decision]:
    """All decisions of the timeline, sorted by `at` then `decision_id`.

    `until` (aware) is the clock: events after it have not happened yet and are not applied;
    timers fire at times <= until. Default: the latest event's time.
    """
    unique = unique_events(events)
    if not unique:
        return []
    if until is None:
        until = max(e.occurred_at for e in unique)
    by_patient: dict[str, list[Event]] = {}
    for event in unique:
        by_patient.setdefault(event.patient_id, []).append(event)
    decisions: list[Decision] = []
    for patient_id, patient_events in by_patient.items():
        decisions += evaluate_patient(pack, patient_id, patient_events, until).decisions
    decisions.sort(key=lambda d: (d.at, d.decision_id))
    return decisions


def evaluate_patient(
    pack: PolicyPack, patient_id: str, events: Sequence[Event], until: dt.datetime
) -> PatientOutcome:
    """Fold one patient's (unique) events up to `until` in timeline order, with its timers."""
    return fold_from(pack, PatientState(patient_id=patient_id), events, until)


EventsDone = Callable[[tuple[dt.datetime, str] | None, PatientState, int], None]


def fold_from(
    pack: PolicyPack,
    state: PatientState,
    events: Sequence[Event],
    until: dt.datetime,
    last_key: tuple[dt.datetime, str] | None = None,
    *,
    on_events_done: EventsDone | None = None,
) -> PatientOutcome:
    """The fold from `state` (the state after the event whose timeline key is `last_key`; a
    new patient's state and None at the start) over `events`, all sorting after it.

    `on_events_done(key, state, n)` is called once, after the last event applied and before
    the timers up to `until` fire: the key of that event (or `last_key`, if none was), the
    state then, and how many decisions had been made (policies.checkpoint stores it).
    """
    fold = Fold(pack=pack, patient=state)
    applied = last_key[1] if last_key else None  # the last event applied
    key = last_key
    for event in sorted(events, key=timeline_order):
        if event.occurred_at > until:
            break
        try:
            _fire_timers(fold, before=event.occurred_at, inclusive=False)
        except Exception as exc:
            raise FoldError(applied, "at a timer after") from exc
        try:
            _apply(fold, event)
        except Exception as exc:
            raise FoldError(event.event_id, "at") from exc
        applied = event.event_id
        key = timeline_order(event)
    if on_events_done is not None:
        on_events_done(key, fold.patient, len(fold.decisions))
    try:
        _fire_timers(fold, before=until, inclusive=True)
    except Exception as exc:
        raise FoldError(applied, "at a timer after") from exc
    return PatientOutcome(decisions=fold.decisions, state=fold.patient)


def next_timer(pack: PolicyPack, patient: PatientState) -> tuple[dt.datetime, TimerKind] | None:
    """The earliest pending timer of the patient's course, as (time, kind); at the same time,
    by kind name (a fixed order, so replay is deterministic)."""
    course = patient.course
    if course is None:
        return None
    candidates: list[tuple[dt.datetime, TimerKind]] = []
    overdue = overdue_at(pack, course)
    if overdue is not None:
        candidates.append((overdue, "reassessment_overdue"))
    missed = missed_at(pack, course)
    if missed is not None:
        candidates.append((missed, "reassessment_missed"))
    deadline = escalation_deadline(pack, course)
    if deadline is not None:
        candidates.append((deadline, "escalation_unanswered"))
    return min(candidates) if candidates else None


def _fire_timers(fold: Fold, *, before: dt.datetime, inclusive: bool) -> None:
    """Fire due timers in time order: those strictly before `before` (or at it, if inclusive)."""
    while (timer := next_timer(fold.pack, fold.patient)) is not None:
        at, kind = timer
        if at > before or (at == before and not inclusive):
            return
        course = fold.patient.course
        assert course is not None
        if kind == "reassessment_overdue":
            d5_reassessment_overdue(fold, course, at)
        elif kind == "reassessment_missed":
            d5_reassessment_missed(fold, course, at)
        else:
            d4_escalation_unanswered(fold, course, at)


def _apply(fold: Fold, event: Event) -> None:
    course = fold.patient.course
    match event:
        case Enrollment():
            if course is not None:
                fold.patient.ended_courses += 1
            fold.patient.course = d0_enrolment(fold, event)
        case Assessment() if fold.pack.patient_reports_advise_only and event.source == "patient":
            _patient_report(fold, event)
        case Assessment() | Administration() if course is None:
            d7_no_active_course(fold, event)
        case Assessment() if course is not None:
            _assessment(fold, course, event)
        case Administration() if course is not None:
            d6_adherence(fold, course, event)
            d5_cycle_started(fold, course, event)
        case TreatmentChange() if course is not None:
            _treatment_change(fold, course, event)
        case Immunotherapy() if course is not None:
            _immunotherapy(course, event)
            d8_immunotherapy_given(fold, course, event)
        case CourseEnd() if course is not None:
            fold.patient.course = None  # drops the pending reassessment and every timer
            fold.patient.ended_courses += 1
        case _:
            pass  # a treatment change, therapy or course end with no course: stored, no rule


def _immunotherapy(course: Course, event: Immunotherapy) -> None:
    """Therapy at or after the escalation answers it (D4); earlier therapy does not."""
    course.last_therapy_at = event.occurred_at
    if course.escalated_at is not None and event.occurred_at >= course.escalated_at:
        course.escalation_answered = True


def _patient_report(fold: Fold, event: Assessment) -> None:
    """V9: a patient's report is folded as a clinician's grading of the same on a copy of the
    state, which is then dropped (the report changes nothing); D9 tells the nurse what that
    grading would have decided. Without a course only new weakness is worth a review."""
    course = fold.patient.course
    would_decide = []
    if course is not None:
        scratch = Fold(pack=fold.pack, patient=copy.deepcopy(fold.patient))
        assert scratch.patient.course is not None
        _assessment(scratch, scratch.patient.course, event)
        would_decide = scratch.decisions
    elif not reports_new_weakness(event):
        return
    d9_patient_reported_change(fold, course, event, GradeSet.of(event.grades), would_decide)


def _assessment(fold: Fold, course: Course, event: Assessment) -> None:
    """Each assessment satisfies the pending reassessment and schedules the next (D5)."""
    grades = GradeSet.of(event.grades)
    clinician = event.source != "patient"  # V10 compares clinicians' and nurses' gradings only
    measures = Measures.of(event, grades)
    if clinician:
        d8_response_check(fold, course, event, measures)
    course.pending = course.overdue = None
    if course.stopped and event.occurred_at == course.stopped_at:
        _assessment_at_stop(fold, course, event, grades)
    elif course.stopped:
        d3_d4_after_stop(fold, course, event, grades)
    else:
        course.last_grades = grades
        if fold.pack.rules == "default":
            default_on_treatment(fold, course, event, grades)
        else:
            label_on_treatment(fold, course, event, grades)
        at = event.occurred_at
        if course.stopped:
            d3_first_watch_reassessment(fold, course, at=at, trigger=event.event_id)
        else:
            schedule_reassessment(
                fold,
                course,
                due_at=next_cycle_due(fold.pack, course, at, event.cycle),
                trigger=event.event_id,
                at=at,
                rule="D5",
                why="before the next cycle",
            )
    d2_workup_at_any_grade(fold, course, event, grades)
    if grades.overall >= 3 and clinician:
        fold.patient.severe_neuropathy_seen = True  # V6 reads it at the next enrolment
    if clinician:
        d8_record_grading(fold, course, event, measures)
    course.last_grades = grades
    course.previous_grades = grades


def _assessment_at_stop(fold: Fold, course: Course, event: Assessment, grades: GradeSet) -> None:
    """Graded at the very instant of the stop (ordered after it by id): these are the stop
    grades ("the last assessment at or before the stop"), not a change from them."""
    course.stop_grades = grades
    d3_first_watch_reassessment(fold, course, at=event.occurred_at, trigger=event.event_id)


def _treatment_change(fold: Fold, course: Course, event: TreatmentChange) -> None:
    """What the clinicians recorded: sets the dose, hold state or the stop (D3)."""
    action = event.action
    if action == "dose_reduced":
        if event.dose_mg_m2 is not None:
            course.dose_mg_m2 = event.dose_mg_m2
        course.schedule = event.schedule or course.schedule
        course.route = event.route or course.route
        grades = course.last_grades or course.baseline
        if fold.pack.rules == "default":
            course.reference = grades.overall
        else:
            course.reference = grades.label_tier(fold.pack.severe_autonomic_grade)
        if not fold.pack.recorded_hold_resumes:  # V4: it ends a recorded hold
            course.set_holds(recorded=False, label=course.label_hold)
    elif action == "held":
        if not course.stopped:
            course.set_holds(recorded=True, label=course.label_hold)
    elif action == "resumed":
        _recorded_resumed(fold, course, event)
    else:  # discontinued or completed: the drug stops, the watch starts (the earlier stop wins)
        status: CourseStatus = "discontinued" if action == "discontinued" else "completed"
        if course.stopped:
            if status == "discontinued":
                course.status = status
            return
        at = event.occurred_at
        d3_start_watch(
            fold,
            course,
            at=at,
            trigger=event.event_id,
            status=status,
            why=f"treatment {action} recorded",
        )
        d3_first_watch_reassessment(fold, course, at=at, trigger=event.event_id)


def _recorded_resumed(fold: Fold, course: Course, event: TreatmentChange) -> None:
    """A recorded `resumed` that ends a hold sets the dose, schedule and route it gives.

    Version 1: it ends the hold, whichever way it started. Version 2 (V4): it ends only a
    recorded hold; the service's own L2 `hold` ends only at the service's `resume`.
    """
    if not course.on_hold:
        return
    if fold.pack.recorded_hold_resumes:
        course.set_holds(recorded=False, label=False)
    elif course.recorded_hold:
        course.set_holds(recorded=False, label=course.label_hold)
    else:
        return
    if event.dose_mg_m2 is not None:
        course.dose_mg_m2 = event.dose_mg_m2
    course.schedule = event.schedule or course.schedule
    course.route = event.route or course.route
