"""Vital-sign Observations (body height, weight, surface area) -> the body size of the
administrations and orders in the same Bundle, so that a dose given in mg can be compared per m².

The contract has no event for a measurement alone, so a body measurement is read only with an
administration or order of the same patient in the same request; alone it is refused. Which one
applies to an event that gives no body size itself: of the measurements at or before the event's
time, the latest body surface area, else the latest height with the latest weight (an
administration takes Mosteller's sqrt(height x weight / 3600); an enrolment takes height and
weight as given, and the event computes the same).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Literal

from fhir.resources.R4B.observation import Observation

from monitor.interop.fhir.codes import LOINC, UCUM
from monitor.interop.fhir.inbound.common import (
    EntryProblem,
    _common,
    _Draft,
    _Source,
    _SubjectResolver,
)
from monitor.interop.fhir.inbound.observation import GRADING_STATUSES, _effective
from monitor.interop.fhir.problems import FhirProblems, Problem

Measure = Literal["height_cm", "weight_kg", "bsa_m2"]
# LOINC code -> (what it measures, UCUM unit -> factor to the contract's unit)
BODY_MEASURES: dict[str, tuple[Measure, dict[str, float]]] = {
    "8302-2": ("height_cm", {"cm": 1.0, "[in_i]": 2.54}),  # Body height
    "29463-7": ("weight_kg", {"kg": 1.0, "[lb_av]": 0.45359237}),  # Body weight
    "8277-6": ("bsa_m2", {"m2": 1.0}),  # Body surface area
}
MEASURE_NAMES = {"height_cm": "body height", "weight_kg": "body weight", "bsa_m2": "BSA"}
_SIZED_TYPES = ("administration", "enrollment")
_SIZE_FIELDS = ("bsa_m2", "height_cm", "weight_kg")


@dataclass(frozen=True, slots=True)
class _Measurement:
    source: _Source
    patient_id: str
    at: dt.datetime
    measure: Measure
    value: float  # in the contract's unit

    @property
    def location(self) -> str:
        return f"{self.source.path}.valueQuantity"


def is_body_measurement(obs: Observation) -> bool:
    """Is this Observation a body height, weight or surface area (by its LOINC code)?"""
    codings = (obs.code.coding or []) if obs.code is not None else []
    return any(c.system == LOINC and c.code in BODY_MEASURES for c in codings)


def _measurement(source: _Source, obs: Observation, subjects: _SubjectResolver) -> _Measurement:
    patient_id, problems = _common(source, obs, subjects)
    codings = (obs.code.coding or []) if obs.code is not None else []
    code = next(c.code for c in codings if c.system == LOINC and c.code in BODY_MEASURES)
    assert code is not None
    measure, units = BODY_MEASURES[code]
    if obs.status not in GRADING_STATUSES:
        problems.append(
            Problem(
                f"{source.path}.status",
                "value",
                f"{obs.status!r} is not read: only a final, amended or corrected measurement",
            )
        )
    at, _ = _effective(source, obs, "when it was measured", problems)
    quantity = obs.valueQuantity
    value = None
    expected = " or ".join(repr(u) for u in units)
    if quantity is None:
        problems.append(
            Problem(
                f"{source.path}.valueQuantity",
                "required",
                f"is required: the {MEASURE_NAMES[measure]} as a UCUM quantity in {expected}",
            )
        )
    elif quantity.system not in (None, UCUM) or quantity.code not in units:
        problems.append(
            Problem(
                f"{source.path}.valueQuantity",
                "value",
                f"a {MEASURE_NAMES[measure]} (LOINC {code}) is read in UCUM {expected}, not "
                f"{quantity.code or quantity.unit!r}"
                + (f" of {quantity.system}" if quantity.system not in (None, UCUM) else ""),
            )
        )
    elif quantity.value is None:
        problems.append(Problem(f"{source.path}.valueQuantity.value", "required", "is required"))
    else:
        assert quantity.code is not None
        value = float(quantity.value) * units[quantity.code]
    if problems:
        raise FhirProblems(problems)
    assert at is not None
    assert value is not None
    return _Measurement(source, patient_id, at, measure, value)


def _supply_body_size(
    drafts: list[_Draft], measurements: list[_Measurement], problems: list[EntryProblem]
) -> dict[int, str]:
    """Give each administration and enrolment without a body size the one that applies; the
    measurements read so are consumed, the others refused (they would be lost)."""
    read: set[int] = set()
    for draft in drafts:
        body = draft.body
        if body.get("type") not in _SIZED_TYPES or any(f in body for f in _SIZE_FIELDS):
            continue
        try:
            at = dt.datetime.fromisoformat(str(body.get("occurred_at")))
        except ValueError:
            continue  # no time: the event is refused for it anyway
        before = [m for m in measurements if m.patient_id == body.get("patient_id") and m.at <= at]
        read |= {m.source.entry for m in before if m.source.entry is not None}
        latest = {
            measure: max(
                (m for m in before if m.measure == measure),
                key=lambda m: (m.at, m.value),
                default=None,
            )
            for measure in _SIZE_FIELDS
        }
        bsa, height, weight = latest["bsa_m2"], latest["height_cm"], latest["weight_kg"]
        if bsa is not None:
            body["bsa_m2"] = bsa.value
            draft.locations["bsa_m2"] = (draft.sources[0].entry, bsa.location)
        elif height is not None and weight is not None:
            if body["type"] == "enrollment":
                body["height_cm"], body["weight_kg"] = height.value, weight.value
                draft.locations["height_cm"] = (draft.sources[0].entry, height.location)
                draft.locations["weight_kg"] = (draft.sources[0].entry, weight.location)
            else:
                body["bsa_m2"] = math.sqrt(height.value * weight.value / 3600)
                draft.locations["bsa_m2"] = (
                    draft.sources[0].entry,
                    f"{height.location} and {weight.location} (Mosteller)",
                )
    consumed: dict[int, str] = {}
    for m in measurements:
        if m.source.entry is not None and m.source.entry in read:
            consumed[m.source.entry] = (
                "read as the body size of an administration or order in the same Bundle"
            )
            continue
        problems.append(
            EntryProblem(
                m.source.entry,
                m.source.path,
                "not-supported",
                f"a {MEASURE_NAMES[m.measure]} is read only as the body size of a bortezomib "
                "administration or order of the same patient, at or after it, in the same "
                "Bundle; the service has no event for a measurement alone: send it in the "
                "Bundle with the administration",
            )
        )
    return consumed
