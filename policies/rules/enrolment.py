"""D0: at enrolment, advise weekly SC dosing for patients at risk; schedule the first check."""

from __future__ import annotations

from policies.events import Enrollment
from policies.fold import Fold
from policies.rules import sources
from policies.rules.reassessment import DAY, schedule_reassessment
from policies.state import Course, GradeSet

NEUROTOXIC_CONCOMITANT = ("thalidomide", "vincristine")


def d0_risk_factors(event: Enrollment, baseline: GradeSet, risk_age_years: int) -> list[str]:
    """The risk factors that trigger D0 (others are recorded but do not count)."""
    found: list[str] = []
    if "diabetes" in event.risk_factors:
        found.append("diabetes")
    if "baseline_neuropathy" in event.risk_factors or baseline.overall >= 1:
        found.append("baseline neuropathy")
    if event.age is not None and event.age >= risk_age_years:
        found.append(f"age {event.age}")
    if "prior_thalidomide" in event.risk_factors:
        found.append("prior thalidomide")
    for drug in event.concomitant:
        name = drug.lower()
        for neurotoxic in NEUROTOXIC_CONCOMITANT:
            if neurotoxic in name:
                found.append(f"concomitant {neurotoxic}")
    return found


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
        schedule=event.schedule,
        route=event.route,
        unit=event.unit,
        baseline=baseline,
        reference=reference,
        previous_grades=baseline,
    )
    at = event.occurred_at
    if event.route == "IV" or event.schedule == "twice_weekly":
        risks = d0_risk_factors(event, baseline, fold.pack.risk_age_years)
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
                sources=sources.D0,
            )
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
