"""A patient's chart history (pure over the stored rows): grades per domain over time, doses
given, and the dose decisions, for the patient page's charts.

A dose given in mg shows `dose_mg` as given and, when the body surface area is known (the
administration's `bsa_m2`, else the latest enrolment's, given or Mosteller's), `dose_mg_m2`
converted as D6 converts it; without one `dose_mg_m2` is null."""

import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from policies.decisions import utc_text
from policies.events import EVENT_ADAPTER, Administration, Assessment, Enrollment

DOSE_ACTIONS = ("reduce_dose", "hold", "resume", "discontinue")


def history(
    patient_id: str, bodies: Sequence[tuple[str, str]], decisions: list[str]
) -> dict[str, Any]:
    grades: list[dict[str, Any]] = []
    doses: list[dict[str, Any]] = []
    unreadable: list[str] = []
    course_bsa: float | None = None  # the latest enrolment's body surface area
    for event_id, body in bodies:
        try:
            event = EVENT_ADAPTER.validate_json(body)
        except ValidationError:  # stored before a bound existed: its dead letter names it
            unreadable.append(event_id)
            continue
        at = utc_text(event.occurred_at)
        if isinstance(event, Assessment):
            grades.append(
                {"at": at, "cycle": event.cycle, **event.grades.model_dump(exclude_none=True)}
            )
        elif isinstance(event, Enrollment):
            course_bsa = event.body_surface_area()
            doses.append({"at": at, "dose_mg_m2": event.dose_mg_m2, "source": "enrollment"})
        elif isinstance(event, Administration):
            point: dict[str, Any] = {
                "at": at,
                "dose_mg_m2": event.dose_per_m2(course_bsa),
                "source": "given",
            }
            if event.dose_mg is not None:
                point["dose_mg"] = event.dose_mg
            doses.append(point)
    dose_decisions = []
    for body in decisions:
        decision = json.loads(body)
        if decision["action"] in DOSE_ACTIONS:
            dose_decisions.append(
                {
                    "at": decision["at"],
                    "action": decision["action"],
                    "dose_mg_m2": decision.get("dose_mg_m2"),
                    "rule": decision["rule"],
                }
            )
    return {
        "patient_id": patient_id,
        "grades": grades,
        "doses": doses,
        "dose_decisions": dose_decisions,
        "unreadable_events": unreadable,
    }
