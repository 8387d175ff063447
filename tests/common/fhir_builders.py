"""Contract events (CONTRACT.md dicts) written as the FHIR R4 resources an EHR would send.

The tests of the FHIR ingest mapping build their input here, with `fhir.resources.R4B` models,
following the mapping table of issue 6 (enrollment -> active MedicationRequest, assessment ->
Observations, and so on). The codes and URLs are written out here rather than imported from
`monitor.interop.fhir`, so a wrong constant in the mapper fails the tests instead of agreeing with
them;
only the configurable code lists come from `Settings`, as an EHR interface would be configured.

Each resource gets an `id` and an `identifier` (`urn:example:ehr`, value derived from the event
id); `Expressed.origin` maps each resource's `Type/id` back to the JSON event it expresses.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.dosage import Dosage, DosageDoseAndRate
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import (
    MedicationAdministration,
    MedicationAdministrationDosage,
)
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from fhir.resources.R4B.timing import Timing, TimingRepeat

from monitor.settings import FHIR_BASE, Settings

EHR = "urn:example:ehr"  # the sending EHR's identifier system
EHR_CODES = "urn:example:ehr:codes"  # the EHR's local code system
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
EXTENSION = f"{FHIR_BASE}/StructureDefinition"
# SNOMED CT route codes (mapping table): intravenous, subcutaneous
ROUTE = {"IV": "47625008", "SC": "34206005"}
# times per one week (Timing.repeat frequency / period 1 / periodUnit wk)
FREQUENCY = {"weekly": 1, "twice_weekly": 2}
DOMAINS = ("sensory", "motor", "pain", "autonomic")
# No default codes exist for these: tests configure site codes (Settings below).
AUTONOMIC_CODE = f"{EHR_CODES}|autonomic-neuropathy-grade"
PLASMA_EXCHANGE_CODE = f"{EHR_CODES}|plasma-exchange"
PANEL_CODE = f"{EHR_CODES}|neuropathy-panel"

BundleKind = Literal["transaction", "batch", "collection"]
GradeValue = Literal["integer", "coded"]
AssessmentForm = Literal["observations", "panel"]
ImmunotherapyForm = Literal["procedure", "administration"]


def fhir_settings(**overrides: Any) -> Settings:
    """Default settings plus the site codes the defaults lack (autonomic, plasma exchange)."""
    defaults = Settings()
    site_codes: dict[str, Any] = {
        "fhir_term_codes": defaults.fhir_term_codes | {"autonomic": [AUTONOMIC_CODE]},
        "fhir_immunotherapy_codes": defaults.fhir_immunotherapy_codes
        | {"plasma_exchange": [PLASMA_EXCHANGE_CODE]},
    }
    return Settings(**(site_codes | overrides))


def as_json(model: Resource) -> dict[str, Any]:
    """The JSON object a client sends (fhir.resources 8: pydantic 2 `model_dump`)."""
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def fhir_id(text: str) -> str:
    """A FHIR id (`[A-Za-z0-9.-]{1,64}`) from an event id."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in ".-") else "-" for c in text)
    return cleaned[:64] or "x"


def coding(system_code: str, display: str | None = None) -> Coding:
    system, _, code = system_code.partition("|")
    return Coding(system=system, code=code, display=display)


def concept(system_code: str, text: str | None = None) -> CodeableConcept:
    return CodeableConcept(coding=[coding(system_code)], text=text)


def identifier(value: str) -> Identifier:
    return Identifier(system=EHR, value=value)


def patient(event: Mapping[str, Any]) -> Reference:
    return Reference(reference=f"Patient/{event['patient_id']}")


def route_concept(route: str) -> CodeableConcept:
    return CodeableConcept(coding=[Coding(system=SNOMED, code=ROUTE[route])], text=route)


def dose_quantity(dose: float) -> Quantity:
    return Quantity(value=dose, unit="mg/m2", system=UCUM, code="mg/m2")


