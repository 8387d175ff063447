"""Assessments while on treatment: D1-D2 (pack `default`) or L1-L3 (pack `label`)."""

from __future__ import annotations

from policies.events import Assessment
from policies.fold import Fold
from policies.packs import PolicyPack
from policies.rules import sources
from policies.rules.watch import d3_start_watch
from policies.state import Course, GradeSet, immune_red_flags


def _dose(value: float) -> str:
    return f"{value:.1f}"


def review_lowest_dose(fold: Fold, course: Course, event: Assessment, rule: str, what: str) -> None:
    """At the lowest level a further rise cannot reduce again: a clinician must decide."""
    fold.emit(
        "review_required",
        rule=rule,
        trigger=event.event_id,
        at=event.occurred_at,
        reason="lowest_dose_level",
        rationale=(
            f"{what} while already at the lowest dose level ({_dose(course.dose_mg_m2)} mg/m2): "
            "no further reduction exists; review continuation."
        ),
        sources=sources.D1_LOWEST,
    )


def _reduce(
    fold: Fold,
    course: Course,
    event: Assessment,
    *,
    rule: str,
    what: str,
    schedule: str,
    route: str,
    cited: tuple[str, ...],
) -> None:
    lower = fold.pack.next_lower_dose(course.dose_mg_m2)
    if lower is None:
        review_lowest_dose(fold, course, event, rule, what)
        return
    fold.emit(
        "reduce_dose",
        rule=rule,
        trigger=event.event_id,
        at=event.occurred_at,
        dose_mg_m2=lower,
        schedule=schedule,
        route=route,
        rationale=(
            f"{what}: reduce bortezomib one level, {_dose(course.dose_mg_m2)} -> "
            f"{_dose(lower)} mg/m2, {schedule.replace('_', '-')} {route}."
        ),
        sources=cited,
    )
    course.dose_mg_m2, course.schedule, course.route = lower, schedule, route


def _discontinue(
    fold: Fold,
    course: Course,
    event: Assessment,
    grades: GradeSet,
    *,
    rule: str,
    what: str,
    cited: tuple[str, ...],
) -> None:
    """Discontinue, with an immune work-up when red flags show, and start the coasting watch."""
    at = event.occurred_at
    advice = "consider a neuropathy-sparing proteasome inhibitor (carfilzomib)"
    if grades.pain >= 2:
        advice += " and symptomatic treatment of neuropathic pain (duloxetine)"
    fold.emit(
        "discontinue",
        rule=rule,
        trigger=event.event_id,
        at=at,
        rationale=f"{what}: discontinue bortezomib; {advice}.",
        sources=cited,
    )
    flags = immune_red_flags(event, grades)
    if flags and not (fold.pack.workup_on_any_red_flag and course.workup_emitted):
        emit_immune_workup(fold, course, event, flags, rule=rule)
    d3_start_watch(
        fold,
        course,
        at=at,
        trigger=event.event_id,
        status="discontinued",
        why=f"{rule} discontinuation",
    )


def d2_discontinuation(fold: Fold, course: Course, event: Assessment, grades: GradeSet) -> bool:
    """D2: G >= 3 or severe autonomic neuropathy discontinues. True when it did."""
    pack = fold.pack
    severe_autonomic = grades.autonomic >= pack.severe_autonomic_grade
    if grades.overall < pack.discontinue_grade and not severe_autonomic:
        return False
    what = f"Overall neuropathy grade {grades.overall}" + (
        f" with severe autonomic neuropathy (grade {grades.autonomic})" if severe_autonomic else ""
    )
    _discontinue(fold, course, event, grades, rule="D2", what=what, cited=sources.D2)
    return True


def d1_dose_reduction(fold: Fold, course: Course, event: Assessment, grades: GradeSet) -> None:
    """D1: a grade 1-2 above the reference reduces one level to weekly SC (or asks for review)."""
    level = grades.overall
    if not 1 <= level < fold.pack.discontinue_grade or level <= course.reference:
        return
    what = f"Overall neuropathy grade rose to {level} (reference {course.reference}) on treatment"
    _reduce(
        fold,
        course,
        event,
        rule="D1",
        what=what,
        schedule=fold.pack.reduction_schedule,
        route=fold.pack.reduction_route,
        cited=sources.D1,
    )
    course.reference = level


