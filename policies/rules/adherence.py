"""D6: every administration is compared with the current recommendation."""

from __future__ import annotations

from policies.decisions import Severity
from policies.events import Administration
from policies.fold import Fold
from policies.rules import sources
from policies.state import Course


def d6_adherence(fold: Fold, course: Course, event: Administration) -> None:
    """At most one deviation per dose, the most serious reason first."""
    given = event.dose_mg_m2
    severity: Severity
    if course.status == "discontinued":
        reason, severity = "dose_after_discontinuation", "urgent"
        why = f"A {given:.2f} mg/m2 dose was given after bortezomib was discontinued"
    elif course.status == "held":
        reason, severity = "dose_during_hold", "urgent"
        why = f"A {given:.2f} mg/m2 dose was given while bortezomib is on hold"
    elif given > course.dose_mg_m2 + fold.pack.dose_tolerance_mg_m2:
        reason, severity = "dose_above_recommended", "warning"
        why = f"A {given:.2f} mg/m2 dose is above the recommended {course.dose_mg_m2:.2f} mg/m2"
    else:
        return
    fold.emit(
        "adherence_deviation",
        rule="D6",
        trigger=event.event_id,
        at=event.occurred_at,
        severity=severity,
        reason=reason,
        rationale=f"{why}: review with the prescriber and record the reason.",
        sources=sources.D6,
    )
