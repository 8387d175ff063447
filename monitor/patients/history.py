"""A patient's chart history (pure over the stored rows): grades per domain over time, doses
given, and the dose decisions, for the patient page's charts."""

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
        elif isinstance(event, Enrollment | Administration):
            doses.append(
                {
                    "at": at,
                    "dose_mg_m2": event.dose_mg_m2,
                    "source": "enrollment" if isinstance(event, Enrollment) else "given",
                }
            )
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
