"""D9 (V9): a patient's own report advises, clinicians decide.

The engine folds the report as if a clinician had graded the same, on a copy of the state, and
throws the copy away; this rule turns what that grading would have decided into one nurse review.
"""

from __future__ import annotations

from collections.abc import Sequence

from policies.decisions import Decision
from policies.events import Assessment
from policies.fold import Fold
from policies.rules import sources
from policies.state import ZERO_GRADES, Course, GradeSet

# what a clinician's grading of the same would decide that the nurse should know of
ADVISED_ACTIONS = (
    "reduce_dose",
    "hold",
    "discontinue",
    "coasting_worsening",
    "escalate_immunotherapy",
)
ACTION_TEXT = {
    "reduce_dose": "a dose reduction",
    "hold": "a hold",
    "discontinue": "discontinuation",
    "coasting_worsening": "a coasting-worsening recheck",
    "escalate_immunotherapy": "an escalation to immunotherapy",
}


def reports_new_weakness(event: Assessment) -> bool:
    return bool(event.findings is not None and event.findings.new_weakness)


def d9_patient_reported_change(
    fold: Fold,
    course: Course | None,
    event: Assessment,
    grades: GradeSet,
    would_decide: Sequence[Decision],
) -> None:
    """One `review_required` (`patient_reported_change`, nurse) when a clinician's grading of
    the same would reduce, hold, discontinue, note coasting worsening or escalate, or when the
    patient reports new weakness; urgent when it may be serious (grade 3 or more, motor higher
    than at the latest clinician or nurse grading, a domain 2 or more above it, new weakness)."""
    advised = [d.action for d in would_decide if d.action in ADVISED_ACTIONS]
    weakness = reports_new_weakness(event)
    if not advised and not weakness:
        return
    graded = ZERO_GRADES if course is None else course.last_grades or course.baseline
    urgent = (
        grades.overall >= 3
        or grades.motor > graded.motor
        or any(now - then >= 2 for now, then in zip(grades, graded, strict=True))
        or weakness
    )
    what = (
        [f"a clinician's grading of the same would trigger {_listed(advised)}"] if advised else []
    )
    if weakness:
        what.append("the patient reports new weakness, falls or trouble walking")
    fold.emit(
        "review_required",
        rule="D9",
        trigger=event.event_id,
        at=event.occurred_at,
        reason="patient_reported_change",
        severity="urgent" if urgent else "warning",
        audience=("nurse",),
        rationale=(
            f"Patient-reported symptoms ({_reported(event, grades)}; latest clinician or nurse "
            f"grading {graded.describe()}): {'; '.join(what)}. Contact the patient and grade "
            "the neuropathy; the report itself changes nothing in the course."
        ),
        sources=sources.D9,
    )


def _listed(actions: Sequence[str]) -> str:
    texts = [ACTION_TEXT[a] for a in dict.fromkeys(actions)]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]


def _reported(event: Assessment, grades: GradeSet) -> str:
    """The domains the patient graded (only sensory on the intake) and the PRO-CTCAE answers."""
    given = event.grades.model_dump(exclude_none=True)
    shown = ", ".join(f"{domain} {getattr(grades, domain)}" for domain in given)
    pro = event.findings.pro_ctcae if event.findings is not None else None
    if pro is not None:
        answers = [
            f"{what} {value}"
            for what, value in (
                ("severity", pro.numbness_tingling_severity),
                ("interference", pro.numbness_tingling_interference),
            )
            if value is not None
        ]
        if answers:
            shown += f" (PRO-CTCAE numbness or tingling: {', '.join(answers)})"
    return shown
