"""Procedure -> immunotherapy: a therapy recorded as a procedure, by the configured codes
(MONITOR_FHIR_IMMUNOTHERAPY_CODES).
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.procedure import Procedure

from monitor.interop.fhir.codes import shown
from monitor.interop.fhir.inbound.common import (
    _common,
    _Draft,
    _immunotherapy,
    _key,
    _moment,
    _Source,
    _SubjectResolver,
)
from monitor.interop.fhir.medication import immunotherapy_of
from monitor.interop.fhir.problems import FhirProblems, Problem
from monitor.settings import Settings


def _procedure(
    source: _Source, procedure: Procedure, settings: Settings, subjects: _SubjectResolver
) -> _Draft:
    patient_id, problems = _common(source, procedure, subjects)
    therapy = immunotherapy_of(procedure.code, settings)
    if therapy is None:
        codes = "; ".join(
            f"{t}: {', '.join(c) or 'none configured'}"
            for t, c in settings.fhir_immunotherapy_codes.items()
        )
        problems.append(
            Problem(
                f"{source.path}.code",
                "code-invalid",
                f"{shown(procedure.code)} is not an immunotherapy the service maps ({codes}; "
                "set MONITOR_FHIR_IMMUNOTHERAPY_CODES)",
            )
        )
        raise FhirProblems(problems)
    at, time_location = _moment(source, procedure, "performed", "when it was done", problems)
    body: dict[str, Any] = {"patient_id": patient_id}
    if at is not None:
        body["occurred_at"] = at.isoformat()
    key_name = _immunotherapy(source, procedure.status, therapy, body, problems)
    key, key_problems = _key(source, key_name)
    problems += key_problems
    if problems:
        raise FhirProblems(problems)
    locations = {
        "patient_id": (source.entry, f"{source.path}.subject.reference"),
        "occurred_at": (source.entry, time_location),
    }
    return _Draft([source], [key], body, locations)
