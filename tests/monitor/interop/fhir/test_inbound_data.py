"""FHIR in, as hospitals send it: body size from vital-sign Observations, AdverseEvents,
NCIt grade codes, effectivePeriod, and patients named by identifier (MRN) rather than by id.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
from fhir.resources.R4B.adverseevent import AdverseEvent, AdverseEventSuspectEntity
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from pydantic import SecretStr, ValidationError

from monitor.interop.fhir.codes import AE_GRADE_EXTENSION, LOINC, NCIT, UCUM
from monitor.interop.fhir.inbound import LOOKUP_TYPES, MAPPED_TYPES, FhirMapping, pseudonym
from monitor.settings import FHIR_BASE, MEDDRA, Settings
from policies.events import PATIENT_ID_PATTERN
from tests.monitor.interop.fhir.test_inbound import (
    WHEN,
    as_json,
    bundle,
    given,
    grading,
    mapped,
    only_event,
    order,
)

KEY = "k" * 40
KEYED = Settings(patient_id_key=SecretStr(KEY))
MRN_SYSTEM = "urn:oid:1.2.36.146.595.217.0.1"
MRN = "MRN-4711-0815"
GIVEN_AT = "2026-03-02T10:00:00+01:00"  # the administration's time (see `given`)


def dose_in_mg(**kw: Any) -> dict[str, Any]:
    data = as_json(given(effectiveDateTime=GIVEN_AT, **kw))
    data["dosage"]["dose"] = {"value": 2.4, "unit": "mg", "system": UCUM, "code": "mg"}
    return data


def vital(
    loinc: str, value: float, unit: str, at: str = "2026-03-02T08:00:00+01:00", **kw: Any
) -> Observation:
    values: dict[str, Any] = {
        "id": f"v-{loinc}-{at[11:16].replace(':', '')}",
        "status": "final",
        "category": [
            CodeableConcept(
                coding=[
                    Coding(
                        system="http://terminology.hl7.org/CodeSystem/observation-category",
                        code="vital-signs",
                    )
                ]
            )
        ],
        "code": CodeableConcept(coding=[Coding(system=LOINC, code=loinc)]),
        "subject": Reference(reference="Patient/P-1"),
        "effectiveDateTime": at,
        "valueQuantity": Quantity(value=value, unit=unit, system=UCUM, code=unit),
    } | kw
    return Observation(**values)


def raw_bundle(*resources: dict[str, Any], kind: str = "batch") -> dict[str, Any]:
    """A batch of resources given as JSON (a bad one cannot be built with the models)."""
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{index:012d}",
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
            for index, resource in enumerate(resources)
        ],
    }


def events_of(mapping: FhirMapping) -> list[dict[str, Any]]:
    assert not mapping.problems, [str(p) for p in mapping.problems]
    return [m.event.model_dump(mode="json", exclude_none=True) for m in mapping.events]


# --- body size from vital-sign Observations -----------------------------------------------------

HEIGHT, WEIGHT, BSA = "8302-2", "29463-7", "8277-6"
MOSTELLER_180_80 = math.sqrt(180 * 80 / 3600)


def _with_administration(*vitals: Observation, administration: dict[str, Any]) -> dict[str, Any]:
    payload = bundle(*vitals)
    payload["entry"].append(
        {
            "fullUrl": "urn:uuid:a1",
            "resource": administration,
            "request": {"method": "POST", "url": "MedicationAdministration"},
        }
    )
    return payload


@pytest.mark.parametrize(
    ("vitals", "bsa"),
    [
        pytest.param([vital(BSA, 1.82, "m2")], 1.82, id="a BSA"),
        pytest.param(
            [vital(HEIGHT, 180, "cm"), vital(WEIGHT, 80, "kg")],
            MOSTELLER_180_80,
            id="height and weight: Mosteller",
        ),
        pytest.param(
            [vital(HEIGHT, 180 / 2.54, "[in_i]"), vital(WEIGHT, 80 / 0.45359237, "[lb_av]")],
            MOSTELLER_180_80,
            id="inches and pounds",
        ),
        pytest.param(
            [
                vital(BSA, 1.75, "m2", at="2026-02-01T08:00:00+01:00"),
                vital(HEIGHT, 180, "cm"),
                vital(WEIGHT, 80, "kg"),
            ],
            1.75,
            id="an explicit BSA beats a newer height and weight",
        ),
        pytest.param(
            [
                vital(BSA, 1.70, "m2", at="2026-02-01T08:00:00+01:00"),
                vital(BSA, 1.80, "m2", at="2026-03-02T09:59:00+01:00"),
            ],
            1.80,
            id="the latest before the dose",
        ),
        pytest.param(
            [vital(BSA, 1.80, "m2", at="2026-03-02T09:00:00Z")],
            1.80,
            id="at the dose's instant, in another offset",
        ),
    ],
)
def test_an_administration_in_mg_takes_the_body_size_beside_it(
    vitals: list[Observation], bsa: float
) -> None:
    mapping = mapped(_with_administration(*vitals, administration=dose_in_mg()))
    [event] = events_of(mapping)
    assert event["dose_mg"] == 2.4
    assert event["bsa_m2"] == pytest.approx(bsa)
    assert sorted(mapping.consumed) == list(range(len(vitals)))
    assert "body size" in mapping.consumed[0]


def test_a_measurement_after_the_dose_or_of_another_patient_is_not_applied() -> None:
    later = vital(BSA, 1.9, "m2", at="2026-03-02T10:30:00+01:00")
    other = vital(BSA, 1.6, "m2", subject=Reference(reference="Patient/P-2"))
    mapping = mapped(_with_administration(later, other, administration=dose_in_mg()))
    [mapped_event] = mapping.events
    assert mapped_event.event.model_dump().get("bsa_m2") is None
    assert [(p.entry, p.code) for p in mapping.problems] == [
        (0, "not-supported"),
        (1, "not-supported"),
    ]
    assert "send it in the Bundle with the administration" in mapping.problems[0].message


def test_an_event_that_gives_its_body_size_keeps_it() -> None:
    administration = dose_in_mg()
    administration["dosage"]["dose"] = {"value": 1.3, "system": UCUM, "code": "mg/m2"}
    ordered = order(
        extension=[
            Extension(
                url=f"{FHIR_BASE}/StructureDefinition/body-surface-area",
                valueQuantity=Quantity(value=1.7, system=UCUM, code="m2"),
            )
        ]
    )
    payload = _with_administration(vital(BSA, 1.9, "m2"), ordered, administration=administration)
    events = {e["type"]: e for e in events_of(mapped(payload))}
    assert events["enrollment"]["bsa_m2"] == 1.7  # its own, not the Observation's
    assert events["administration"]["bsa_m2"] == 1.9  # it gave none


def test_an_order_takes_height_and_weight_for_the_enrolments_own_mosteller() -> None:
    payload = bundle(
        vital(HEIGHT, 70, "[in_i]", at="2026-02-20T08:00:00+01:00"),
        vital(WEIGHT, 80, "kg", at="2026-02-20T08:00:00+01:00"),
        order(),
    )
    [event] = events_of(mapped(payload))
    assert event["type"] == "enrollment"
    assert event["height_cm"] == pytest.approx(177.8)
    assert event["weight_kg"] == 80
    assert "bsa_m2" not in event


def test_a_lone_body_measurement_is_refused_with_where_to_send_it() -> None:
    mapping = mapped(as_json(vital(WEIGHT, 80, "kg")))
    assert mapping.events == []
    [problem] = mapping.problems
    assert (problem.location, problem.code) == ("Observation", "not-supported")
    assert "no event for a measurement alone" in problem.message
    assert "send it in the Bundle with the administration" in problem.message


@pytest.mark.parametrize(
    ("change", "location", "message"),
    [
        pytest.param(
            {"valueQuantity": {"value": 80, "system": UCUM, "code": "g"}},
            "valueQuantity",
            "a body weight (LOINC 29463-7) is read in UCUM 'kg' or '[lb_av]', not 'g'",
            id="unit",
        ),
        pytest.param(
            {"status": "preliminary"},
            "status",
            "'preliminary' is not read",
            id="status",
        ),
        pytest.param(
            {"valueQuantity": None},
            "valueQuantity",
            "is required: the body weight",
            id="no value",
        ),
    ],
)
def test_a_bad_measurement_is_refused(change: dict[str, Any], location: str, message: str) -> None:
    weight = as_json(vital(WEIGHT, 80, "kg"))
    weight.update(change)
    weight = {k: v for k, v in weight.items() if v is not None}
    mapping = mapped(raw_bundle(weight, dose_in_mg()))
    found = {p.location: p.message for p in mapping.problems if p.entry == 0}
    assert message in found[f"Bundle.entry[0].resource.{location}"], found


def test_a_body_size_out_of_the_contracts_range_names_the_observation() -> None:
    payload = _with_administration(vital(BSA, 4.2, "m2"), administration=dose_in_mg())
    mapping = mapped(payload)
    assert mapping.events == []
    [problem] = [p for p in mapping.problems if p.entry == 1]
    assert problem.location == "Bundle.entry[0].resource.valueQuantity"
    assert problem.message.startswith("bsa_m2:")


# --- NCIt grade codes, effectivePeriod ------------------------------------------------------------


def coded(code: str, system: str = NCIT) -> CodeableConcept:
    return CodeableConcept(coding=[Coding(system=system, code=code)])


@pytest.mark.parametrize(
    ("code", "grade"),
    [("C75533", 0), ("C41338", 1), ("C41339", 2), ("C41340", 3), ("C41337", 4)],
)
def test_ncit_grade_concepts_are_grades(code: str, grade: int) -> None:
    obs = grading("motor", valueInteger=None, valueCodeableConcept=coded(code))
    assert only_event(as_json(obs))["grades"] == {"motor": grade}


def test_grade_5_is_outside_the_contract() -> None:
    obs = grading(valueInteger=None, valueCodeableConcept=coded("C48275"))
    mapping = mapped(as_json(obs))
    assert mapping.events == []
    [problem] = mapping.problems
    assert problem.location == "Observation.valueCodeableConcept"
    assert "CTCAE grade 5" in problem.message
    assert "course_end" in problem.message


def test_an_unknown_coded_grade_lists_the_ncit_grades() -> None:
    obs = grading(valueInteger=None, valueCodeableConcept=coded("C99999"))
    [problem] = mapped(as_json(obs)).problems
    assert problem.code == "code-invalid"
    assert "C41339 grade 2" in problem.message


@pytest.mark.parametrize(
    ("period", "at"),
    [
        pytest.param(
            Period(start="2026-03-02T08:00:00+01:00", end="2026-03-02T08:40:00+01:00"),
            "2026-03-02T08:40:00+01:00",
            id="its end",
        ),
        pytest.param(
            Period(start="2026-03-02T08:00:00-05:00"), "2026-03-02T08:00:00-05:00", id="its start"
        ),
    ],
)
def test_an_effective_period_gives_its_end_else_its_start(period: Period, at: str) -> None:
    obs = grading(effectiveDateTime=None, effectivePeriod=period)
    assert only_event(as_json(obs))["occurred_at"] == at


def test_an_effective_period_without_offset_names_the_element() -> None:
    obs = grading(effectiveDateTime=None, effectivePeriod=Period(start="2026-03-02"))
    [problem] = mapped(as_json(obs)).problems
    assert problem.location == "Observation.effectivePeriod.start"


# --- AdverseEvent -------------------------------------------------------------------------------


def adverse_event(grade: str = "C41339", **kw: Any) -> AdverseEvent:
    values: dict[str, Any] = {
        "id": "ae-1",
        "identifier": Identifier(system="urn:ehr:ae", value="ae-1"),
        "actuality": "actual",
        "event": CodeableConcept(coding=[Coding(system=MEDDRA, code="10034620")]),
        "subject": Reference(reference="Patient/P-1"),
        "detected": WHEN,
        "date": "2026-02-27T00:00:00+01:00",
        "extension": [Extension(url=AE_GRADE_EXTENSION, valueCodeableConcept=coded(grade))],
        "suspectEntity": [
            AdverseEventSuspectEntity(
                instance=Reference(reference="Medication/bortezomib", display="bortezomib")
            )
        ],
    } | kw
    return AdverseEvent(**values)


def test_an_adverse_event_is_a_grading() -> None:
    event = only_event(as_json(adverse_event()))
    assert event["type"] == "assessment"
    assert event["grades"] == {"sensory": 2}
    assert event["occurred_at"] == WHEN  # `detected`, its offset kept
    assert event["patient_id"] == "P-1"
    assert event["extra"] == {"fhir_source": ["AdverseEvent/ae-1"]}


def test_an_adverse_event_without_detected_is_at_its_date() -> None:
    event = only_event(as_json(adverse_event(detected=None, date="2026-03-01T12:00:00-03:00")))
    assert event["occurred_at"] == "2026-03-01T12:00:00-03:00"


def test_an_adverse_event_joins_the_observations_of_its_instant() -> None:
    [event] = events_of(mapped(bundle(adverse_event(), grading("pain", 1))))
    assert event["grades"] == {"sensory": 2, "pain": 1}


def test_an_adverse_event_grade_in_a_configured_grade_system() -> None:
    system = f"{FHIR_BASE}/CodeSystem/ctcae-grade"
    event = only_event(
        as_json(
            adverse_event(
                extension=[
                    Extension(url=AE_GRADE_EXTENSION, valueCodeableConcept=coded("3", system))
                ]
            )
        )
    )
    assert event["grades"] == {"sensory": 3}


def _edit(resource: Any, **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(as_json(resource))
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


AE_BAD = [
    pytest.param(
        _edit(adverse_event(), actuality="potential"),
        "AdverseEvent.actuality",
        "not-supported",
        "'potential' is not mapped: only an actual adverse event",
        id="potential",
    ),
    pytest.param(
        _edit(
            adverse_event(),
            extension=None,
            severity={
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/adverse-event-severity",
                        "code": "moderate",
                    }
                ]
            },
        ),
        "AdverseEvent.extension",
        "required",
        "severity (http://terminology.hl7.org/CodeSystem/adverse-event-severity|moderate) is "
        "mild/moderate/severe, not a CTCAE grade",
        id="severity only",
    ),
    pytest.param(
        as_json(adverse_event("C48275")),
        "AdverseEvent.extension[0].valueCodeableConcept",
        "value",
        "CTCAE grade 5",
        id="grade 5",
    ),
    pytest.param(
        _edit(adverse_event(), event=None),
        "AdverseEvent.event",
        "required",
        "is required: the CTCAE term",
        id="no term",
    ),
    pytest.param(
        _edit(adverse_event(), event={"coding": [{"system": MEDDRA, "code": "10028813"}]}),
        "AdverseEvent.event",
        "code-invalid",
        f"{MEDDRA}|10028813 is not a CTCAE neuropathy term the service maps",
        id="not a neuropathy term",
    ),
    pytest.param(
        _edit(adverse_event(), detected=None, date=None),
        "AdverseEvent.date",
        "required",
        "is required: when the adverse event was detected",
        id="no time",
    ),
    pytest.param(
        _edit(adverse_event(), detected="2026-03-02"),
        "AdverseEvent.detected",
        "value",
        "a date without a time",
        id="date only",
    ),
    pytest.param(
        _edit(
            adverse_event(),
            extension=[{"url": AE_GRADE_EXTENSION, "valueInteger": 2}],
        ),
        "AdverseEvent.extension[0]",
        "value",
        "takes a valueCodeableConcept",
        id="grade not coded",
    ),
]


@pytest.mark.parametrize(("payload", "location", "code", "message"), AE_BAD)
def test_a_bad_adverse_event_gets_the_exact_problem(
    payload: dict[str, Any], location: str, code: str, message: str
) -> None:
    mapping = mapped(payload)
    assert mapping.events == []
    found = {(p.location, p.code): p.message for p in mapping.problems}
    assert (location, code) in found, found
    assert message in found[(location, code)]


def test_adverse_event_and_patient_are_registered_types() -> None:
    assert "AdverseEvent" in MAPPED_TYPES
    assert LOOKUP_TYPES == ("Medication", "Patient")


# --- subjects by identifier ------------------------------------------------------------------


def patient(**kw: Any) -> Patient:
    values: dict[str, Any] = {
        "identifier": [
            Identifier(system="urn:ehr:internal", use="old", value="old-1"),  # old: skipped
            Identifier(system=MRN_SYSTEM, value=MRN),
        ],
        "name": [{"family": "Doe", "given": ["Jane"]}],
        "birthDate": "1950-01-01",
    } | kw
    return Patient(**values)


def with_patient(resource: Any, patient_entry: Any, kind: str = "transaction") -> dict[str, Any]:
    payload = bundle(resource, kind=kind)
    payload["entry"].append(
        {
            "fullUrl": "urn:uuid:9d1b1d5e-0000-4000-8000-00000000cafe",
            "resource": as_json(patient_entry),
            "request": {"method": "POST", "url": "Patient"},
        }
    )
    return payload


PSEUDONYM = pseudonym(MRN_SYSTEM, MRN, KEY.encode())

SUBJECTS = [
    pytest.param({"identifier": {"system": MRN_SYSTEM, "value": MRN}}, id="identifier"),
    pytest.param({"reference": f"Patient?identifier={MRN_SYSTEM}|{MRN}"}, id="conditional"),
    pytest.param(
        {"reference": f"Patient?identifier={MRN_SYSTEM.replace(':', '%3A')}%7C{MRN}"},
        id="conditional, URL-encoded",
    ),
]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_a_subject_by_identifier_is_a_keyed_pseudonym(subject: dict[str, Any]) -> None:
    data = as_json(grading())
    data["subject"] = subject
    event = only_event(data, KEYED)
    assert event["patient_id"] == PSEUDONYM
    assert MRN not in json.dumps(event)


def test_a_conditional_reference_is_read_as_given() -> None:
    """Its query is decoded, not validated as a FHIR Identifier (that would raise, not refuse)."""
    data = as_json(grading())
    data["subject"] = {"reference": f"Patient?identifier=urn:a b|{MRN}%0A"}
    event = only_event(data, KEYED)
    assert event["patient_id"] == pseudonym("urn:a b", f"{MRN}\n", KEY.encode())


def test_the_pseudonym_fits_the_contract_and_depends_on_the_key() -> None:
    import re

    assert re.fullmatch(PATIENT_ID_PATTERN, PSEUDONYM)
    assert PSEUDONYM.startswith("pid-")
    assert pseudonym(MRN_SYSTEM, MRN, b"x" * 40) != PSEUDONYM
    assert pseudonym("urn:other-hospital", MRN, KEY.encode()) != PSEUDONYM


def test_a_patient_entry_gives_its_identifier_and_maps_to_no_event() -> None:
    obs = grading(subject=Reference(reference="urn:uuid:9d1b1d5e-0000-4000-8000-00000000cafe"))
    mapping = mapped(with_patient(obs, patient()), KEYED)
    [event] = events_of(mapping)
    assert event["patient_id"] == PSEUDONYM
    assert mapping.consumed == {
        1: "read as the subject of other entries (only its pseudonymous id is kept)"
    }
    assert MRN not in repr(mapping)
    assert "Doe" not in repr(mapping)


def test_a_patient_entry_gives_its_record_number_before_other_identifiers() -> None:
    record_number = Identifier(
        system=MRN_SYSTEM,
        value=MRN,
        type=CodeableConcept(
            coding=[Coding(system="http://terminology.hl7.org/CodeSystem/v2-0203", code="MR")]
        ),
    )
    national = Identifier(system="urn:oid:2.16.840.1.113883.2.4.6.3", value="999999990")
    obs = grading(subject=Reference(reference="urn:uuid:9d1b1d5e-0000-4000-8000-00000000cafe"))
    mapping = mapped(with_patient(obs, patient(identifier=[national, record_number])), KEYED)
    assert events_of(mapping)[0]["patient_id"] == PSEUDONYM
    # unmarked, the first current one: the national number here
    mapping = mapped(with_patient(obs, patient(identifier=[national])), KEYED)
    assert events_of(mapping)[0]["patient_id"] == pseudonym(
        "urn:oid:2.16.840.1.113883.2.4.6.3", "999999990", KEY.encode()
    )


def test_a_bundles_patient_by_id_is_read_by_its_identifier_too() -> None:
    obs = grading(subject=Reference(reference="Patient/ehr-123"))
    mapping = mapped(with_patient(obs, patient(id="ehr-123")), KEYED)
    assert events_of(mapping)[0]["patient_id"] == PSEUDONYM


def test_without_the_key_an_identifier_subject_is_refused_naming_the_setting() -> None:
    obs = grading(subject=Reference(reference="urn:uuid:9d1b1d5e-0000-4000-8000-00000000cafe"))
    mapping = mapped(with_patient(obs, patient()))
    assert mapping.events == []
    [problem] = [p for p in mapping.problems if p.entry == 0]
    assert problem.code == "not-supported"
    assert "MONITOR_PATIENT_ID_KEY" in problem.message
    assert MRN not in repr(mapping)


SUBJECT_BAD = [
    pytest.param(
        {"reference": f"Patient?identifier={MRN}"},
        "subject.reference",
        "a conditional reference is read only as Patient?identifier=system|value",
        id="conditional without system",
    ),
    pytest.param(
        {"reference": f"Patient?name=Doe&identifier={MRN_SYSTEM}|{MRN}"},
        "subject.reference",
        "a conditional reference is read only as Patient?identifier=system|value",
        id="conditional on more than the identifier",
    ),
    pytest.param(
        {"identifier": {"value": MRN}},
        "subject.identifier",
        "an identifier needs its system and its value",
        id="identifier without system",
    ),
    pytest.param(
        {"reference": "urn:uuid:11111111-0000-4000-8000-000000000000"},
        "subject.reference",
        "a urn:uuid reference that is no Patient entry of this Bundle",
        id="urn:uuid of no entry",
    ),
    pytest.param(
        {"display": "Jane Doe"},
        "subject.reference",
        "no reference: the service needs Patient/{id}",
        id="display only",
    ),
]


@pytest.mark.parametrize(("subject", "location", "message"), SUBJECT_BAD)
def test_a_subject_that_cannot_be_read_never_echoes_the_identifier(
    subject: dict[str, Any], location: str, message: str
) -> None:
    data = as_json(grading())
    data["subject"] = subject
    mapping = mapped(data, KEYED)
    assert mapping.events == []
    found = {p.location: p.message for p in mapping.problems}
    assert message in found[f"Observation.{location}"], found
    assert MRN not in repr(mapping.problems)


@pytest.mark.parametrize("subject", SUBJECTS)
def test_a_patient_entry_named_by_its_identifier_is_read_too(subject: dict[str, Any]) -> None:
    """A transaction may carry the Patient (ifNoneExist) and name it by identifier elsewhere."""
    data = as_json(grading())
    data["subject"] = subject
    payload = raw_bundle(data, as_json(patient()), kind="transaction")
    mapping = mapped(payload, KEYED)
    assert [e["patient_id"] for e in events_of(mapping)] == [PSEUDONYM]
    assert list(mapping.consumed) == [1]


def test_an_unreferenced_patient_entry_is_refused() -> None:
    mapping = mapped(with_patient(grading(), patient(), kind="batch"), KEYED)
    assert len(mapping.events) == 1  # the grading names Patient/P-1
    [problem] = mapping.problems
    assert (problem.entry, problem.code) == (1, "not-supported")
    assert "no entry references this one" in problem.message


def test_a_patient_entry_without_an_identifier_is_refused() -> None:
    obs = grading(subject=Reference(reference="urn:uuid:9d1b1d5e-0000-4000-8000-00000000cafe"))
    mapping = mapped(with_patient(obs, patient(identifier=[])), KEYED)
    assert mapping.events == []
    locations = {p.location for p in mapping.problems}
    assert "Bundle.entry[1].resource.identifier" in locations


def test_a_bad_patient_entry_does_not_echo_its_values() -> None:
    payload = with_patient(grading(), patient())
    payload["entry"][1]["resource"]["birthDate"] = f"born {MRN}"
    mapping = mapped(payload, KEYED)
    [problem] = [p for p in mapping.problems if p.entry == 1]
    assert problem.location == "Bundle.entry[1].resource.birthDate"
    assert MRN not in problem.message
    assert "may identify the patient" in problem.message


def test_the_administration_and_vitals_of_a_patient_named_by_mrn() -> None:
    """The shape a hospital sends: a Patient entry, vitals and the dose all pointing at it."""
    where = {"reference": "urn:uuid:9d1b1d5e-0000-4000-8000-00000000cafe"}
    height = as_json(vital(HEIGHT, 180, "cm")) | {"subject": where}
    weight = as_json(vital(WEIGHT, 80, "kg")) | {"subject": where}
    administration = dose_in_mg() | {"subject": where}
    payload = raw_bundle(height, weight, administration, kind="transaction")
    payload["entry"].append(
        {
            "fullUrl": where["reference"],
            "resource": as_json(patient()),
            "request": {"method": "POST", "url": "Patient"},
        }
    )
    mapping = mapped(payload, KEYED)
    [event] = events_of(mapping)
    assert event["patient_id"] == PSEUDONYM
    assert event["bsa_m2"] == pytest.approx(MOSTELLER_180_80)
    assert sorted(mapping.consumed) == [0, 1, 3]


def test_the_patient_id_key_must_be_long() -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(patient_id_key=SecretStr("short"))