def extension(name: str, **value: Any) -> Extension:
    """`{FHIR_BASE}/StructureDefinition/<name>` with one `value[x]` (e.g. valueInteger=3)."""
    return Extension(url=f"{EXTENSION}/{name}", **value)


def integer_extensions(event: Mapping[str, Any], names: Mapping[str, str]) -> list[Extension]:
    """valueInteger extensions of the event fields present (field name -> extension name)."""
    return [
        extension(name, valueInteger=event[field])
        for field, name in names.items()
        if event.get(field) is not None
    ]


def bortezomib(settings: Settings) -> CodeableConcept:
    return concept(settings.fhir_bortezomib_codes[0], text="bortezomib")


def reason_concept(event: Mapping[str, Any]) -> CodeableConcept | None:
    return CodeableConcept(text=event["reason"]) if event.get("reason") else None


# --- one builder per mapping row ----------------------------------------------------------------


def enrollment_request(
    event: Mapping[str, Any],
    settings: Settings,
    *,
    start: Literal["bounds", "authored"] = "bounds",
    medication: Literal["inline", "contained"] = "inline",
) -> MedicationRequest:
    """enrollment -> an active MedicationRequest: dose, route, timing, extensions, performer.

    `start` says where `occurred_at` goes (boundsPeriod.start, or authoredOn alone);
    `medication` whether bortezomib is coded inline or in a contained Medication.
    """
    repeat = TimingRepeat(
        frequency=FREQUENCY[event["schedule"]],
        period=1,
        periodUnit="wk",
        boundsPeriod=Period(start=event["occurred_at"]) if start == "bounds" else None,
    )
    extensions = integer_extensions(event, {"cycle_length_days": "cycle-length-days", "age": "age"})
    extensions += [extension("risk-factor", valueCode=r) for r in event.get("risk_factors", [])]
    fields: dict[str, Any] = {}
    if medication == "inline":
        fields["medicationCodeableConcept"] = bortezomib(settings)
    else:
        fields["contained"] = [Medication(id="med", code=bortezomib(settings))]
        fields["medicationReference"] = Reference(reference="#med")
    return MedicationRequest(
        id=fhir_id(event["event_id"]),
        identifier=[identifier(event["event_id"])],
        status="active",
        intent="order",
        subject=patient(event),
        authoredOn=event["occurred_at"] if start == "authored" else None,
        dosageInstruction=[
            Dosage(
                timing=Timing(repeat=repeat),
                route=route_concept(event["route"]),
                doseAndRate=[DosageDoseAndRate(doseQuantity=dose_quantity(event["dose_mg_m2"]))],
            )
        ],
        extension=extensions or None,
        performer=Reference(reference=f"Organization/{event['unit']}")
        if event.get("unit")
        else None,
        **fields,
    )


def grade_value(grade: int, settings: Settings, form: GradeValue) -> dict[str, Any]:
    """`valueInteger`, or `valueCodeableConcept` with the grade as a code of a grade system."""
    if form == "integer":
        return {"valueInteger": grade}
    system = settings.fhir_grade_systems[0]
    return {
        "valueCodeableConcept": CodeableConcept(coding=[Coding(system=system, code=str(grade))])
    }


def term(domain: str, settings: Settings) -> CodeableConcept:
    codes = {str(k): v for k, v in settings.fhir_term_codes.items()}
    if not codes.get(domain):
        raise ValueError(f"no term code configured for {domain} (see fhir_settings)")
    return concept(codes[domain][0], text=domain)


def graded_domains(event: Mapping[str, Any]) -> list[tuple[str, int]]:
    grades: Mapping[str, int] = event["grades"]
    return [(d, grades[d]) for d in DOMAINS if grades.get(d) is not None]


