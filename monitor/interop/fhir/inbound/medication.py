"""The drug an order or administration is about: inline, contained, or a Medication entry of
the same Bundle (which maps to no event of its own), checked against the configured bortezomib
and immunotherapy codes. Reading the medication and its dose, route and schedule is
`monitor.interop.fhir.medication`'s, shared with the CDS Hooks order check.
"""

from __future__ import annotations

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest

from monitor.interop.fhir.codes import misplaced_system, shown
from monitor.interop.fhir.inbound.common import _Source
from monitor.interop.fhir.medication import immunotherapy_of, is_bortezomib, medication_concept
from monitor.interop.fhir.problems import FhirProblems, Problem
from monitor.settings import Settings


def _names(source: _Source) -> list[str]:
    names = []
    if source.full_url:
        names.append(source.full_url)
    if source.resource_id:
        names.append(f"{source.raw.get('resourceType')}/{source.resource_id}")
    return names


def _referenced(resource: MedicationRequest | MedicationAdministration) -> set[str]:
    reference = resource.medicationReference
    return {reference.reference} if reference is not None and reference.reference else set()


def _medication(
    source: _Source,
    resource: MedicationRequest | MedicationAdministration,
    settings: Settings,
    medications: dict[str, Medication],
    problems: list[Problem],
    bortezomib_only: bool,
) -> CodeableConcept | None:
    try:
        concept = medication_concept(resource, source.path, medications)
    except FhirProblems as exc:
        problems += exc.problems
        return None
    if is_bortezomib(concept, settings) or (
        not bortezomib_only and immunotherapy_of(concept, settings) is not None
    ):
        return concept
    location = (
        f"{source.path}.medicationCodeableConcept"
        if resource.medicationCodeableConcept is not None
        else f"{source.path}.medicationReference"
    )
    expected = " or ".join(settings.fhir_bortezomib_codes)
    hint = misplaced_system(concept, settings.fhir_bortezomib_codes)
    what = (
        f"is not bortezomib ({expected}): v1 monitors bortezomib courses only"
        if bortezomib_only
        else f"is neither bortezomib ({expected}) nor an immunotherapy the service maps "
        "(MONITOR_FHIR_IMMUNOTHERAPY_CODES)"
    )
    problems.append(
        Problem(
            location, "code-invalid", (hint + ". " if hint else "") + f"{shown(concept)} {what}"
        )
    )
    return None
