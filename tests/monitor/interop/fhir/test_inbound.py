"""FHIR in (monitor/fhir/inbound.py): bad FHIR gets an exact problem, good FHIR exact events.

Resources are built with fhir.resources models; a bad case starts from a valid resource's JSON
and changes one thing, since the models themselves refuse to build most bad input.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
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
from hypothesis import given as given_
from hypothesis import settings
from hypothesis import strategies as st

from monitor.interop.fhir.codes import EXTENSION, NCIT, SNOMED, UCUM, route_concept
from monitor.interop.fhir.inbound import FhirMapping, map_fhir
from monitor.interop.fhir.medication import regimen_dosage
from monitor.settings import ATC, FHIR_BASE, MEDDRA, RXNORM, Settings

SETTINGS = Settings()
TERMS = {"sensory": "10034620", "motor": "10034580", "pain": "10029223"}
WHEN = "2026-03-02T08:40:00+01:00"
BORTEZOMIB = CodeableConcept(coding=[Coding(system=RXNORM, code="358258", display="bortezomib")])


def as_json(resource: Any) -> dict[str, Any]:
    data: dict[str, Any] = resource.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def grading(domain: str = "sensory", grade: int = 2, ident: str = "o1", **kw: Any) -> Observation:
    values: dict[str, Any] = {
        "id": ident,
        "identifier": [Identifier(system="urn:ehr:obs", value=ident)],
        "status": "final",
        "subject": Reference(reference="Patient/P-1"),
        "code": CodeableConcept(coding=[Coding(system=MEDDRA, code=TERMS[domain])]),
        "effectiveDateTime": WHEN,
        "valueInteger": grade,
    } | kw
    return Observation(**values)


def order(**kw: Any) -> MedicationRequest:
    values: dict[str, Any] = {
        "id": "m1",
        "identifier": [Identifier(system="urn:ehr:order", value="m1")],
        "status": "active",
        "intent": "order",
        "subject": Reference(reference="Patient/P-1"),
        "authoredOn": "2026-03-01T09:00:00+01:00",
        "medicationCodeableConcept": BORTEZOMIB,
        "dosageInstruction": [regimen_dosage(1.3, "SC", "weekly")],
    } | kw
    return MedicationRequest(**values)


def given(**kw: Any) -> MedicationAdministration:
    values: dict[str, Any] = {
        "id": "a1",
        "identifier": [Identifier(system="urn:ehr:mar", value="a1")],
        "status": "completed",
        "subject": Reference(reference="Patient/P-1"),
        "effectiveDateTime": "2026-03-03T10:00:00+01:00",
        "medicationCodeableConcept": BORTEZOMIB,
        "dosage": MedicationAdministrationDosage(
            dose=Quantity(value=1.3, unit="mg/m2", system=UCUM, code="mg/m2"),
            route=route_concept("SC"),
        ),
    } | kw
    return MedicationAdministration(**values)


def procedure(code: Coding, **kw: Any) -> Procedure:
    values: dict[str, Any] = {
        "id": "p1",
        "identifier": [Identifier(system="urn:ehr:proc", value="p1")],
        "status": "completed",
        "subject": Reference(reference="Patient/P-1"),
        "code": CodeableConcept(coding=[code]),
        "performedDateTime": "2026-04-01T10:00:00+02:00",
    } | kw
    return Procedure(**values)


def bundle(*resources: Any, kind: str = "batch") -> dict[str, Any]:
    request = kind in ("batch", "transaction")
    return as_json(
        Bundle(
            type=kind,
            entry=[
                BundleEntry(
                    fullUrl=f"urn:uuid:00000000-0000-4000-8000-{index:012d}",
                    resource=resource,
                    request=BundleEntryRequest(method="POST", url=resource.get_resource_type())
                    if request
                    else None,
                )
                for index, resource in enumerate(resources)
            ],
        )
    )


def mapped(payload: Any, settings: Settings = SETTINGS) -> FhirMapping:
    return map_fhir(payload, settings)


def only_event(payload: Any, settings: Settings = SETTINGS) -> dict[str, Any]:
    mapping = mapped(payload, settings)
    assert not mapping.problems, [str(p) for p in mapping.problems]
    assert len(mapping.events) == 1
    event: dict[str, Any] = mapping.events[0].event.model_dump(mode="json", exclude_none=True)
    return event


def edit(resource: Any, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(as_json(resource))
    change(data)
    return data


# --- bad FHIR: each gets one exact problem -----------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target = data
        parts = path.split(".")
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is _DELETE:
            del target[parts[-1]]
        else:
            target[parts[-1]] = value

    return change


_DELETE = object()

BAD = [
    pytest.param(
        edit(grading(), _set("code.coding.0.system", SNOMED)),
        "Observation.code",
        "code-invalid",
        f"10034620 is a MedDRA code, but its system is '{SNOMED}'; MedDRA's system is {MEDDRA}",
        id="wrong code system",
    ),
    pytest.param(
        edit(grading(), _set("code.coding.0.code", "10012345")),
        "Observation.code",
        "code-invalid",
        f"{MEDDRA}|10012345 is not a CTCAE neuropathy term the service maps",
        id="unknown term",
    ),
    pytest.param(
        edit(grading(), _set("subject", _DELETE)),
        "Observation.subject",
        "required",
        "is required: the Patient/{id} the resource is about",
        id="missing subject",
    ),
    pytest.param(
        edit(grading(), _set("subject", {"reference": "Group/7"})),
        "Observation.subject.reference",
        "value",
        "'Group/7' is not a Patient/{id} reference",
        id="subject not a patient",
    ),
    pytest.param(
        edit(grading(), _set("subject", {"reference": "Patient/Jane Doe"})),
        "Observation.subject.reference",
        "value",
        "patient_id: 'Jane Doe' is not a valid id",
        id="patient id not pseudonymous",
    ),
    pytest.param(
        edit(grading(), _set("effectiveDateTime", "2026-03-02T08:40:00")),
        "Observation.effectiveDateTime",
        "value",
        "'2026-03-02T08:40:00' has no UTC offset: clinical times must carry one",
        id="naive time",
    ),
    pytest.param(
        edit(grading(), _set("effectiveDateTime", "2026-03-02")),
        "Observation.effectiveDateTime",
        "value",
        "2026-03-02 is a date without a time: give a date-time with an offset",
        id="date only",
    ),
    pytest.param(
        edit(grading(), _set("effectiveDateTime", _DELETE)),
        "Observation.effectiveDateTime",
        "required",
        "is required: when the grading was done",
        id="no time",
    ),
    pytest.param(
        as_json(grading(grade=5)),
        "Observation.valueInteger",
        "value",
        "grades.sensory: 5 is out of range: must be at most 4 (CTCAE v5 sensory neuropathy",
        id="grade out of range",
    ),
    pytest.param(
        as_json(grading("pain", 4)),
        "Observation.valueInteger",
        "value",
        "grades.pain: 4 is out of range: must be at most 3 (CTCAE v5 neuralgia is graded 0-3)",
        id="neuralgia grade out of range",
    ),
    pytest.param(
        as_json(grading(grade=-1)),
        "Observation.valueInteger",
        "value",
        "grades.sensory: -1 is out of range: must be at least 0",
        id="negative grade",
    ),
    pytest.param(
        edit(grading(), _set("valueInteger", "2")),
        "Observation.valueInteger",
        "value",
        "'2' is not a whole number (write it without quotes)",
        id="quoted grade",
    ),
    pytest.param(
        edit(grading(), _set("valueInteger", _DELETE)),
        "Observation.value[x]",
        "required",
        "is required: the CTCAE grade",
        id="no grade",
    ),
    pytest.param(
        edit(
            grading(),
            lambda d: (d.pop("valueInteger"), d.update(valueString="grade 2")),
        ),
        "Observation.value[x]",
        "value",
        "valueString is not a grade",
        id="grade as text",
    ),
    pytest.param(
        edit(
            grading(),
            lambda d: (
                d.pop("valueInteger"),
                d.update(valueCodeableConcept={"coding": [{"system": "urn:other", "code": "2"}]}),
            ),
        ),
        "Observation.valueCodeableConcept",
        "code-invalid",
        "urn:other|2 is not a coded CTCAE grade",
        id="coded grade, unknown system",
    ),
    pytest.param(
        edit(grading(), _set("status", "preliminary")),
        "Observation.status",
        "value",
        "'preliminary' is not mapped: only final, amended or corrected gradings",
        id="preliminary grading",
    ),
    pytest.param(
        edit(grading(), lambda d: [d.pop("identifier"), d.pop("id")]),
        "Observation.identifier",
        "required",
        "no identifier, fullUrl or id: an event id cannot be derived",
        id="nothing identifies it",
    ),
    pytest.param(
        edit(grading(), _set("modifierExtension", [{"url": "urn:x", "valueBoolean": True}])),
        "Observation.modifierExtension",
        "not-supported",
        "a modifier extension changes the resource's meaning",
        id="modifier extension",
    ),
    pytest.param(
        edit(grading(), _set("extension", [{"url": EXTENSION + "cylce", "valueInteger": 2}])),
        "Observation.extension[0].url",
        "not-supported",
        "is not an extension of this service on a Observation",
        id="misspelt own extension",
    ),
    pytest.param(
        edit(grading(), _set("colour", "red")),
        "Observation.colour",
        "structure",
        "unknown element: check its name against FHIR R4",
        id="unknown element",
    ),
    pytest.param(
        as_json(
            order(
                medicationCodeableConcept=CodeableConcept(
                    coding=[Coding(system=RXNORM, code="6809", display="metformin")]
                )
            )
        ),
        "MedicationRequest.medicationCodeableConcept",
        "code-invalid",
        f"{RXNORM}|6809 (metformin) is not bortezomib ({RXNORM}|358258): v1 monitors "
        "bortezomib courses only",
        id="unknown drug ordered",
    ),
    pytest.param(
        as_json(
            given(
                medicationCodeableConcept=CodeableConcept(
                    coding=[Coding(system=RXNORM, code="6809", display="metformin")]
                )
            )
        ),
        "MedicationAdministration.medicationCodeableConcept",
        "code-invalid",
        "is neither bortezomib",
        id="unknown drug given",
    ),
    pytest.param(
        edit(order(), _set("dosageInstruction.0.doseAndRate.0.doseQuantity.code", "mg")),
        "MedicationRequest.dosageInstruction[0].doseAndRate[0].doseQuantity.code",
        "value",
        "unit 'mg' is not mg/m2 (UCUM): the dose must be per body surface area",
        id="absolute dose",
    ),
    pytest.param(
        edit(given(), _set("dosage.dose.code", "g")),
        "MedicationAdministration.dosage.dose.code",
        "value",
        "unit 'g' is not mg/m2 or mg (UCUM): the dose per body surface area, or in mg",
        id="administered dose in g",
    ),
    pytest.param(
        edit(given(), lambda data: data["dosage"]["dose"].update(code="mg", unit="mg", value=12)),
        "MedicationAdministration.dosage.dose",
        "value",
        "dose_mg: 12.0 is out of range: must be at most 10",
        id="administered dose in mg out of range",
    ),
    pytest.param(
        edit(order(), _set("dosageInstruction.0.doseAndRate.0.doseQuantity.value", 2.5)),
        "MedicationRequest.dosageInstruction[0].doseAndRate[0].doseQuantity",
        "value",
        "dose_mg_m2: 2.5 is out of range: must be at most 1.6",
        id="dose out of range",
    ),
    pytest.param(
        edit(order(), _set("dosageInstruction.0.route.coding.0.code", "26643006")),
        "MedicationRequest.dosageInstruction[0].route",
        "code-invalid",
        "is not a route the service knows",
        id="oral route",
    ),
    pytest.param(
        edit(order(), _set("dosageInstruction.0.timing.repeat.frequency", 3)),
        "MedicationRequest.dosageInstruction[0].timing.repeat",
        "value",
        "3 per 1 wk is not a bortezomib schedule the service knows",
        id="three times a week",
    ),
    pytest.param(
        edit(order(), _set("dosageInstruction.0.timing", _DELETE)),
        "MedicationRequest.dosageInstruction[0].timing.repeat",
        "value",
        "schedule: is required",
        id="no schedule",
    ),
    pytest.param(
        edit(order(), _set("status", "draft")),
        "MedicationRequest.status",
        "not-supported",
        "'draft' is not mapped: active (a course starts), stopped or completed",
        id="draft order",
    ),
    pytest.param(
        as_json(order(status="stopped")),
        "MedicationRequest.dosageInstruction[0].timing.repeat.boundsPeriod.end",
        "required",
        "is required: when the order stopped",
        id="stopped order without end",
    ),
    pytest.param(
        as_json(given(status="in-progress")),
        "MedicationAdministration.status",
        "not-supported",
        "'in-progress' is not mapped for bortezomib",
        id="bortezomib administration in progress",
    ),
    pytest.param(
        as_json(procedure(Coding(system=SNOMED, code="1234567"))),
        "Procedure.code",
        "code-invalid",
        "plasma_exchange: none configured",
        id="procedure not configured",
    ),
    pytest.param(
        {"resourceType": "Patient", "id": "P-1"},
        "Patient.resourceType",
        "not-supported",
        "Patient resources are not stored",
        id="patient resource",
    ),
    pytest.param(
        {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}},
        "Encounter.resourceType",
        "not-supported",
        "Encounter is not mapped",
        id="unmapped resource",
    ),
    pytest.param(
        as_json(Medication(id="bz", code=BORTEZOMIB)),
        "Medication",
        "not-supported",
        "a Medication is read only as the medication of an order or administration",
        id="a lone medication",
    ),
    pytest.param(
        {"resourceType": "Nonsense"},
        "Nonsense.resourceType",
        "not-supported",
        "'Nonsense' is not a FHIR R4 resource type",
        id="not FHIR",
    ),
]


@pytest.mark.parametrize(("payload", "location", "code", "message"), BAD)
def test_bad_fhir_gets_the_exact_problem(
    payload: dict[str, Any], location: str, code: str, message: str
) -> None:
    mapping = mapped(payload)
    assert mapping.events == []
    found = [(p.location, p.code) for p in mapping.problems]
    assert (location, code) in found, [str(p) for p in mapping.problems]
    problem = mapping.problems[found.index((location, code))]
    assert message in problem.message, problem.message


def test_bad_entry_in_a_bundle_is_named_by_its_index() -> None:
    mapping = mapped(bundle(order(), grading(grade=7, ident="o2")))
    assert [str(p) for p in mapping.problems] == [
        "Bundle.entry[1].resource.valueInteger: grades.sensory: 7 is out of range: must be at "
        "most 4 (CTCAE v5 sensory neuropathy is graded 0-4)"
    ]
    assert mapping.problems[0].entry == 1
    assert [m.entries for m in mapping.events] == [(0,)]


@pytest.mark.parametrize(
    ("payload", "location", "message"),
    [
        ({"resourceType": "Bundle", "type": "searchset"}, "Bundle.type", "'searchset' is not"),
        ({"resourceType": "Bundle", "type": "batch", "entry": {}}, "Bundle.entry", "not a list"),
        ({"resourceType": "Bundle", "type": "batch", "entries": []}, "Bundle.entries", "unknown"),
        ([1, 2], "resourceType", "the body is not a FHIR resource"),
    ],
)
def test_bad_bundles_are_refused_as_a_whole(payload: Any, location: str, message: str) -> None:
    mapping = mapped(payload)
    assert mapping.events == []
    assert [(p.entry, p.location) for p in mapping.problems] == [(None, location)]
    assert message in mapping.problems[0].message


def test_too_many_entries() -> None:
    settings = Settings(max_batch_events=2)
    mapping = mapped(bundle(grading(ident="a"), grading(ident="b"), grading(ident="c")), settings)
    assert [str(p) for p in mapping.problems] == ["Bundle.entry: 3 entries: at most 2 per request"]


def test_entry_methods_other_than_submission_are_refused() -> None:
    payload = bundle(grading())
    payload["entry"][0]["request"] = {"method": "DELETE", "url": "Observation/o1"}
    assert [p.location for p in mapped(payload).problems] == ["Bundle.entry[0].request.method"]


# --- good FHIR: the events -----------------------------------------------------------------


def test_a_grading_maps_to_an_assessment_keeping_its_offset() -> None:
    event = only_event(as_json(grading("motor", 3)))
    assert event["event_id"].startswith("fhir-")
    assert len(event["event_id"]) == 37
    assert event | {"event_id": "x"} == {
        "event_id": "x",
        "type": "assessment",
        "patient_id": "P-1",
        "occurred_at": WHEN,
        "grades": {"motor": 3},
        "extra": {"fhir_source": ["Observation/o1"]},
    }


def test_observations_of_one_patient_and_time_make_one_assessment() -> None:
    mapping = mapped(
        bundle(
            grading("sensory", 2, "o1"),
            grading("pain", 1, "o2", effectiveDateTime="2026-03-02T07:40:00Z"),  # same instant
            grading("motor", 1, "o3", effectiveDateTime="2026-03-09T08:40:00+01:00"),
        )
    )
    assert not mapping.problems
    events = {m.entries: m.event.model_dump(mode="json", exclude_none=True) for m in mapping.events}
    assert set(events) == {(0, 1), (2,)}
    assert events[(0, 1)]["grades"] == {"sensory": 2, "pain": 1}
    assert events[(0, 1)]["extra"] == {"fhir_source": ["Observation/o1", "Observation/o2"]}
    assert events[(2,)]["grades"] == {"motor": 1}


def test_a_bad_member_fails_its_whole_assessment() -> None:
    mapping = mapped(bundle(grading("sensory", 2, "o1"), grading("pain", 9, "o2")))
    assert mapping.events == []
    by_entry = {p.entry: p for p in mapping.problems}
    assert set(by_entry) == {0, 1}
    assert "grades.pain: 9 is out of range" in by_entry[1].message
    assert by_entry[0].message.startswith("rejected with entry 1: the Observations of one")


def test_two_gradings_of_one_domain_at_one_time_conflict() -> None:
    mapping = mapped(bundle(grading("sensory", 2, "o1"), grading("sensory", 3, "o2")))
    assert mapping.events == []
    assert [p.code for p in mapping.problems if p.entry == 1] == ["conflict"]


def test_an_observation_with_components_is_one_assessment() -> None:
    panel = Observation(
        id="panel",
        identifier=[Identifier(system="urn:ehr:obs", value="panel-1")],
        status="amended",
        subject=Reference(reference="Patient/P-1"),
        code=CodeableConcept(text="neuropathy grading"),
        effectiveInstant="2026-03-02T07:40:00Z",
        component=[
            ObservationComponent(
                code=CodeableConcept(coding=[Coding(system=MEDDRA, code=TERMS[d])]),
                valueInteger=g,
            )
            for d, g in (("sensory", 1), ("motor", 2), ("pain", 0))
        ],
        extension=[Extension(url=EXTENSION + "cycle", valueInteger=3)],
    )
    event = only_event(as_json(panel))
    assert event["grades"] == {"sensory": 1, "motor": 2, "pain": 0}
    assert event["cycle"] == 3
    assert event["occurred_at"] == "2026-03-02T07:40:00Z"


def test_a_grading_carries_the_version_2_findings_as_extensions() -> None:
    """INCAT and new weakness (V1, V9's inputs) ride on the grading Observation; Observations
    joined into one assessment give them once."""
    sensory = grading(
        "sensory",
        1,
        "o1",
        extension=[
            Extension(url=EXTENSION + "incat", valueInteger=3),
            Extension(url=EXTENSION + "new-weakness", valueBoolean=True),
        ],
    )
    motor = grading(
        "motor", 2, "o2", extension=[Extension(url=EXTENSION + "incat", valueInteger=3)]
    )
    event = only_event(bundle(sensory, motor))
    assert event["grades"] == {"sensory": 1, "motor": 2}
    assert event["findings"] == {"incat": 3, "new_weakness": True}


@pytest.mark.parametrize(
    ("extensions", "says"),
    [
        (
            [Extension(url=EXTENSION + "incat", valueInteger=11)],
            "findings.incat: 11 is out of range",
        ),
        ([Extension(url=EXTENSION + "new-weakness", valueInteger=1)], "takes a valueBoolean"),
    ],
    ids=["incat-out-of-range", "weakness-not-boolean"],
)
def test_findings_out_of_range_or_of_another_type_are_refused(
    extensions: list[Extension], says: str
) -> None:
    problems = mapped(as_json(grading(extension=extensions))).problems
    assert problems
    assert says in " ".join(str(p) for p in problems)


def test_joined_gradings_with_different_findings_conflict() -> None:
    first = grading(
        "sensory", 1, "o1", extension=[Extension(url=EXTENSION + "incat", valueInteger=2)]
    )
    second = grading(
        "motor", 1, "o2", extension=[Extension(url=EXTENSION + "incat", valueInteger=4)]
    )
    mapping = mapped(bundle(first, second))
    assert mapping.events == []
    assert "different incat values" in " ".join(str(p) for p in mapping.problems)


def test_coded_grades_ncit_terms_and_autonomic_by_configuration() -> None:
    settings = Settings(
        fhir_term_codes={
            "sensory": [f"{MEDDRA}|10034620", f"{NCIT}|C-SENSORY"],
            "autonomic": ["urn:site:codes|AUTO"],
        }
    )
    coded = grading(
        ident="o9",
        code=CodeableConcept(coding=[Coding(system=NCIT, code="C-SENSORY")]),
        valueInteger=None,
        valueCodeableConcept=CodeableConcept(
            coding=[Coding(system=f"{FHIR_BASE}/CodeSystem/ctcae-grade", code="3")]
        ),
    )
    autonomic = grading(
        ident="o10", code=CodeableConcept(coding=[Coding(system="urn:site:codes", code="AUTO")])
    )
    mapping = mapped(bundle(coded, autonomic), settings)
    assert not mapping.problems
    assert mapping.events[0].event.model_dump()["grades"] == {
        "sensory": 3,
        "motor": None,
        "pain": None,
        "autonomic": 2,
    }
    # without the configuration, the same NCIt grading is refused and says how to allow it
    refused = mapped(as_json(coded))
    assert "NCIt codes are read once configured in MONITOR_FHIR_TERM_CODES" in str(
        refused.problems[0]
    )


def test_an_order_maps_to_an_enrollment() -> None:
    request = order(
        dosageInstruction=[regimen_dosage(1.3, "IV", "twice_weekly")],
        extension=[
            Extension(url=EXTENSION + "cycle-length-days", valueInteger=28),
            Extension(url=EXTENSION + "age", valueInteger=71),
            Extension(url=EXTENSION + "risk-factor", valueCode="diabetes"),
            Extension(url=EXTENSION + "risk-factor", valueCode="prior_thalidomide"),
            Extension(url="http://hospital.example/ext/ward", valueString="7B"),  # not ours
        ],
        performer=Reference(reference="Organization/u7"),
    )
    event = only_event(as_json(request))
    assert {k: v for k, v in event.items() if k != "event_id"} == {
        "type": "enrollment",
        "patient_id": "P-1",
        "occurred_at": "2026-03-01T09:00:00+01:00",
        "drug": "bortezomib",
        "dose_mg_m2": 1.3,
        "route": "IV",
        "schedule": "twice_weekly",
        "cycle_length_days": 28,
        "age": 71,
        "risk_factors": ["diabetes", "prior_thalidomide"],
        "concomitant": [],
        "unit": "u7",
        "extra": {"fhir_source": ["MedicationRequest/m1"]},
    }


@pytest.mark.parametrize(
    ("extensions", "expected"),
    [
        ([("body-surface-area", 1.82, "m2")], {"bsa_m2": 1.82}),
        (
            [("body-height", 170, "cm"), ("body-weight", 70.5, "kg")],
            {"height_cm": 170.0, "weight_kg": 70.5},
        ),
    ],
    ids=["bsa", "height-and-weight"],
)
def test_an_order_carries_the_body_size_for_doses_in_mg(
    extensions: list[tuple[str, float, str]], expected: dict[str, float]
) -> None:
    request = order(
        dosageInstruction=[regimen_dosage(1.3, "SC", "weekly")],
        extension=[
            Extension(
                url=EXTENSION + name,
                valueQuantity=Quantity(value=value, unit=code, system=UCUM, code=code),
            )
            for name, value, code in extensions
        ],
    )
    event = only_event(as_json(request))
    assert {k: event[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("name", "value", "code", "says"),
    [
        ("body-weight", 154, "[lb_av]", "takes a UCUM quantity in 'kg', not '[lb_av]'"),
        ("body-surface-area", 4.2, "m2", "bsa_m2: 4.2 is out of range: must be at most 3.0"),
    ],
    ids=["pounds", "out-of-range"],
)
def test_a_body_size_in_other_units_or_out_of_range_is_refused(
    name: str, value: float, code: str, says: str
) -> None:
    request = order(
        dosageInstruction=[regimen_dosage(1.3, "SC", "weekly")],
        extension=[
            Extension(
                url=EXTENSION + name,
                valueQuantity=Quantity(value=value, unit=code, system=UCUM, code=code),
            )
        ],
    )
    problems = mapped(as_json(request)).problems
    assert problems
    assert says in str(problems[0])
    assert name in str(problems[0])


def test_a_course_start_in_the_timing_wins_over_authored_on() -> None:
    dosage = regimen_dosage(1.3, "SC", "weekly")
    assert dosage.timing is not None
    assert dosage.timing.repeat is not None
    dosage.timing.repeat.boundsPeriod = Period(start="2026-03-04T08:00:00+01:00")
    event = only_event(as_json(order(dosageInstruction=[dosage])))
    assert event["occurred_at"] == "2026-03-04T08:00:00+01:00"


@pytest.mark.parametrize(
    ("status", "action"), [("stopped", "discontinued"), ("completed", "completed")]
)
def test_an_ended_order_maps_to_a_treatment_change(status: str, action: str) -> None:
    dosage = regimen_dosage(1.0, "SC", "weekly")
    assert dosage.timing is not None
    assert dosage.timing.repeat is not None
    dosage.timing.repeat.boundsPeriod = Period(
        start="2026-03-01T09:00:00+01:00", end="2026-05-01T09:00:00+02:00"
    )
    request = order(
        status=status,
        dosageInstruction=[dosage],
        statusReason=CodeableConcept(text="grade 3 neuropathy"),
    )
    event = only_event(as_json(request))
    assert (event["type"], event["action"], event["occurred_at"], event["reason"]) == (
        "treatment_change",
        action,
        "2026-05-01T09:00:00+02:00",
        "grade 3 neuropathy",
    )
    # the same order, active, is the enrollment: another event id
    assert event["event_id"] != only_event(as_json(order(dosageInstruction=[dosage])))["event_id"]


def test_administrations_given_and_stopped() -> None:
    event = only_event(
        as_json(given(extension=[Extension(url=EXTENSION + "cycle", valueInteger=2)]))
    )
    assert (event["type"], event["dose_mg_m2"], event["route"], event["cycle"]) == (
        "administration",
        1.3,
        "SC",
        2,
    )
    stopped = only_event(
        as_json(given(status="stopped", statusReason=[CodeableConcept(text="pain at site")]))
    )
    assert (stopped["type"], stopped["action"], stopped["reason"]) == (
        "treatment_change",
        "held",
        "pain at site",
    )


@pytest.mark.parametrize(
    ("unit", "field"),
    [("mg/m2", "dose_mg_m2"), ("mg", "dose_mg")],
    ids=["given-in-mg-m2", "given-in-mg"],
)
def test_an_administered_dose_in_mg_or_mg_m2(unit: str, field: str) -> None:
    """A dose given in UCUM mg is the administration's `dose_mg` (D6 converts it at the body
    surface area); mg/m2 stays `dose_mg_m2`."""
    dose = Quantity(value=1.3 if unit == "mg/m2" else 2.4, unit=unit, system=UCUM, code=unit)
    event = only_event(
        as_json(given(dosage=MedicationAdministrationDosage(dose=dose, route=route_concept("SC"))))
    )
    assert event["type"] == "administration"
    assert {k: v for k, v in event.items() if k.startswith("dose")} == {field: float(dose.value)}


def test_medication_by_reference_contained_or_in_the_bundle() -> None:
    contained = given(
        medicationCodeableConcept=None,
        medicationReference=Reference(reference="#med"),
        contained=[Medication(id="med", code=BORTEZOMIB)],
    )
    assert only_event(as_json(contained))["type"] == "administration"
    in_bundle = given(
        medicationCodeableConcept=None, medicationReference=Reference(reference="Medication/bz")
    )
    mapping = mapped(bundle(Medication(id="bz", code=BORTEZOMIB), in_bundle))
    assert not mapping.problems
    assert [m.entries for m in mapping.events] == [(1,)]
    assert 0 in mapping.consumed
    lonely = mapped(bundle(Medication(id="bz", code=BORTEZOMIB), grading()))
    assert [p.entry for p in lonely.problems] == [0]


@pytest.mark.parametrize(
    ("resource", "therapy"),
    [
        (procedure(Coding(system="urn:site:proc", code="PLEX")), "plasma_exchange"),
        (
            given(
                medicationCodeableConcept=CodeableConcept(
                    coding=[Coding(system=ATC, code="J06BA02")]
                ),
                dosage=MedicationAdministrationDosage(dose=Quantity(value=30, unit="g")),
            ),
            "ivig",
        ),
        (
            given(
                medicationCodeableConcept=CodeableConcept(
                    coding=[Coding(system=ATC, code="H02AB04")]
                )
            ),
            "corticosteroids",
        ),
        (
            given(
                status="in-progress",
                medicationCodeableConcept=CodeableConcept(
                    coding=[Coding(system=ATC, code="L01FA01")]
                ),
            ),
            "rituximab",
        ),
    ],
)
def test_immunotherapies(resource: Any, therapy: str) -> None:
    settings = Settings(fhir_immunotherapy_codes={"plasma_exchange": ["urn:site:proc|PLEX"]})
    event = only_event(as_json(resource), settings)
    assert (event["type"], event["therapy"]) == ("immunotherapy", therapy)
    if therapy == "ivig":
        assert event["dose"] == "30 g"


def test_event_ids_follow_the_identifier() -> None:
    first = only_event(as_json(grading()))["event_id"]
    assert only_event(as_json(grading()))["event_id"] == first  # sent again: the same id
    other = grading(identifier=[Identifier(system="urn:ehr:obs", value="o2")])
    assert only_event(as_json(other))["event_id"] != first
    # no identifier: the id (or, in a bundle, the fullUrl) identifies it
    bare = as_json(grading(identifier=None))
    assert only_event(bare)["event_id"] != first
    assert only_event(bare)["event_id"] == only_event(copy.deepcopy(bare))["event_id"]


def test_settings_refuse_a_code_listed_for_two_domains() -> None:
    with pytest.raises(ValueError, match="listed under both sensory and motor"):
        Settings(fhir_term_codes={"sensory": ["urn:x|1"], "motor": ["urn:x|1"]})
    with pytest.raises(ValueError, match=r"is not system\|code"):
        Settings(fhir_bortezomib_codes=["358258"])


ENTRIES = [
    order(),
    grading("sensory", 2, "o1"),
    grading("pain", 1, "o2"),
    grading("motor", 1, "o3", effectiveDateTime="2026-03-09T08:40:00+01:00"),
    given(),
    given(id="a2", identifier=[Identifier(system="urn:ehr:mar", value="a2")], status="stopped"),
]


@settings(max_examples=60, deadline=None)
@given_(st.permutations(range(len(ENTRIES))), st.sampled_from(["batch", "transaction"]))
def test_entry_order_does_not_change_the_events(order_of: list[int], kind: str) -> None:
    """Any arrival order of the same resources maps to the same events, with the same ids."""

    def events(indexes: list[int]) -> set[str]:
        mapping = mapped(bundle(*(ENTRIES[i] for i in indexes), kind=kind))
        assert not mapping.problems
        return {m.event.model_dump_json() for m in mapping.events}

    assert events(list(order_of)) == events(list(range(len(ENTRIES))))
