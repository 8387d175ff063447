"""Decisions: what the engine says, with the rule, policy, rationale and sources behind it."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer

Action = Literal[
    "advise_subcutaneous_weekly",
    "reduce_dose",
    "hold",
    "resume",
    "discontinue",
    "immune_workup",
    "coasting_watch_started",
    "coasting_worsening",
    "escalate_immunotherapy",
    "escalation_unanswered",
    "schedule_reassessment",
    "reassessment_overdue",
    "watch_closed",
    "adherence_deviation",
    "review_required",
    "immunotherapy_response",
]
Severity = Literal["info", "warning", "urgent"]
Audience = Literal["nurse", "physician", "neurology", "pharmacy", "infusion_unit"]
TimerKind = Literal["reassessment_overdue", "escalation_unanswered", "reassessment_missed"]


def utc_text(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with a `Z`, seconds precision unless the time has a fraction."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat() + "Z"


def from_utc_text(text: str) -> dt.datetime:
    """The inverse of `utc_text` (any RFC 3339 text with an offset or `Z`): an aware time."""
    return dt.datetime.fromisoformat(text)


def utc_text_or_none(moment: dt.datetime | None) -> str | None:
    """`utc_text`, passing None through (optional times in JSON)."""
    return None if moment is None else utc_text(moment)


def utc_minute(moment: dt.datetime) -> str:
    """For rationales: `2026-03-23 07:40 UTC`, always converted to UTC first."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


UtcTime = Annotated[dt.datetime, PlainSerializer(utc_text, return_type=str)]

# Who needs to hear about each action. The feed and alerting (later issues) read this.
AUDIENCE: dict[str, tuple[Audience, ...]] = {
    "advise_subcutaneous_weekly": ("physician", "pharmacy"),
    "reduce_dose": ("physician", "pharmacy", "infusion_unit"),
    "hold": ("physician", "pharmacy", "infusion_unit"),
    "resume": ("physician", "pharmacy", "infusion_unit"),
    "discontinue": ("physician", "pharmacy", "infusion_unit", "nurse"),
    "immune_workup": ("physician", "neurology"),
    "coasting_watch_started": ("nurse", "physician"),
    "coasting_worsening": ("nurse",),
    "escalate_immunotherapy": ("physician", "neurology"),
    "escalation_unanswered": ("physician", "neurology"),
    "schedule_reassessment": ("nurse",),
    "reassessment_overdue": ("nurse",),
    "watch_closed": ("nurse", "physician"),
    "adherence_deviation": ("infusion_unit", "physician", "pharmacy"),
    "review_required": ("physician",),
    "immunotherapy_response": ("physician", "neurology"),
}


class Decision(BaseModel):
    """One decision (CONTRACT.md, "Decisions"). Optional action fields are omitted when unset."""

    model_config = ConfigDict(frozen=True)

    decision_id: str
    patient_id: str
    at: UtcTime
    trigger: str
    action: Action
    severity: Severity
    audience: list[Audience]
    rule: str
    policy: str
    rationale: str
    sources: list[str]
    dose_mg_m2: float | None = None
    schedule: str | None = None
    route: str | None = None
    due_at: UtcTime | None = None
    window_end: UtcTime | None = None
    reason: str | None = None
    triggers: list[str] | None = None

    def to_json_dict(self) -> dict[str, object]:
        """The wire form: UTC `Z` times, unset action fields left out."""
        return self.model_dump(mode="json", exclude_none=True)


def decision_id(
    *,
    policy: str,
    patient_id: str,
    rule: str,
    action: str,
    trigger: str,
    at: dt.datetime,
    due_at: dt.datetime | None,
    reason: str | None,
) -> str:
    """Stable id: the same timeline gives the same ids, and no two decisions share one."""
    qualifier = utc_text(due_at) if due_at is not None else (reason or "")
    key = "\x1f".join((policy, patient_id, rule, action, trigger, utc_text(at), qualifier))
    return "d-" + hashlib.sha256(key.encode()).hexdigest()[:24]
