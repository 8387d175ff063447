"""D7: grading or dosing for a patient with no active course on record."""

from __future__ import annotations

from policies.events import Administration, Assessment
from policies.fold import Fold
from policies.rules import sources


def d7_no_active_course(fold: Fold, event: Assessment | Administration) -> None:
    fold.emit(
        "review_required",
        rule="D7",
        trigger=event.event_id,
        at=event.occurred_at,
        reason="no_active_course",
        rationale=(
            f"An {event.type} was recorded for a patient with no active bortezomib course on "
            "record: record the enrolment (or check the patient id) so the policy can apply."
        ),
        sources=sources.D7,
    )
