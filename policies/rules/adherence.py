"""D6: every administration is compared with the current recommendation.

The current recommendation is the course's regimen: the enrolment's dose, route and schedule,
as the service's `reduce_dose` / `resume` and the recorded treatment changes leave it. Version 2
(V2) adds the minimum interval between doses, and the route and the weekly schedule.

A dose given in mg (`dose_mg`) is compared per m² at the administration's own body surface area,
else the enrolment's (given, or Mosteller's from height and weight). Without either it cannot be
compared with the recommendation: the dose comparison is skipped and the administration gets a
`review_required` (`dose_not_comparable`) as well as any deviation the other checks find (they do
not need the dose). In every pack: version 1 never accepted `dose_mg`, so no version-1 decision
changes, and a dose that went uncompared without a word would be unsafe.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import NamedTuple

from policies.decisions import Severity, utc_minute
from policies.events import Administration
from policies.fold import Fold
from policies.packs import PolicyPack
from policies.rules import sources
from policies.state import Course

WEEKLY_MIN_GAP = dt.timedelta(days=6)  # V2: weekly doses are at least 6 days apart


class Deviation(NamedTuple):
    reason: str
    severity: Severity
    why: str


class Given(NamedTuple):
    """The administration's dose as the checks read it: per m² (None: not comparable) and as
    rationales show it."""

    per_m2: float | None
    text: str


Check = Callable[[PolicyPack, Course, Administration, Given], Deviation | None]


def _gap_text(gap: dt.timedelta) -> str:
    """`71 h 59 min` (whole minutes, rounded down, so a gap short of 72 h never reads 72 h)."""
    minutes = int(gap.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _after_discontinuation(
    pack: PolicyPack, course: Course, event: Administration, given: Given
) -> Deviation | None:
    if course.status != "discontinued":
        return None
    return Deviation(
        "dose_after_discontinuation",
        "urgent",
        f"A {given.text} dose was given after bortezomib was discontinued",
    )


def _during_hold(
    pack: PolicyPack, course: Course, event: Administration, given: Given
) -> Deviation | None:
    if course.status != "held":
        return None
    return Deviation(
        "dose_during_hold",
        "urgent",
        f"A {given.text} dose was given while bortezomib is on hold",
    )


def _interval_too_short(
    pack: PolicyPack, course: Course, event: Administration, given: Given
) -> Deviation | None:
    """V2: less than `min_dose_interval_hours` after the course's previous administration."""
    ends, last = course.next_dose_not_before, course.last_dose_at
    if ends is None or last is None or event.occurred_at >= ends:
        return None
    return Deviation(
        "dose_interval_too_short",
        "urgent",
        f"A {given.text} dose was given {_gap_text(event.occurred_at - last)} "
        f"after the previous dose ({utc_minute(last)}), less than the minimum interval of "
        f"{pack.min_dose_interval_hours} h (not before {utc_minute(ends)})",
    )


def _above_recommended(
    pack: PolicyPack, course: Course, event: Administration, given: Given
) -> Deviation | None:
    """Skipped for a dose that cannot be compared (`dose_not_comparable` says so)."""
    if given.per_m2 is None or given.per_m2 <= course.dose_mg_m2 + pack.dose_tolerance_mg_m2:
        return None
    return Deviation(
        "dose_above_recommended",
        "warning",
        f"A {given.text} dose is above the recommended {course.dose_mg_m2:.2f} mg/m2",
    )


def _checks_regimen(pack: PolicyPack, course: Course) -> bool:
    """V2: route and schedule are checked on treatment; after a recorded `completed`, only the
    interval and the dose."""
    return pack.check_route_schedule and course.status != "completed"


def _route_not_recommended(
    pack: PolicyPack, course: Course, event: Administration, given: Given
) -> Deviation | None:
    if not _checks_regimen(pack, course) or event.route == course.route:
        return None
    return Deviation(
        "route_not_recommended",
        "warning",
        f"A {given.text} dose was given {event.route}, but the current "
        f"recommendation is {course.route}",
    )


def _schedule_not_recommended(
    pack: PolicyPack, course: Course, event: Administration, given: Given
) -> Deviation | None:
    """V2: on a weekly recommendation, a dose less than 6 days after the previous one."""
    last = course.last_dose_at
    if (
        not _checks_regimen(pack, course)
        or course.schedule != "weekly"
        or last is None
        or event.occurred_at - last >= WEEKLY_MIN_GAP
    ):
        return None
    return Deviation(
        "schedule_not_recommended",
        "warning",
        f"A {given.text} dose was given {_gap_text(event.occurred_at - last)} "
        f"after the previous dose ({utc_minute(last)}), but the current recommendation is "
        "weekly (doses at least 6 days apart)",
    )


# the reasons, most serious first (POLICY.md, "Precise semantics" and V2)
CHECKS: tuple[Check, ...] = (
    _after_discontinuation,
    _during_hold,
    _interval_too_short,
    _above_recommended,
    _route_not_recommended,
    _schedule_not_recommended,
)


def _record_dose(pack: PolicyPack, course: Course, event: Administration) -> None:
    """Every administration of the course is the previous one for the next (and clearance)."""
    course.last_dose_at = event.occurred_at
    hours = pack.min_dose_interval_hours
    course.next_dose_not_before = event.occurred_at + dt.timedelta(hours=hours) if hours else None


def d6_adherence(fold: Fold, course: Course, event: Administration) -> None:
    """At most one deviation per dose, the most serious reason first; then, for a dose in mg
    with no body surface area, its one `dose_not_comparable` review (even after a stop or in a
    hold, which have their own deviation: the dose given is unknown either way)."""
    given = Given(event.dose_per_m2(course.bsa_m2), event.dose_text(course.bsa_m2))
    found = next(
        (d for check in CHECKS if (d := check(fold.pack, course, event, given)) is not None), None
    )
    _record_dose(fold.pack, course, event)
    if found is not None:
        _deviation(fold, event, found)
    if given.per_m2 is None:
        _not_comparable(fold, event, given)


def _deviation(fold: Fold, event: Administration, found: Deviation) -> None:
    fold.emit(
        "adherence_deviation",
        rule="D6",
        trigger=event.event_id,
        at=event.occurred_at,
        severity=found.severity,
        reason=found.reason,
        rationale=f"{found.why}: review with the prescriber and record the reason.",
        sources=sources.D6,
    )


def _not_comparable(fold: Fold, event: Administration, given: Given) -> None:
    fold.emit(
        "review_required",
        rule="D6",
        trigger=event.event_id,
        at=event.occurred_at,
        reason="dose_not_comparable",
        severity="warning",
        audience=("infusion_unit", "pharmacy"),
        rationale=(
            f"A {given.text} dose was given, but a dose in mg cannot be compared with the "
            "recommendation in mg/m2 without the body surface area: record the enrolment's "
            "bsa_m2 (or height_cm and weight_kg) or the administration's bsa_m2, and check the "
            "dose against the recommendation."
        ),
        sources=sources.D6,
    )
