"""A Bundle (transaction, batch or collection) or a lone resource in, a `FhirMapping` out.

The Bundle's own checks (type, size, elements, entry methods), each entry parsed, each resource
dispatched by resourceType to its mapper, the Medication and Patient entries accounted for (read
only as what the other entries reference), the body measurements given to the administrations
and orders they size, the gradings joined into assessments, and every draft validated. Nothing
is stored and nothing raised.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.adverseevent import AdverseEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from monitor.interop.fhir.inbound.adverse_event import _adverse_event
from monitor.interop.fhir.inbound.body_size import (
    _Measurement,
    _measurement,
    _supply_body_size,
    is_body_measurement,
)
from monitor.interop.fhir.inbound.common import (
    BundleKind,
    EntryProblem,
    FhirMapping,
    MappedEvent,
    _Draft,
    _Source,
)
from monitor.interop.fhir.inbound.medication import _names, _referenced
from monitor.interop.fhir.inbound.medication_administration import _administration
from monitor.interop.fhir.inbound.medication_request import _request
from monitor.interop.fhir.inbound.observation import _Grading, _join_gradings, _observation
from monitor.interop.fhir.inbound.parse import _parse
from monitor.interop.fhir.inbound.procedure import _procedure
from monitor.interop.fhir.inbound.questionnaire_response import _questionnaire_response
from monitor.interop.fhir.inbound.subject import _Subjects
from monitor.interop.fhir.inbound.validation import _validate
from monitor.interop.fhir.problems import FhirProblems
from monitor.settings import Settings

MAPPED_TYPES = (
    "Observation",
    "AdverseEvent",
    "MedicationRequest",
    "MedicationAdministration",
    "Procedure",
    "QuestionnaireResponse",
)
# read only as what the mapped resources of the same Bundle reference: no event of their own
LOOKUP_TYPES = ("Medication", "Patient")
# what a Bundle may hold, from its model (the entries are parsed one by one, below)
BUNDLE_ELEMENTS = {"resourceType"} | {n for n in Bundle.model_fields if not n.endswith("__ext")}


def map_fhir(payload: Any, settings: Settings) -> FhirMapping:
    """Map a decoded FHIR JSON body to events; every problem is reported, nothing raised."""
    if not isinstance(payload, dict) or not isinstance(payload.get("resourceType"), str):
        return FhirMapping(
            "resource",
            0,
            [],
            [EntryProblem(None, "resourceType", "structure", "the body is not a FHIR resource")],
        )
    if payload["resourceType"] != "Bundle":
        source, problems = _parse(None, payload, None)
        sources = [source] if source is not None else []
        return _map_sources("resource", 1, sources, problems, settings)
    return _map_bundle(payload, settings)


def _map_bundle(payload: dict[str, Any], settings: Settings) -> FhirMapping:
    kind = payload.get("type")
    entries = payload.get("entry")
    entries = [] if entries is None else entries
    request_problems: list[EntryProblem] = []
    if kind not in ("transaction", "batch", "collection"):
        request_problems.append(
            EntryProblem(
                None,
                "Bundle.type",
                "not-supported",
                f"{kind!r} is not accepted: send a transaction, batch or collection Bundle",
            )
        )
    if not isinstance(entries, list):
        request_problems.append(EntryProblem(None, "Bundle.entry", "structure", "is not a list"))
        entries = []
    elif len(entries) > settings.max_batch_events:
        request_problems.append(
            EntryProblem(
                None,
                "Bundle.entry",
                "value",
                f"{len(entries)} entries: at most {settings.max_batch_events} per request",
            )
        )
    extra = sorted(set(payload) - BUNDLE_ELEMENTS)
    for name in extra:
        request_problems.append(
            EntryProblem(None, f"Bundle.{name}", "structure", "unknown element of a Bundle")
        )
    if request_problems:
        return FhirMapping(
            kind if kind in ("transaction", "batch", "collection") else "batch",
            len(entries),
            [],
            request_problems,
        )
    assert kind in ("transaction", "batch", "collection")
    sources: list[_Source] = []
    problems: list[EntryProblem] = []
    for index, entry in enumerate(entries):
        where = f"Bundle.entry[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            problems.append(
                EntryProblem(index, f"{where}.resource", "required", "the entry has no resource")
            )
            continue
        request = entry.get("request")
        if kind in ("transaction", "batch") and isinstance(request, dict):
            method = request.get("method")
            if method not in ("POST", "PUT"):
                problems.append(
                    EntryProblem(
                        index,
                        f"{where}.request.method",
                        "not-supported",
                        f"{method!r}: entries are submitted with POST (or PUT); the service "
                        "does not serve reads or deletes here",
                    )
                )
                continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        source, parse_problems = _parse(index, entry["resource"], full_url)
        problems += parse_problems
        if source is not None:
            sources.append(source)
    return _map_sources(kind, len(entries), sources, problems, settings)


def _map_sources(
    kind: BundleKind,
    entry_count: int,
    sources: list[_Source],
    problems: list[EntryProblem],
    settings: Settings,
) -> FhirMapping:
    failed = {p.entry for p in problems}
    medications = {
        name: s.resource
        for s in sources
        if isinstance(s.resource, Medication)
        for name in _names(s)
    }
    used_medications: set[str] = set()
    subjects = _Subjects.of(sources, settings)
    drafts: list[_Draft] = []
    gradings: list[_Grading] = []
    measurements: list[_Measurement] = []
    for source in sources:
        if source.entry in failed or isinstance(source.resource, Medication | Patient):
            continue
        try:
            if isinstance(source.resource, Observation):
                if is_body_measurement(source.resource):
                    measurements.append(_measurement(source, source.resource, subjects))
                else:
                    gradings.append(_observation(source, source.resource, settings, subjects))
            elif isinstance(source.resource, AdverseEvent):
                gradings.append(_adverse_event(source, source.resource, settings, subjects))
            elif isinstance(source.resource, MedicationRequest):
                drafts.append(_request(source, source.resource, settings, medications, subjects))
                used_medications |= _referenced(source.resource)
            elif isinstance(source.resource, MedicationAdministration):
                drafts.append(
                    _administration(source, source.resource, settings, medications, subjects)
                )
                used_medications |= _referenced(source.resource)
            elif isinstance(source.resource, Procedure):
                drafts.append(_procedure(source, source.resource, settings, subjects))
            elif isinstance(source.resource, QuestionnaireResponse):
                drafts.append(_questionnaire_response(source, source.resource, subjects))
            else:
                problems.append(_unsupported(source))
        except FhirProblems as exc:
            problems += [
                EntryProblem(source.entry, p.location, p.code, p.message) for p in exc.problems
            ]
    consumed: dict[int, str] = {}
    for source in sources:
        if not isinstance(source.resource, Medication):
            continue
        if source.entry is not None and used_medications & set(_names(source)):
            consumed[source.entry] = "read as the medication an order or administration references"
        else:
            problems.append(
                EntryProblem(
                    source.entry,
                    source.path,
                    "not-supported",
                    (
                        "a Medication is read only as the medication of an order or administration "
                        "in the same Bundle, and no entry references this one"
                    ),
                )
            )
    for source in sources:
        if isinstance(source.resource, Patient) and source.entry not in subjects.used:
            problems.append(_unsupported(source) if source.entry is None else _unread(source))
    consumed |= subjects.consumed()
    consumed |= _supply_body_size(drafts, measurements, problems)
    drafts += _join_gradings(gradings, problems)
    events: list[MappedEvent] = []
    for draft in drafts:
        event = _validate(draft, problems)
        if event is not None:
            events.append(MappedEvent(draft.entries(), event))
    return FhirMapping(kind, entry_count, events, problems, consumed)


def _unsupported(source: _Source) -> EntryProblem:
    resource_type = source.raw.get("resourceType")
    why = (
        "Patient resources are not stored: the service keeps pseudonymous ids only; send the "
        "Patient as an entry of a Bundle whose resources reference it (its identifier becomes "
        "their pseudonymous patient id), or reference the patient as Patient/{id}"
        if resource_type == "Patient"
        else f"{resource_type} is not mapped; the service reads "
        + ", ".join(MAPPED_TYPES)
        + " (and a Medication or Patient they reference)"
    )
    return EntryProblem(source.entry, f"{source.path}.resourceType", "not-supported", why)


def _unread(source: _Source) -> EntryProblem:
    return EntryProblem(
        source.entry,
        source.path,
        "not-supported",
        "a Patient is read only as the subject of other entries in the same Bundle (by its "
        "fullUrl, or Patient/{id}), and no entry references this one: it is not stored",
    )