def default_on_treatment(fold: Fold, course: Course, event: Assessment, grades: GradeSet) -> None:
    if not d2_discontinuation(fold, course, event, grades):
        d1_dose_reduction(fold, course, event, grades)


def label_on_treatment(fold: Fold, course: Course, event: Assessment, grades: GradeSet) -> None:
    """Pack `label`: the prescribing-information table, L1 reduce, L2 hold/resume, L3 stop."""
    pack = fold.pack
    tier = grades.label_tier(pack.severe_autonomic_grade)
    n = max(grades.sensory, grades.motor)
    described = f"Neuropathy grade {n} " + ("with pain" if grades.pain >= 1 else "without pain")
    if tier == 3:
        what = described + (
            f", autonomic grade {grades.autonomic}"
            if grades.autonomic >= pack.severe_autonomic_grade
            else ""
        )
        _discontinue(fold, course, event, grades, rule="L3", what=what, cited=sources.LABEL)
    elif l2_held(pack, course):
        if n <= 1:
            l2_resume(fold, course, event, described)
            course.reference = tier
    elif tier == 2:
        course.set_holds(recorded=course.recorded_hold, label=True)
        fold.emit(
            "hold",
            rule="L2",
            trigger=event.event_id,
            at=event.occurred_at,
            rationale=(
                f"{described}: withhold bortezomib until neuropathy returns to grade 1 or "
                f"less, then resume at {_dose(pack.resume_dose_mg_m2)} mg/m2 "
                f"{pack.resume_schedule.replace('_', '-')}."
            ),
            sources=sources.LABEL,
        )
    elif tier == 1 and tier > course.reference:
        _reduce(
            fold,
            course,
            event,
            rule="L1",
            what=described,
            schedule=course.schedule,
            route=course.route,
            cited=sources.LABEL,
        )
        course.reference = tier


def l2_held(pack: PolicyPack, course: Course) -> bool:
    """Held as L2 sees it (only `resume` or `discontinue` then): the service's own `hold`; in
    version 1 a recorded `held` too, which a later N <= 1 therefore resumes (V4 ends that)."""
    return course.label_hold or (pack.recorded_hold_resumes and course.recorded_hold)


def l2_resume(fold: Fold, course: Course, event: Assessment, described: str) -> None:
    """Resume ends the service's own hold; a recorded hold only in version 1 (one hold then),
    so from version 2 (V4) a dose stays `dose_during_hold` until the clinicians record its end."""
    pack = fold.pack
    course.set_holds(recorded=course.recorded_hold and not pack.recorded_hold_resumes, label=False)
    course.dose_mg_m2, course.schedule = pack.resume_dose_mg_m2, pack.resume_schedule
    fold.emit(
        "resume",
        rule="L2",
        trigger=event.event_id,
        at=event.occurred_at,
        dose_mg_m2=pack.resume_dose_mg_m2,
        schedule=pack.resume_schedule,
        route=course.route,
        rationale=(
            f"{described} after a hold: resume bortezomib at "
            f"{_dose(pack.resume_dose_mg_m2)} mg/m2 {pack.resume_schedule.replace('_', '-')}."
        ),
        sources=sources.LABEL,
    )


def emit_immune_workup(
    fold: Fold, course: Course, event: Assessment, flags: list[str], *, rule: str
) -> None:
    """The immune work-up (D2): nerve conduction, CSF, neurology."""
    fold.emit(
        "immune_workup",
        rule=rule,
        trigger=event.event_id,
        at=event.occurred_at,
        rationale=(
            f"Immune-mediated red flags ({', '.join(flags)}): nerve-conduction study / EMG, "
            "CSF analysis and neurology review."
        ),
        sources=sources.D2_WORKUP,
    )
    course.workup_emitted = True
    fold.patient.severe_neuropathy_seen = True  # V6: a later course starts after this one


def d2_workup_at_any_grade(fold: Fold, course: Course, event: Assessment, grades: GradeSet) -> None:
    """V1: the first assessment of a course with a red flag asks for the work-up, whatever the
    grade and whether the course is on treatment, held (a label hold too) or stopped; once per
    course (a discontinuing assessment's own work-up is that one). A patient's own report
    neither asks for it nor uses it up."""
    if not fold.pack.workup_on_any_red_flag or course.workup_emitted or event.source == "patient":
        return
    flags = immune_red_flags(event, grades)
    if flags:
        emit_immune_workup(fold, course, event, flags, rule="D2")