def assessment_observations(
    event: Mapping[str, Any], settings: Settings, *, value: GradeValue = "integer"
) -> list[Observation]:
    """assessment -> one final Observation per graded domain, all at the same instant."""
    return [
        Observation(
            id=fhir_id(f"{event['event_id']}-{domain}"),
            identifier=[identifier(f"{event['event_id']}/{domain}")],
            status="final",
            code=term(domain, settings),
            subject=patient(event),
            effectiveDateTime=event["occurred_at"],
            extension=integer_extensions(event, {"cycle": "cycle"}) or None,
            **grade_value(grade, settings, value),
        )
        for domain, grade in graded_domains(event)
    ]


def assessment_panel(
    event: Mapping[str, Any], settings: Settings, *, value: GradeValue = "integer"
) -> Observation:
    """assessment -> one Observation (a local panel code) with a component per domain."""
    return Observation(
        id=fhir_id(event["event_id"]),
        identifier=[identifier(event["event_id"])],
        status="final",
        code=concept(PANEL_CODE, text="neuropathy grading"),
        subject=patient(event),
        effectiveDateTime=event["occurred_at"],
        extension=integer_extensions(event, {"cycle": "cycle"}) or None,
        component=[
            ObservationComponent(code=term(domain, settings), **grade_value(grade, settings, value))
            for domain, grade in graded_domains(event)
        ],
    )


def administration(
    event: Mapping[str, Any],
    settings: Settings,
    *,
    effective: Literal["dateTime", "period"] = "dateTime",
) -> MedicationAdministration:
    """administration -> a completed MedicationAdministration with dose, route, cycle, day."""
    return MedicationAdministration(
        id=fhir_id(event["event_id"]),
        identifier=[identifier(event["event_id"])],
        status="completed",
        medicationCodeableConcept=bortezomib(settings),
        subject=patient(event),
        **effective_time(event, effective),
        dosage=MedicationAdministrationDosage(
            dose=dose_quantity(event["dose_mg_m2"]), route=route_concept(event["route"])
        ),
        extension=integer_extensions(event, {"cycle": "cycle", "day": "day"}) or None,
    )


def effective_time(
    event: Mapping[str, Any], effective: Literal["dateTime", "period"]
) -> dict[str, Any]:
    if effective == "dateTime":
        return {"effectiveDateTime": event["occurred_at"]}
    return {"effectivePeriod": Period(start=event["occurred_at"])}


def stopped_request(event: Mapping[str, Any], settings: Settings) -> MedicationRequest:
    """treatment_change discontinued / completed -> MedicationRequest stopped / completed,
    ending at `boundsPeriod.end`, the reason as `statusReason.text`."""
    status = {"discontinued": "stopped", "completed": "completed"}[event["action"]]
    return MedicationRequest(
        id=fhir_id(event["event_id"]),
        identifier=[identifier(event["event_id"])],
        status=status,
        statusReason=reason_concept(event),
        intent="order",
        medicationCodeableConcept=bortezomib(settings),
        subject=patient(event),
        dosageInstruction=[
            Dosage(
                timing=Timing(repeat=TimingRepeat(boundsPeriod=Period(end=event["occurred_at"])))
            )
        ],
    )


def held_administration(event: Mapping[str, Any], settings: Settings) -> MedicationAdministration:
    """treatment_change held -> a stopped MedicationAdministration (the dose not given)."""
    reason = reason_concept(event)
    return MedicationAdministration(
        id=fhir_id(event["event_id"]),
        identifier=[identifier(event["event_id"])],
        status="stopped",
        statusReason=[reason] if reason is not None else None,
        medicationCodeableConcept=bortezomib(settings),
        subject=patient(event),
        effectiveDateTime=event["occurred_at"],
    )


