"""Clearance for the infusion chair: may a dose be given now, which one, and why (not)."""

import datetime as dt
from typing import Any


def clearance(
    state: dict[str, Any],
    pending_events: int,
    now: dt.datetime,
    monitoring_error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """For the infusion chair: may a dose be given now, which one, and why (not). While the
    patient's monitoring is stopped (a dead-lettered fold) the stored state may be out of date:
    never cleared."""
    status = state.get("status", "none")
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
    due = state.get("reassessment_overdue_since") or state.get("next_reassessment_due")
    if status in ("active", "held") and due is not None and dt.datetime.fromisoformat(due) <= now:
        reasons.append(f"neuropathy reassessment due {due} has not been recorded: grade first")
    if pending_events:
        reasons.append(f"{pending_events} recent event(s) still being processed: retry shortly")
    cleared = not reasons
    return {
        "cleared": cleared,
        "dose_mg_m2": state.get("dose_mg_m2") if cleared else None,
        "schedule": state.get("schedule") if cleared else None,
        "route": state.get("route") if cleared else None,
        "status": status,
        "reasons": reasons or ["active course, no pending reassessment or hold"],
    }
