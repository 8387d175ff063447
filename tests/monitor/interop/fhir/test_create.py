"""`POST /fhir/r4/{type}` (issue 15, item 1): FHIR's create for each type the mapper reads,
stored exactly as a lone resource posted to `/fhir/r4` is; 201 with the resource and its
Location, 200 with the same Location when sent again (nothing new stored), and every refusal an
OperationOutcome that names what is wrong.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.operationoutcome import OperationOutcome

from monitor.interop.fhir.inbound import MAPPED_TYPES
from monitor.services import Services
from monitor.settings import ATC
from tests.common.service import Api, row_counts, rows
from tests.monitor.interop.fhir.test_inbound import as_json, given, grading, order, procedure

FHIR = "application/fhir+json"
EXAMPLES: dict[str, Any] = {
    "Observation": lambda: as_json(grading()),
    "MedicationRequest": lambda: as_json(order()),
    "MedicationAdministration": lambda: as_json(given()),
    "Procedure": lambda: as_json(procedure(Coding(system=ATC, code="J06BA02"))),
}
EVENT_TYPES = {
    "Observation": "assessment",
    "MedicationRequest": "enrollment",
    "MedicationAdministration": "administration",
    "Procedure": "immunotherapy",
}


def create(api: Api, resource_type: str, payload: Any, role: Any = "ingest", **headers: str) -> Any:
    sent = api.headers(role) | {"Content-Type": FHIR} | headers
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return api.client.post(f"/fhir/r4/{resource_type}", content=body, headers=sent)


def issues(response: Any) -> list[tuple[str, str]]:
    assert response.headers["content-type"] == FHIR
    outcome = OperationOutcome.model_validate(response.json())
    return [(str(i.code), str(i.diagnostics)) for i in outcome.issue]


def stored(services: Services) -> list[dict[str, Any]]:
    return rows(services, "SELECT event_id, type FROM event ORDER BY event_id")


@pytest.mark.parametrize("resource_type", sorted(EXAMPLES))
def test_a_resource_is_created_once_and_answered_with_its_location(
    api: Api, services: Services, resource_type: str
) -> None:
    payload = EXAMPLES[resource_type]()
    first = create(api, resource_type, payload)
    assert first.status_code == 201, first.text
    assert first.headers["content-type"] == FHIR
    [event] = stored(services)
    assert event["type"] == EVENT_TYPES[resource_type]
    location = f"http://testserver/fhir/r4/{resource_type}/{event['event_id']}"
    assert first.headers["location"] == location
    answered = first.json()
    # the resource as sent, its id the stored event's (the server assigns ids on create)
    assert answered == payload | {"id": event["event_id"]}
    get_fhir_model_class(resource_type).model_validate(answered)

    before = row_counts(services, ["event", "outbox"])
    again = create(api, resource_type, payload)
    assert again.status_code == 200, again.text  # a match, as FHIR's conditional create
    assert again.headers["location"] == location
    assert again.json() == answered
    assert row_counts(services, ["event", "outbox"]) == before


def test_it_is_the_same_store_as_a_lone_resource_posted_to_the_base(
    api: Api, services: Services
) -> None:
    payload = as_json(grading(ident="base-first"))
    headers = api.headers("ingest") | {"Content-Type": FHIR}
    base = api.client.post("/fhir/r4", content=json.dumps(payload).encode(), headers=headers)
    assert base.status_code == 201, base.text
    [event] = stored(services)
    assert event["event_id"] in json.dumps(base.json())
    again = create(api, "Observation", payload)
    assert again.status_code == 200  # already stored, by the other door
    assert again.headers["location"].endswith(f"/fhir/r4/Observation/{event['event_id']}")
    assert stored(services) == [event]


def test_the_location_uses_the_configured_public_base_url(api: Api, services: Services) -> None:
    services.settings = services.settings.model_copy(
        update={"public_base_url": "https://ehr.example/monitor"}
    )
    response = create(api, "Observation", as_json(grading(ident="public")))
    assert response.status_code == 201
    [event] = stored(services)
    assert response.headers["location"] == (
        f"https://ehr.example/monitor/fhir/r4/Observation/{event['event_id']}"
    )


def test_a_body_of_another_type_is_a_400_naming_resource_type(api: Api, services: Services) -> None:
    response = create(api, "Observation", as_json(order()))
    assert response.status_code == 400
    assert issues(response) == [
        (
            "invalid",
            "resourceType: 'MedicationRequest': POST /fhir/r4/Observation creates Observation "
            "resources",
        )
    ]
    assert stored(services) == []


def test_a_type_the_service_does_not_map_is_a_404_not_supported(
    api: Api, services: Services
) -> None:
    for resource_type in ("Encounter", "Bundle", "Medication", "metadata"):
        response = create(api, resource_type, {"resourceType": resource_type})
        assert response.status_code == 404, resource_type
        [(code, why)] = issues(response)
        assert code == "not-supported"
        assert why == (
            f"resourceType: {resource_type!r} is not created here; the service creates "
            + ", ".join(MAPPED_TYPES)
        )
    assert stored(services) == []


@pytest.mark.parametrize("resource_type", MAPPED_TYPES)
def test_every_mapped_type_has_its_create(api: Api, resource_type: str) -> None:
    """A type the mapper reads is created here (a bare one goes to the mapper, which refuses it
    naming its problems: not the route's 404), so a type added to the mapper is served at once."""
    response = create(api, resource_type, {"resourceType": resource_type})
    assert response.status_code != 404, response.text
    assert response.headers["content-type"] == FHIR
    if response.status_code == 422:  # each type of today
        assert issues(response)[-1] == ("informational", "nothing was stored")


def test_an_unmappable_resource_is_a_422_and_stores_nothing(api: Api, services: Services) -> None:
    payload = as_json(grading()) | {"effectiveDateTime": "2026-03-03T10:00:00"}
    response = create(api, "Observation", payload)
    assert response.status_code == 422
    assert "has no UTC offset" in issues(response)[0][1]
    assert "location" not in response.headers
    assert stored(services) == []


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code", "fragment"),
    [
        (b"{broken", FHIR, 400, "structure", "the body is not valid JSON"),
        (b"{}", "text/plain", 415, "not-supported", "Content-Type must be application/fhir+json"),
    ],
    ids=["not-json", "not-fhir-json"],
)
def test_a_body_that_is_not_fhir_json_is_refused(
    api: Api, content: bytes, content_type: str, status: int, code: str, fragment: str
) -> None:
    response = create(api, "Observation", content, **{"Content-Type": content_type})
    assert response.status_code == status
    [(found_code, why)] = issues(response)
    assert found_code == code
    assert fragment in why


def test_only_ingest_creates(api: Api, services: Services) -> None:
    response = create(api, "Observation", as_json(grading()), role="nurse")
    assert response.status_code == 403
    assert issues(response) == [
        (
            "forbidden",
            "role 'nurse' may not POST /fhir/r4/{resource_type}; allowed: ingest, admin",
        )
    ]
    assert stored(services) == []


def test_a_create_is_audited_by_its_route(api: Api, services: Services) -> None:
    assert create(api, "Observation", as_json(grading())).status_code == 201
    assert create(api, "Observation", as_json(order())).status_code == 400
    audited = rows(services, "SELECT action, resource, status_code FROM audit_log ORDER BY id")
    assert audited == [
        {"action": "POST /fhir/r4/Observation", "resource": "1 resource", "status_code": 201},
        {"action": "POST /fhir/r4/Observation", "resource": "1 resource", "status_code": 400},
    ]
