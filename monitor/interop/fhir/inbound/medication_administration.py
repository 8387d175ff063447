"""MedicationAdministration -> administration (a bortezomib dose given: dose in mg/m2 or in mg,
route, cycle and day), treatment_change held (a bortezomib dose stopped), or immunotherapy (one
given).
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration

from monitor.interop.fhir.inbound.common import (
    _common,
    _Draft,
    _extension_location,
    _extensions,
    _immunotherapy,
    _key,
    _moment,
    _one,
    _reason_text,
    _Source,
    _SubjectResolver,
)
from monitor.interop.fhir.inbound.medication import _medication
from monitor.interop.fhir.medication import (
    immunotherapy_of,
    is_bortezomib,
    read_given_dose,
    read_route,
)
from monitor.interop.fhir.problems import FhirProblems, Problem
from monitor.settings import Settings


def _administration(
    source: _Source,
    given: MedicationAdministration,
    settings: Settings,
    medications: dict[str, Medication],
    subjects: _SubjectResolver,
) -> _Draft:
    patient_id, problems = _common(source, given, subjects)
    concept = _medication(source, given, settings, medications, problems, bortezomib_only=False)
    if concept is None:
        raise FhirProblems(problems)
    at, time_location = _moment(source, given, "effective", "when it was given", problems)
    locations: dict[str, tuple[int | None, str]] = {
        "patient_id": (source.entry, f"{source.path}.subject.reference"),
        "occurred_at": (source.entry, time_location),
    }
    body: dict[str, Any] = {"patient_id": patient_id}
    if at is not None:
        body["occurred_at"] = at.isoformat()
    therapy = None if is_bortezomib(concept, settings) else immunotherapy_of(concept, settings)
    if therapy is not None:
        key_name = _immunotherapy(source, given.status, therapy, body, problems)
        if given.dosage is not None and given.dosage.dose is not None:
            amount = given.dosage.dose
            body["dose"] = f"{amount.value:g} {amount.unit or amount.code or ''}".strip()
    elif given.status == "completed":
        key_name = "administration"
        body["type"] = "administration"
        dosage = given.dosage
        where = f"{source.path}.dosage"
        locations |= {
            "dose_mg_m2": (source.entry, f"{where}.dose"),
            "dose_mg": (source.entry, f"{where}.dose"),
            "route": (source.entry, f"{where}.route"),
            "cycle": (source.entry, _extension_location(source, "cycle")),
            "day": (source.entry, _extension_location(source, "day")),
        }
        dose_field, dose, dose_problems = read_given_dose(
            dosage.dose if dosage else None, f"{where}.dose"
        )
        route, route_problems = read_route(dosage.route if dosage else None, f"{where}.route")
        problems += dose_problems + route_problems
        if dose_field is not None:
            body[dose_field] = dose
        if route is not None:
            body["route"] = route
        found, ext_problems = _extensions(
            source, given, {"cycle": "valueInteger", "day": "valueInteger"}
        )
        problems += ext_problems
        for name in ("cycle", "day"):
            value, one_problems = _one(found, name, "valueInteger", source)
            problems += one_problems
            if value is not None:
                body[name] = value
    elif given.status == "stopped":
        key_name = "treatment_change:held"
        body |= {"type": "treatment_change", "action": "held"}
        reason = _reason_text(given.statusReason[0] if given.statusReason else None)
        if reason:
            body["reason"] = reason
    else:
        key_name = ""
        problems.append(
            Problem(
                f"{source.path}.status",
                "not-supported",
                f"{given.status!r} is not mapped for bortezomib: completed (a dose given) or "
                "stopped (the course is held)",
            )
        )
    key, key_problems = _key(source, key_name)
    problems += key_problems
    if problems:
        raise FhirProblems(problems)
    return _Draft([source], [key], body, locations)
