"""Clearance at the infusion chair (pure): may a dose be given now, which one, and why (not).

Read from the course state the service stores after each fold (`CourseSnapshot`), so the
patient API's clearance and the CDS Hooks order check apply the same due-date rule. Version 2
(V2) also waits for the minimum interval after the last dose (`next_dose_not_before`, which the
fold stores when the pack sets `min_dose_interval_hours`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from policies.decisions import from_utc_text, utc_text

NOTHING_PENDING = "active course, no pending reassessment or hold"


# the label's minimum between two doses, used when the pack sets no interval of its own
LABEL_MIN_INTERVAL = dt.timedelta(hours=72)


class CourseSnapshot(BaseModel):
    """The stored course state, as far as clearance reads it (other keys are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: str = "none"  # `none`: events stored, none folded yet
    dose_mg_m2: float | None = None
    schedule: str | None = None
    route: str | None = None
    next_reassessment_due: str | None = None
    reassessment_overdue_since: str | None = None
    last_dose_at: str | None = None  # V2: the course's latest administration
    next_dose_not_before: str | None = None  # V2: when its minimum interval ends (None: off)
    bsa_m2: float | None = None  # the enrolment's body surface area, when known

    @classmethod
    def of(cls, state: Mapping[str, Any]) -> CourseSnapshot:
        return cls.model_validate(dict(state))

    def reassessment_due_text(self) -> str | None:
        """The reassessment the course waits for, as stored: overdue since, else next due."""
        return self.reassessment_overdue_since or self.next_reassessment_due

    def reassessment_due(self) -> dt.datetime | None:
        due = self.reassessment_due_text()
        return from_utc_text(due) if due is not None else None

    def reassessment_blocks(self, now: dt.datetime) -> bool:
        """A due (or overdue) reassessment must be graded before an active or held course's
        next dose."""
        due = self.reassessment_due()
        return self.status in ("active", "held") and due is not None and due <= now

    def dose_interval_refusal(self, now: dt.datetime) -> str | None:
        """While the last dose is less than the minimum interval before `now`, why the chair
        must wait (that dose's time and when the interval ends); else None. The interval is
        the pack's (V2), or, for a pack without one (version 1), the label's 72 h: a decision
        of version 1 never changes, but the chair is never cleared for a second dose inside
        it (issue 14: a dose recorded, then "cleared" again the same day)."""
        last, ends = self.last_dose_at, self.next_dose_not_before
        if last is not None and ends is None:
            ends = utc_text(from_utc_text(last) + LABEL_MIN_INTERVAL)
        if last is None or ends is None or now >= from_utc_text(ends):
            return None
        hours = (from_utc_text(ends) - from_utc_text(last)) / dt.timedelta(hours=1)
        return (
            f"the last dose was given {last}, less than {hours:g} h ago: the minimum interval "
            f"between doses ends {ends}"
        )


def clearance(
    state: CourseSnapshot | Mapping[str, Any],
    pending_events: int,
    now: dt.datetime,
    monitoring_error: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """For the infusion chair: may a dose be given now, which one, and why (not). While the
    patient's monitoring is stopped (a dead-lettered fold) the stored state may be out of date:
    never cleared. Events still in the pipeline may change the answer: not cleared either."""
    if not isinstance(state, CourseSnapshot):
        state = CourseSnapshot.of(state)
    status = state.status
    reasons: list[str] = []
    if monitoring_error is not None:
        reasons.append(
            "monitoring error: this patient's latest events could not be evaluated since "
            f"{monitoring_error['since']} (dead letter {monitoring_error['dead_letter_id']}); "
            "the course state may be out of date: ask the physician before dosing"
        )
    if status in ("none", "ended"):
        reasons.append("no active bortezomib course on record")
    elif status == "held":
        reasons.append("bortezomib is on hold")
    elif status in ("discontinued", "completed"):
        reasons.append(f"bortezomib was {status}")
    interval = state.dose_interval_refusal(now)
    if interval is not None:
        reasons.append(interval)
    if state.reassessment_blocks(now):
        reasons.append(
            f"neuropathy reassessment due {state.reassessment_due_text()} has not been "
            "recorded: grade first"
        )
    if pending_events:
        reasons.append(f"{pending_events} recent event(s) still being processed: retry shortly")
    cleared = not reasons
    answer: dict[str, Any] = {
        "cleared": cleared,
        "dose_mg_m2": state.dose_mg_m2 if cleared else None,
        "schedule": state.schedule if cleared else None,
        "route": state.route if cleared else None,
        "status": status,
        "reasons": reasons or [NOTHING_PENDING],
    }
    if state.bsa_m2 is not None:  # the dose in mg too, from the enrolment's body surface area
        answer["bsa_m2"] = round(state.bsa_m2, 2)
        answer["dose_mg"] = (
            round(state.dose_mg_m2 * state.bsa_m2, 2)
            if cleared and state.dose_mg_m2 is not None
            else None
        )
    return answer
