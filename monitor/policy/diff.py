"""What a change of policy pack would change (pure): the decisions each pack gives now, per
patient, matched by what they are about (trigger, action, reason), as added, removed and
changed, with counts by action.

A decision's id includes its pack, so two packs never share ids: they are matched instead by
the event (or timer) that triggered them, the action and its reason.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from policies import Decision, Event, PolicyPack, evaluate_patient, unique_events
from policies.changeover import differing_fields, match_decisions


def _view(decision: Decision) -> dict[str, Any]:
    return decision.to_json_dict()


@dataclass(slots=True)
class PatientDiff:
    patient_id: str
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)  # {"from", "to", "fields"}
    unchanged: int = 0

    @property
    def differs(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def view(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
        }


def diff_decisions(
    patient_id: str, before: Sequence[Decision], after: Sequence[Decision]
) -> PatientDiff:
    """One patient's decisions under the old pack (`before`) and the new one (`after`)."""
    result = PatientDiff(patient_id)
    pairs, removed = match_decisions(before, after)
    for decision, previous in pairs:
        if previous is None:
            result.added.append(_view(decision))
        elif fields := differing_fields(previous, decision):
            result.changed.append(
                {"from": _view(previous), "to": _view(decision), "fields": fields}
            )
        else:
            result.unchanged += 1
    result.removed = [_view(d) for d in removed]
    return result


@dataclass(slots=True)
class PolicyDiff:
    """The comparison over every patient: only the patients whose decisions differ are listed,
    all are counted."""

    before: str
    after: str
    until: dt.datetime
    patients: int = 0
    differing: list[PatientDiff] = field(default_factory=list)
    counts: dict[str, Counter[str]] = field(
        default_factory=lambda: {"added": Counter(), "removed": Counter(), "changed": Counter()}
    )

    def add(self, patient: PatientDiff) -> None:
        self.patients += 1
        for name, items in (("added", patient.added), ("removed", patient.removed)):
            self.counts[name].update(item["action"] for item in items)
        self.counts["changed"].update(item["to"]["action"] for item in patient.changed)
        if patient.differs:
            self.differing.append(patient)

    def view(self) -> dict[str, Any]:
        return {
            "from": self.before,
            "to": self.after,
            "until": self.until.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "patients": self.patients,
            "patients_changed": len(self.differing),
            "counts": {name: dict(sorted(c.items())) for name, c in self.counts.items()},
            "by_patient": [p.view() for p in self.differing],
        }


def compare_packs(
    before: PolicyPack,
    after: PolicyPack,
    timelines: Iterable[tuple[str, Sequence[Event]]],
    until: dt.datetime,
) -> PolicyDiff:
    """Fold each patient's events with both packs up to `until` and compare the decisions."""
    result = PolicyDiff(before.label, after.label, until)
    for patient_id, events in timelines:
        unique = unique_events(events)
        result.add(
            diff_decisions(
                patient_id,
                evaluate_patient(before, patient_id, unique, until).decisions,
                evaluate_patient(after, patient_id, unique, until).decisions,
            )
        )
    return result
