"""D3 coasting watch and D4 escalation to immunotherapy, after the drug stops."""

from __future__ import annotations

import datetime as dt

from policies.decisions import utc_minute
from policies.events import Assessment
from policies.fold import Fold
from policies.packs import PolicyPack
from policies.rules import sources
from policies.rules.reassessment import DAY, schedule_reassessment
from policies.state import ZERO_GRADES, Course, CourseStatus, GradeSet, finding_red_flags

TRIGGER_TEXT = {
    "motor_worsening": "motor grade above its value at the stop (new or worsening weakness)",
    "two_grade_rise": "a domain at least 2 grades above its value at the stop",
    "grade_4": "overall grade reached 4",
    "red_flag_worsening": "worsening with an immune-mediated red flag",
    "worsening_after_window": "worsening after the coasting window closed",
}
OPTIONS = (
    "options: IVIg 2 g/kg over 2-5 days, plasma exchange, or corticosteroids "
    "(not for a Guillain-Barre pattern)"
)


def d3_start_watch(
    fold: Fold, course: Course, *, at: dt.datetime, trigger: str, status: CourseStatus, why: str
) -> None:
    """The drug stopped: start the coasting watch from the stop grades."""
    course.status = status
    if course.stopped_at is not None:
        return
    course.stopped_at = at
    course.stop_grades = course.last_grades or course.baseline or ZERO_GRADES
    course.previous_grades = course.stop_grades
    course.window_end = at + fold.pack.coasting_window_days * DAY
    fold.emit(
        "coasting_watch_started",
        rule="D3",
        trigger=trigger,
        at=at,
        window_end=course.window_end,
        rationale=(
            f"Bortezomib stopped ({why}): neuropathy may keep worsening for about 3 months "
            f"(coasting); watch until {utc_minute(course.window_end)} with reassessments every "
            f"{fold.pack.watch_interval_days} days."
        ),
        sources=sources.D3,
    )


def d3_first_watch_reassessment(
    fold: Fold, course: Course, *, at: dt.datetime, trigger: str
) -> None:
    """The stop (or the grading at it) schedules the first watch reassessment, +14 days."""
    schedule_reassessment(
        fold,
        course,
        due_at=at + fold.pack.watch_interval_days * DAY,
        trigger=trigger,
        at=at,
        rule="D5",
        why="first reassessment of the coasting watch",
    )


def d4_triggers(
    grades: GradeSet, stop: GradeSet, *, worse: bool, red_flags: list[str], after_window: bool
) -> list[str]:
    """Which of the five D4 escalation triggers this post-stop assessment meets."""
    found = []
    if grades.motor > stop.motor:
        found.append("motor_worsening")
    if any(now - then >= 2 for now, then in zip(grades, stop, strict=True)):
        found.append("two_grade_rise")
    if grades.overall >= 4 > stop.overall:
        found.append("grade_4")
    if worse and red_flags:
        found.append("red_flag_worsening")
    if worse and after_window:
        found.append("worsening_after_window")
    return found


def d3_d4_after_stop(fold: Fold, course: Course, event: Assessment, grades: GradeSet) -> None:
    """After the stop: escalate (D4) or note coasting (D3), close the watch, reschedule (D5)."""
    assert course.stop_grades is not None
    assert course.window_end is not None
    at = event.occurred_at
    previous = course.previous_grades or course.stop_grades
    worse = grades.worse_than(previous)
    after_window = at > course.window_end
    escalating = recheck = False
    if course.escalated_at is None:
        red_flags = finding_red_flags(event)
        triggers = d4_triggers(
            grades, course.stop_grades, worse=worse, red_flags=red_flags, after_window=after_window
        )
        if triggers:
            escalating = True
            d4_escalate(fold, course, event, grades, triggers, red_flags)
        elif worse:  # inside the window: expected coasting, look again sooner
            recheck = True
            fold.emit(
                "coasting_worsening",
                rule="D3",
                trigger=event.event_id,
                at=at,
                rationale=(
                    f"Worse than the previous assessment ({grades.describe()}) within the "
                    "coasting window, without escalation triggers: expected coasting; "
                    f"reassess in {fold.pack.coasting_recheck_days} days."
                ),
                sources=sources.D3,
            )
    if after_window and not course.watch_closed and grades.overall <= 1 and not escalating:
        course.watch_closed = True
        fold.emit(
            "watch_closed",
            rule="D3",
            trigger=event.event_id,
            at=at,
            rationale=(
                f"Coasting window over and overall grade {grades.overall} (<= 1): the watch "
                "closes; no further reassessments are scheduled."
            ),
            sources=sources.D3,
        )
    if not course.watch_closed:
        if recheck:
            days, why = fold.pack.coasting_recheck_days, "coasting worsening, look again sooner"
        elif after_window:
            days, why = fold.pack.followup_interval_days, "follow-up after the coasting window"
        else:
            days, why = fold.pack.watch_interval_days, "coasting watch"
        schedule_reassessment(
            fold, course, due_at=at + days * DAY, trigger=event.event_id, at=at, rule="D5", why=why
        )


def d4_escalate(
    fold: Fold,
    course: Course,
    event: Assessment,
    grades: GradeSet,
    triggers: list[str],
    red_flags: list[str],
) -> None:
    course.escalated_at = event.occurred_at
    fold.patient.severe_neuropathy_seen = True  # V6: a later course starts after this one
    # therapy recorded at the same instant (but ordered first by its id) answers it too
    course.escalation_answered = course.last_therapy_at == event.occurred_at
    reasons = "; ".join(TRIGGER_TEXT[t] for t in triggers)
    if red_flags:
        reasons += f" ({', '.join(red_flags)})"
    cited = sources.D4_OPTIONS + tuple(s for t in triggers for s in sources.D4_BY_TRIGGER[t])
    fold.emit(
        "escalate_immunotherapy",
        rule="D4",
        trigger=event.event_id,
        at=event.occurred_at,
        triggers=triggers,
        rationale=(
            f"Worsening after bortezomib stopped that coasting does not explain ({reasons}; "
            f"now {grades.describe()}): consider immune-mediated neuropathy and treat; "
            f"{OPTIONS}."
        ),
        sources=cited,
    )


def escalation_deadline(pack: PolicyPack, course: Course) -> dt.datetime | None:
    if course.escalated_at is None or course.escalation_answered or course.escalation_timer_fired:
        return None
    return course.escalated_at + pack.escalation_answer_days * DAY


def d4_escalation_unanswered(fold: Fold, course: Course, at: dt.datetime) -> None:
    """No immunotherapy recorded within the answer period after the escalation."""
    course.escalation_timer_fired = True
    assert course.escalated_at is not None
    fold.emit(
        "escalation_unanswered",
        rule="D4",
        trigger="timer:escalation_unanswered",
        at=at,
        rationale=(
            f"Escalation to immunotherapy of {utc_minute(course.escalated_at)} has no "
            f"immunotherapy recorded within {fold.pack.escalation_answer_days} days: "
            f"review now; {OPTIONS}."
        ),
        sources=sources.D4_OPTIONS,
    )
