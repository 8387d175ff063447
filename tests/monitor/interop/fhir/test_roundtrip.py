"""Round trips of the FHIR ingest mapping (issue 6, item 4): a contract event, written as FHIR
by the builders, mapped back by `monitor.interop.fhir.inbound.map_fhir`, is the same event.

Every row of the mapping table is a case. The mapped event differs from the original only in
its `event_id` (`fhir-` + a hash of the resource's identity) and `extra.fhir_source` (the
`Type/id` of the resources it came from).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.resource import Resource

from monitor.interop.fhir.inbound import FhirMapping, MappedEvent, map_fhir
from monitor.settings import Settings
from policies.events import parse_event
from tests.common import fhir_builders as b

SETTINGS = b.fhir_settings()
FHIR_EVENT_ID = re.compile(r"^fhir-[0-9a-f]{32}$")


def event(kind: str, event_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": kind,
        "patient_id": "P-RT",
        "occurred_at": "2026-03-02T08:40:00+01:00",
    } | fields


def enrollment(event_id: str, **fields: Any) -> dict[str, Any]:
    return event("enrollment", event_id, drug="bortezomib", dose_mg_m2=1.3) | fields


def assessment(event_id: str, **fields: Any) -> dict[str, Any]:
    return event("assessment", event_id, **fields)


def administration(event_id: str, **fields: Any) -> dict[str, Any]:
    return event("administration", event_id, dose_mg_m2=1.3, route="SC") | fields


def change(event_id: str, action: str, **fields: Any) -> dict[str, Any]:
    return event("treatment_change", event_id, action=action, **fields)


def therapy(event_id: str, name: str) -> dict[str, Any]:
    return event("immunotherapy", event_id, therapy=name)


Build = Callable[[dict[str, Any], Settings], list[Resource]]


def one(builder: Callable[..., Resource], **options: Any) -> Build:
    return lambda body, settings: [builder(body, settings, **options)]


def observations(value: b.GradeValue) -> Build:
    return lambda body, settings: list(b.assessment_observations(body, settings, value=value))


@dataclass(frozen=True)
class Case:
    body: dict[str, Any]
    build: Build


CASES = {
    # enrollment: active MedicationRequest
    "enrollment IV twice weekly": Case(
        enrollment("e-iv", route="IV", schedule="twice_weekly"), one(b.enrollment_request)
    ),
    "enrollment SC weekly, all optional fields": Case(
        enrollment(
            "e-sc",
            route="SC",
            schedule="weekly",
            dose_mg_m2=1.0,
            cycle_length_days=35,
            age=67,
            risk_factors=["diabetes", "prior_thalidomide"],
            unit="u7",
        ),
        one(b.enrollment_request),
    ),
    "enrollment started at authoredOn": Case(
        enrollment("e-auth", route="SC", schedule="weekly", age=70),
        one(b.enrollment_request, start="authored"),
    ),
    "enrollment with a contained Medication": Case(
        enrollment("e-med", route="IV", schedule="weekly", cycle_length_days=28),
        one(b.enrollment_request, medication="contained"),
    ),
    # assessment: Observations
    **{
        f"assessment {domain} as {value}": Case(
            assessment(f"a-{domain}-{value}", grades={domain: grade}), observations(value)
        )
        for domain, grade in [("sensory", 2), ("motor", 1), ("pain", 3), ("autonomic", 4)]
        for value in ("integer", "coded")
    },
    "assessment grade 0": Case(
        assessment("a-zero", grades={"sensory": 0}), observations("integer")
    ),
    "assessment of four Observations grouped, with cycle": Case(
        assessment("a-all", cycle=3, grades={"sensory": 2, "motor": 1, "pain": 1, "autonomic": 0}),
        observations("integer"),
    ),
    "assessment of coded Observations grouped": Case(
        assessment("a-two", grades={"sensory": 1, "pain": 2}), observations("coded")
    ),
    "assessment as one Observation with components, with cycle": Case(
        assessment("a-panel", cycle=2, grades={"sensory": 3, "motor": 2, "autonomic": 1}),
        one(b.assessment_panel),
    ),
    "assessment as components with coded grades": Case(
        assessment("a-panel-coded", grades={"pain": 1, "motor": 0}),
        one(b.assessment_panel, value="coded"),
    ),
    # administration: completed MedicationAdministration
    "administration with cycle and day": Case(
        administration("d-1", cycle=2, day=8, dose_mg_m2=1.0), one(b.administration)
    ),
    "administration IV, effectivePeriod": Case(
        administration("d-2", route="IV"), one(b.administration, effective="period")
    ),
    # treatment_change
    "discontinued, with reason": Case(
        change("c-disc", "discontinued", reason="grade 3 sensory neuropathy"),
        one(b.stopped_request),
    ),
    "completed": Case(change("c-done", "completed"), one(b.stopped_request)),
    "held, with reason": Case(
        change("c-held", "held", reason="grade 2 with pain"), one(b.held_administration)
    ),
    "held": Case(change("c-held-bare", "held"), one(b.held_administration)),
    # immunotherapy: Procedure or MedicationAdministration
    **{
        f"immunotherapy {name} as {form}": Case(
            therapy(f"i-{name}-{form}", name), one(b.immunotherapy, form=form)
        )
        for name in ("ivig", "corticosteroids", "plasma_exchange", "rituximab")
        for form in ("procedure", "administration")
    },
    "immunotherapy Procedure with performedPeriod": Case(
        therapy("i-period", "ivig"), one(b.immunotherapy, performed="period")
    ),
}


def mapped(payload: Any, settings: Settings = SETTINGS) -> FhirMapping:
    mapping = map_fhir(payload, settings)
    assert mapping.problems == [], mapping.problems
    return mapping


def contract_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The event as the contract reads it (defaults filled), without its id and extra."""
    return parse_event(body).model_dump(exclude={"event_id", "extra"})


