"""Small builders of contract events for tests: dicts (wire form) and validated models."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from policies import DEFAULT, Decision, Event, PolicyPack, evaluate, parse_event

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
_ids = itertools.count(1)


def at(days: float = 0, hours: float = 0) -> dt.datetime:
    """T0 plus an offset: the tests' clinical clock."""
    return T0 + dt.timedelta(days=days, hours=hours)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def _base(kind: str, when: dt.datetime, patient: str, event_id: str | None) -> dict[str, Any]:
    return {
        "event_id": event_id or f"{kind[:3]}-{next(_ids)}",
        "type": kind,
        "patient_id": patient,
        "occurred_at": iso(when),
    }


def enrollment(
    when: dt.datetime = T0, patient: str = "P1", event_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    body = _base("enrollment", when, patient, event_id) | {
        "drug": "bortezomib",
        "dose_mg_m2": 1.3,
        "route": "SC",
        "schedule": "weekly",
        "cycle_length_days": 21,
        "age": 55,
    }
    return body | fields


def assessment(
    when: dt.datetime,
    patient: str = "P1",
    event_id: str | None = None,
    **grades_and_fields: Any,
) -> dict[str, Any]:
    """`assessment(at(21), sensory=2, pain=1, cycle=2, findings={...})`."""
    domains = ("sensory", "motor", "pain", "autonomic")
    grades = {k: v for k, v in grades_and_fields.items() if k in domains} or {"sensory": 0}
    rest = {k: v for k, v in grades_and_fields.items() if k not in domains}
    return _base("assessment", when, patient, event_id) | {"grades": grades} | rest


def administration(
    when: dt.datetime, dose: float, patient: str = "P1", event_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    return (
        _base("administration", when, patient, event_id)
        | {
            "dose_mg_m2": dose,
            "route": "SC",
        }
        | fields
    )


def treatment_change(
    when: dt.datetime, action: str, patient: str = "P1", event_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    return _base("treatment_change", when, patient, event_id) | {"action": action} | fields


def immunotherapy(
    when: dt.datetime, therapy: str = "ivig", patient: str = "P1", event_id: str | None = None
) -> dict[str, Any]:
    return _base("immunotherapy", when, patient, event_id) | {"therapy": therapy}


def course_end(
    when: dt.datetime, reason: str = "completed", patient: str = "P1", event_id: str | None = None
) -> dict[str, Any]:
    return _base("course_end", when, patient, event_id) | {"reason": reason}


def events(*bodies: dict[str, Any]) -> list[Event]:
    return [parse_event(body) for body in bodies]


def run(
    *bodies: dict[str, Any], pack: PolicyPack = DEFAULT, until: dt.datetime | None = None
) -> list[Decision]:
    """Evaluate wire-form events with a pack; the decisions, sorted as replay prints them."""
    return evaluate(pack, events(*bodies), until)


def actions(decisions: list[Decision], trigger: str | None = None) -> list[str]:
    return [d.action for d in decisions if trigger is None or d.trigger == trigger]