def immunotherapy(
    event: Mapping[str, Any],
    settings: Settings,
    *,
    form: ImmunotherapyForm = "procedure",
    performed: Literal["dateTime", "period"] = "dateTime",
) -> Procedure | MedicationAdministration:
    """immunotherapy -> a completed Procedure, or a MedicationAdministration, coded with the
    first code settings list for the therapy."""
    codes = {str(k): v for k, v in settings.fhir_immunotherapy_codes.items()}
    therapy = event["therapy"]
    if not codes.get(therapy):
        raise ValueError(f"no code configured for {therapy} (see fhir_settings)")
    code = concept(codes[therapy][0], text=therapy)
    common: dict[str, Any] = {
        "id": fhir_id(event["event_id"]),
        "identifier": [identifier(event["event_id"])],
        "status": "completed",
        "subject": patient(event),
    }
    if form == "administration":
        return MedicationAdministration(
            medicationCodeableConcept=code, **effective_time(event, performed), **common
        )
    when = (
        {"performedDateTime": event["occurred_at"]}
        if performed == "dateTime"
        else {"performedPeriod": Period(start=event["occurred_at"])}
    )
    return Procedure(code=code, **when, **common)


def resources_for(
    event: Mapping[str, Any],
    settings: Settings,
    *,
    assessment: AssessmentForm = "observations",
    value: GradeValue = "integer",
    therapy_form: ImmunotherapyForm = "procedure",
) -> list[Resource]:
    """The resources that express one contract event (several Observations for a grading)."""
    kind = event["type"]
    if kind == "enrollment":
        return [enrollment_request(event, settings)]
    if kind == "assessment":
        if assessment == "panel":
            return [assessment_panel(event, settings, value=value)]
        return list(assessment_observations(event, settings, value=value))
    if kind == "administration":
        return [administration(event, settings)]
    if kind == "treatment_change" and event["action"] in ("discontinued", "completed"):
        return [stopped_request(event, settings)]
    if kind == "treatment_change" and event["action"] == "held":
        return [held_administration(event, settings)]
    if kind == "immunotherapy":
        return [immunotherapy(event, settings, form=therapy_form)]
    raise ValueError(f"no FHIR mapping for {kind} {event.get('action', '')}".strip())


# --- bundles -----------------------------------------------------------------------------------


def reference_of(resource: Resource) -> str:
    return f"{resource.get_resource_type()}/{resource.id}"


def full_url(resource: Resource) -> str:
    """A stable `urn:uuid:` per resource, as transaction clients send for new resources."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{EHR}/{reference_of(resource)}')}"


def bundle(resources: Iterable[Resource], kind: BundleKind = "transaction") -> Bundle:
    """A Bundle of the resources; transaction and batch entries POST to the resource type."""
    entries = []
    for resource in resources:
        request = None
        if kind != "collection":
            request = BundleEntryRequest(method="POST", url=resource.get_resource_type())
        entries.append(BundleEntry(fullUrl=full_url(resource), resource=resource, request=request))
    return Bundle(type=kind, entry=entries)


@dataclass(frozen=True)
class Expressed:
    """Events as one Bundle; `origin` maps each resource's `Type/id` to its JSON event id."""

    bundle: Bundle
    origin: dict[str, str]

    def json(self) -> dict[str, Any]:
        return as_json(self.bundle)

    def source_event(self, fhir_source: Sequence[str]) -> str:
        """The one JSON event that the resources of a mapped event's `fhir_source` express."""
        found = {self.origin[ref] for ref in fhir_source}
        if len(found) != 1:
            raise AssertionError(f"{list(fhir_source)} express {sorted(found)}, not one event")
        return found.pop()


def events_bundle(
    events: Iterable[Mapping[str, Any]],
    settings: Settings,
    kind: BundleKind = "transaction",
    **style: Any,
) -> Expressed:
    """A whole events list as one Bundle (`style`: the options of `resources_for`)."""
    resources: list[Resource] = []
    origin: dict[str, str] = {}
    for event in events:
        for resource in resources_for(event, settings, **style):
            ref = reference_of(resource)
            if ref in origin:
                raise ValueError(f"{ref} would express both {origin[ref]} and {event['event_id']}")
            origin[ref] = event["event_id"]
            resources.append(resource)
    return Expressed(bundle(resources, kind), origin)
