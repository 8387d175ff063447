"""MedicationRequest -> enrollment or treatment_change: an active bortezomib order starts a
course (dose, route and schedule from its dosage; cycle length, age and risk factors from the
service's extensions; the infusion unit from its performer), a stopped or completed one ends it.
"""

from __future__ import annotations

import re
from typing import Any

from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationrequest import MedicationRequest

from monitor.interop.fhir.codes import EXTENSION, UCUM
from monitor.interop.fhir.inbound.common import (
    _common,
    _Draft,
    _extension_location,
    _extensions,
    _key,
    _one,
    _reason_text,
    _Source,
    _SubjectResolver,
    _time,
)
from monitor.interop.fhir.inbound.medication import _medication
from monitor.interop.fhir.medication import read_regimen
from monitor.interop.fhir.problems import FhirProblems, Problem
from monitor.settings import Settings

ORDER_STATUSES = {"active": "enrollment", "stopped": "discontinued", "completed": "completed"}
# the course's body size, for doses given in mg (extension -> enrolment field, UCUM unit)
BODY_SIZE = {
    "body-surface-area": ("bsa_m2", "m2"),
    "body-height": ("height_cm", "cm"),
    "body-weight": ("weight_kg", "kg"),
}


def _request(
    source: _Source,
    request: MedicationRequest,
    settings: Settings,
    medications: dict[str, Medication],
    subjects: _SubjectResolver,
) -> _Draft:
    patient_id, problems = _common(source, request, subjects)
    if request.doNotPerform:
        problems.append(
            Problem(
                f"{source.path}.doNotPerform",
                "not-supported",
                "an order not to give a drug is not mapped",
            )
        )
    concept = _medication(source, request, settings, medications, problems, bortezomib_only=True)
    mapped = ORDER_STATUSES.get(str(request.status))
    if mapped is None:
        problems.append(
            Problem(
                f"{source.path}.status",
                "not-supported",
                f"{request.status!r} is not mapped: active (a course starts), stopped or "
                "completed (it ends)",
            )
        )
    if problems or concept is None or mapped is None:
        raise FhirProblems(problems)
    instruction = request.dosageInstruction[0] if request.dosageInstruction else None
    repeat = instruction.timing.repeat if instruction and instruction.timing else None
    bounds = repeat.boundsPeriod if repeat is not None else None
    timing_path = f"{source.path}.dosageInstruction[0].timing.repeat.boundsPeriod"
    locations: dict[str, tuple[int | None, str]] = {
        "patient_id": (source.entry, f"{source.path}.subject.reference")
    }
    body: dict[str, Any] = {"patient_id": patient_id}
    if mapped == "enrollment":
        body |= _enrollment(source, request, settings, bounds, timing_path, locations, problems)
        key_name = "enrollment"
    else:
        body["type"] = "treatment_change"
        body["action"] = mapped
        key_name = f"treatment_change:{mapped}"
        end = bounds.end if bounds is not None else None
        at, time_problems = _time(end, f"{timing_path}.end", "when the order stopped")
        problems += time_problems
        if at is not None:
            body["occurred_at"] = at.isoformat()
            locations["occurred_at"] = (source.entry, f"{timing_path}.end")
        reason = _reason_text(request.statusReason)
        if reason:
            body["reason"] = reason
            locations["reason"] = (source.entry, f"{source.path}.statusReason")
    key, key_problems = _key(source, key_name)
    problems += key_problems
    if problems:
        raise FhirProblems(problems)
    return _Draft([source], [key], body, locations)


def _enrollment(
    source: _Source,
    request: MedicationRequest,
    settings: Settings,
    bounds: Any,
    timing_path: str,
    locations: dict[str, tuple[int | None, str]],
    problems: list[Problem],
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "enrollment", "drug": "bortezomib"}
    start = bounds.start if bounds is not None else None
    time_location = f"{timing_path}.start" if start is not None else f"{source.path}.authoredOn"
    at, time_problems = _time(
        start if start is not None else request.authoredOn,
        time_location,
        "when the course starts (authoredOn, or the dosage's boundsPeriod.start)",
    )
    problems += time_problems
    if at is not None:
        body["occurred_at"] = at.isoformat()
    dosage = f"{source.path}.dosageInstruction[0]"
    locations |= {
        "occurred_at": (source.entry, time_location),
        "dose_mg_m2": (source.entry, f"{dosage}.doseAndRate[0].doseQuantity"),
        "route": (source.entry, f"{dosage}.route"),
        "schedule": (source.entry, f"{dosage}.timing.repeat"),
        "cycle_length_days": (source.entry, _extension_location(source, "cycle-length-days")),
        "age": (source.entry, _extension_location(source, "age")),
        "risk_factors": (source.entry, _extension_location(source, "risk-factor")),
        "unit": (source.entry, f"{source.path}.performer"),
    }
    locations |= {
        field_name: (source.entry, _extension_location(source, name))
        for name, (field_name, _) in BODY_SIZE.items()
    }
    try:
        regimen = read_regimen(request, settings, source.path)
    except FhirProblems as exc:
        problems += exc.problems
    else:
        for name, value in (
            ("dose_mg_m2", regimen.dose_mg_m2),
            ("route", regimen.route),
            ("schedule", regimen.schedule),
        ):
            if value is not None:
                body[name] = value
    found, ext_problems = _extensions(
        source,
        request,
        {
            "cycle-length-days": "valueInteger",
            "age": "valueInteger",
            "risk-factor": "valueCode",
            **{name: "valueQuantity" for name in BODY_SIZE},
        },
    )
    problems += ext_problems
    for name, (field_name, ucum_code) in BODY_SIZE.items():
        quantity, one_problems = _one(found, name, "valueQuantity", source)
        problems += one_problems
        if quantity is None:
            continue
        if quantity.code != ucum_code or quantity.system not in (None, UCUM):
            problems.append(
                Problem(
                    _extension_location(source, name),
                    "value",
                    f"{EXTENSION}{name} takes a UCUM quantity in {ucum_code!r}, not "
                    f"{quantity.code or quantity.unit!r}",
                )
            )
        elif quantity.value is not None:
            body[field_name] = float(quantity.value)
    for name, field_name in (("cycle-length-days", "cycle_length_days"), ("age", "age")):
        value, one_problems = _one(found, name, "valueInteger", source)
        problems += one_problems
        if value is not None:
            body[field_name] = value
    risks = [str(e.valueCode) for e in found.get("risk-factor", [])]
    if risks:
        body["risk_factors"] = risks
    unit = _unit(request)
    if unit is not None:
        body["unit"] = unit
    return body


def _unit(request: MedicationRequest) -> str | None:
    """The infusion unit: the intended performer's id when it is an organisation or place."""
    performer = request.performer
    if performer is None or not performer.reference:
        return None
    match = re.match(
        r"^(?:.*/)?(Organization|HealthcareService|Location)/([^/]+)$", performer.reference
    )
    return match.group(2) if match else None