def only_event(mapping: FhirMapping) -> MappedEvent:
    assert len(mapping.events) == 1, mapping.events
    return mapping.events[0]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_event_to_fhir_and_back_is_the_same_event(case: Case) -> None:
    resources = case.build(case.body, SETTINGS)
    mapping = mapped(b.as_json(b.bundle(resources, "transaction")))
    assert (mapping.kind, mapping.entry_count) == ("transaction", len(resources))
    result = only_event(mapping)
    assert result.entries == tuple(range(len(resources)))
    got = result.event
    assert got.model_dump(exclude={"event_id", "extra"}) == contract_fields(case.body)
    assert got.occurred_at.utcoffset() is not None
    assert FHIR_EVENT_ID.match(got.event_id), got.event_id
    assert got.extra is not None
    assert sorted(got.extra["fhir_source"]) == sorted(b.reference_of(r) for r in resources)
    assert set(got.extra) == {"fhir_source"}


SINGLE = {name: case for name, case in CASES.items() if len(case.build(case.body, SETTINGS)) == 1}


@pytest.mark.parametrize("case", SINGLE.values(), ids=SINGLE.keys())
def test_a_resource_alone_or_in_any_bundle_maps_to_the_same_event(case: Case) -> None:
    [resource] = case.build(case.body, SETTINGS)
    alone = mapped(b.as_json(resource))
    assert (alone.kind, alone.entry_count) == ("resource", 1)
    expected = only_event(alone)
    assert expected.entries == ()
    for kind in ("transaction", "batch", "collection"):
        in_bundle = mapped(b.as_json(b.bundle([resource], kind)))
        assert in_bundle.kind == kind
        assert only_event(in_bundle).event == expected.event


def observation_key(value: str) -> str:
    return f"Observation|assessment|{b.EHR}|{value}"


def fhir_event_id(key: str) -> str:
    return "fhir-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def test_event_id_hashes_type_mapped_type_and_identifier() -> None:
    body = assessment("a-id", grades={"sensory": 1})
    got = only_event(mapped(b.as_json(b.assessment_observations(body, SETTINGS)[0]))).event
    assert got.event_id == fhir_event_id(observation_key("a-id/sensory"))


def test_grouped_observations_hash_their_sorted_keys() -> None:
    body = assessment("a-grp", grades={"sensory": 1, "motor": 2, "pain": 1})
    resources = list(reversed(b.assessment_observations(body, SETTINGS)))
    got = only_event(mapped(b.as_json(b.bundle(resources)))).event
    keys = sorted(observation_key(f"a-grp/{d}") for d in ("sensory", "motor", "pain"))
    assert got.event_id == fhir_event_id("\n".join(keys))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_same_bundle_mapped_twice_gives_the_same_ids(case: Case) -> None:
    payload = b.as_json(b.bundle(case.build(case.body, SETTINGS), "batch"))
    first, second = mapped(payload), mapped(payload)
    assert [m.event.event_id for m in first.events] == [m.event.event_id for m in second.events]
    assert first.events == second.events


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_another_identifier_gives_another_id_and_nothing_else(case: Case) -> None:
    resources = case.build(case.body, SETTINGS)
    renamed = [
        r.model_copy(update={"identifier": [Identifier(system=b.EHR, value=f"other-{i}")]})
        for i, r in enumerate(resources)
    ]
    before = only_event(mapped(b.as_json(b.bundle(resources)))).event
    after = only_event(mapped(b.as_json(b.bundle(renamed)))).event
    assert after.event_id != before.event_id
    assert after.model_copy(update={"event_id": before.event_id}) == before


def test_without_an_identifier_the_id_comes_from_the_full_url() -> None:
    """The key falls back to the entry's fullUrl, so two resources with no identifier and
    different fullUrls are two events, and each is stable."""
    body = therapy("i-noid", "ivig")
    resource = b.immunotherapy(body, SETTINGS).model_copy(update={"identifier": None})
    payload = b.as_json(b.bundle([resource]))
    moved = b.as_json(b.bundle([resource]))
    moved["entry"][0]["fullUrl"] = "urn:uuid:6d1c2e2a-8d0e-4c4e-9f1b-2f9f3f0a1b2c"
    first, again, other = (only_event(mapped(p)).event for p in (payload, payload, moved))
    assert (
        first.event_id
        == again.event_id
        == fhir_event_id(f"Procedure|immunotherapy|{payload['entry'][0]['fullUrl']}")
    )
    assert other.event_id != first.event_id


def test_observations_of_two_instants_are_two_assessments() -> None:
    """Grouping is by patient and effective instant: other instants stay separate events."""
    early = assessment("a-early", grades={"sensory": 1, "pain": 1})
    late = assessment("a-late", grades={"sensory": 2}, occurred_at="2026-03-23T08:40:00+01:00")
    other_patient = assessment("a-other", grades={"motor": 1}, patient_id="P-RT2")
    resources = [
        *b.assessment_observations(early, SETTINGS),
        *b.assessment_observations(late, SETTINGS),
        *b.assessment_observations(other_patient, SETTINGS),
    ]
    mapping = mapped(b.as_json(b.bundle(resources, "collection")))
    by_grades = sorted((m.entries, contract_view(m)) for m in mapping.events)
    assert by_grades == sorted(
        [
            ((0, 1), contract_fields(early)),
            ((2,), contract_fields(late)),
            ((3,), contract_fields(other_patient)),
        ]
    )


def contract_view(m: MappedEvent) -> dict[str, Any]:
    return m.event.model_dump(exclude={"event_id", "extra"})
