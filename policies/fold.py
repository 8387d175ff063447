"""The per-patient fold context the rules write to: pack, state, and `emit`."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field

from policies.decisions import AUDIENCE, Action, Audience, Decision, Severity, decision_id
from policies.packs import PolicyPack
from policies.state import PatientState

DEFAULT_SEVERITY: dict[str, Severity] = {
    "advise_subcutaneous_weekly": "info",
    "reduce_dose": "warning",
    "hold": "urgent",
    "resume": "warning",
    "discontinue": "urgent",
    "immune_workup": "urgent",
    "coasting_watch_started": "info",
    "coasting_worsening": "warning",
    "escalate_immunotherapy": "urgent",
    "escalation_unanswered": "urgent",
    "schedule_reassessment": "info",
    "reassessment_overdue": "warning",
    "watch_closed": "info",
    "adherence_deviation": "warning",
    "review_required": "warning",
    "immunotherapy_response": "info",
}


@functools.cache
def _cited(sources: tuple[str, ...]) -> tuple[str, ...]:
    """Source ids once each, in numeric order (S1 ... S8)."""
    return tuple(sorted(set(sources), key=lambda s: int(s[1:])))


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else moment.astimezone(dt.UTC)


@dataclass(slots=True)
class Fold:
    """Everything a rule function may touch while one patient's timeline is folded."""

    pack: PolicyPack
    patient: PatientState
    decisions: list[Decision] = field(default_factory=list)

    def emit(
        self,
        action: Action,
        *,
        rule: str,
        trigger: str,
        at: dt.datetime,
        rationale: str,
        sources: tuple[str, ...],
        severity: Severity | None = None,
        audience: tuple[Audience, ...] | None = None,
        dose_mg_m2: float | None = None,
        schedule: str | None = None,
        route: str | None = None,
        due_at: dt.datetime | None = None,
        window_end: dt.datetime | None = None,
        reason: str | None = None,
        triggers: list[str] | None = None,
    ) -> None:
        """One decision; `severity` and `audience` default to the action's (a reason of
        `review_required` may name its own)."""
        policy = self.pack.label
        patient_id = self.patient.patient_id
        at = at.astimezone(dt.UTC)  # decisions hold UTC times; event times keep their offsets
        due_at, window_end = _utc(due_at), _utc(window_end)
        self.decisions.append(
            Decision(
                decision_id=decision_id(
                    policy=policy,
                    patient_id=patient_id,
                    rule=rule,
                    action=action,
                    trigger=trigger,
                    at=at,
                    due_at=due_at,
                    reason=reason,
                ),
                patient_id=patient_id,
                at=at,
                trigger=trigger,
                action=action,
                severity=severity or DEFAULT_SEVERITY[action],
                audience=list(audience or AUDIENCE[action]),
                rule=rule,
                policy=policy,
                rationale=rationale,
                sources=list(_cited(sources)),
                dose_mg_m2=dose_mg_m2,
                schedule=schedule,
                route=route,
                due_at=due_at,
                window_end=window_end,
                reason=reason,
                triggers=triggers,
            )
        )
