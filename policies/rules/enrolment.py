"""D0: at enrolment, advise weekly SC dosing for patients at risk; schedule the first check."""

from __future__ import annotations

from policies.events import Enrollment
from policies.fold import Fold
from policies.packs import PolicyPack
from policies.rules import sources
from policies.rules.reassessment import DAY, schedule_reassessment
from policies.state import Course, GradeSet


def neurotoxic_concomitant(pack: PolicyPack, concomitant: list[str]) -> list[str]:
    """The pack's neurotoxic drugs among the concomitant medications (V8: the list, and how a
    name matches: containing a listed name in version 1, equal to one in version 2)."""
    found: list[str] = []
    for drug in concomitant:
        if pack.neurotoxic_match == "contains":
            found += [n for n in pack.neurotoxic_drugs if n in drug.lower()]
        else:
            name = " ".join(drug.split()).lower()
            found += [n for n in pack.neurotoxic_drugs if name == n]
    return found


def d0_risk_factors(
    event: Enrollment, baseline: GradeSet, pack: PolicyPack, *, prior_severe: bool = False
) -> list[str]:
    """The risk factors that trigger D0 (others are recorded but do not count)."""
    found: list[str] = []
    if "diabetes" in event.risk_factors:
        found.append("diabetes")
    if "baseline_neuropathy" in event.risk_factors or baseline.overall >= 1:
        found.append("baseline neuropathy")
    if event.age is not None and event.age >= pack.risk_age_years:
        found.append(f"age {event.age}")
    if "prior_thalidomide" in event.risk_factors:
        found.append("prior thalidomide")
    found += [f"concomitant {drug}" for drug in neurotoxic_concomitant(pack, event.concomitant)]
    if prior_severe:
        found.append("prior severe neuropathy")
    return found


def prior_severe_neuropathy(fold: Fold, event: Enrollment, baseline: GradeSet) -> bool:
    """V6: an earlier course of the patient reached G >= 3 (graded by a clinician or nurse),
    or had an immune work-up or an escalation to immunotherapy; or this baseline is G >= 3."""
    return fold.pack.prior_course_risk and (
        fold.patient.severe_neuropathy_seen or baseline.overall >= 3
    )


def d0_enrolment(fold: Fold, event: Enrollment) -> Course:
    """Start a course; D0 advice when IV or twice weekly with a risk factor; first reassessment."""
    baseline = GradeSet.of(event.baseline)
    if fold.pack.rules == "default":
        reference = baseline.overall
    else:
        reference = baseline.label_tier(fold.pack.severe_autonomic_grade)
    course = Course(
        enrollment_id=event.event_id,
        started_at=event.occurred_at,
        cycle_length_days=event.cycle_length_days,
        dose_mg_m2=event.dose_mg_m2,
        bsa_m2=event.body_surface_area(),
        schedule=event.schedule,
        route=event.route,
        unit=event.unit,
        baseline=baseline,
        reference=reference,
        previous_grades=baseline,
    )
    at = event.occurred_at
    prior_severe = prior_severe_neuropathy(fold, event, baseline)
    if event.route == "IV" or event.schedule == "twice_weekly":
        risks = d0_risk_factors(event, baseline, fold.pack, prior_severe=prior_severe)
        if risks:
            given = f"{event.route} {event.schedule.replace('_', '-')}"
            fold.emit(
                "advise_subcutaneous_weekly",
                rule="D0",
                trigger=event.event_id,
                at=at,
                schedule="weekly",
                route="SC",
                rationale=(
                    f"Course planned {given} in a patient with neuropathy risk "
                    f"({', '.join(risks)}): weekly subcutaneous bortezomib lowers the risk of "
                    "peripheral neuropathy."
                ),
                sources=sources.D0 + _neurotoxic_sources(fold.pack, risks),
            )
    if prior_severe:
        _prior_course_review(fold, event)
    if fold.pack.baseline_prompt and (event.baseline is None or not event.baseline.graded()):
        _baseline_review(fold, event)
    schedule_reassessment(
        fold,
        course,
        due_at=at + event.cycle_length_days * DAY,
        trigger=event.event_id,
        at=at,
        rule="D0",
        why="grade neuropathy before cycle 2",
    )
    return course


def _neurotoxic_sources(pack: PolicyPack, risks: list[str]) -> tuple[str, ...]:
    """V8 cites the drug list's source when a listed co-medication counted (version 2's list)."""
    counted = any(r.startswith("concomitant ") for r in risks)
    return sources.D0_NEUROTOXIC if counted and pack.neurotoxic_match == "exact" else ()


def _prior_course_review(fold: Fold, event: Enrollment) -> None:
    """V6: a course after severe neuropathy needs the label's careful benefit-risk review."""
    fold.emit(
        "review_required",
        rule="D0",
        trigger=event.event_id,
        at=event.occurred_at,
        reason="prior_severe_neuropathy",
        severity="warning",
        audience=("physician",),
        rationale=(
            "A new bortezomib course after severe neuropathy (an earlier course reached grade "
            ">= 3, or needed an immune work-up or immunotherapy, or the baseline is grade >= 3): "
            "weigh benefit and risk carefully before the first dose."
        ),
        sources=sources.D0_PRIOR_COURSE,
    )


def _baseline_review(fold: Fold, event: Enrollment) -> None:
    """V7: without a baseline, later gradings have nothing to be compared with."""
    fold.emit(
        "review_required",
        rule="D0",
        trigger=event.event_id,
        at=event.occurred_at,
        reason="no_baseline_grading",
        severity="info",
        audience=("nurse",),
        rationale=(
            "The enrolment has no baseline neuropathy grading: grade neuropathy (CTCAE v5) "
            "before the first dose."
        ),
        sources=sources.D0,
    )
