"""`GET /fhir/r4/metadata` and the `$monitor-summary` OperationDefinition (issue 15, item 1):
public, valid R4 (parsed back with fhir.resources; the JSON schema and fhirclient check them
too, test_json_schema.py and test_fhirclient.py), and listing only what the server does.
"""

from __future__ import annotations

import datetime as dt
from importlib.metadata import version
from typing import Any

import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationdefinition import OperationDefinition

from monitor.interop.fhir import capability
from monitor.interop.fhir.capability import SUMMARY_DEFINITION, capability_statement
from monitor.interop.fhir.inbound import MAPPED_TYPES
from monitor.services import Services
from tests.common.service import Api, rows
from tests.conftest import FIXED_NOW

FHIR = "application/fhir+json"


def metadata(api: Api, **headers: str) -> dict[str, Any]:
    response = api.client.get("/fhir/r4/metadata", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == FHIR
    CapabilityStatement.model_validate(response.json())
    body: dict[str, Any] = response.json()
    return body


def by_type(statement: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["type"]: r for r in statement["rest"][0]["resource"]}


def test_metadata_is_public_and_says_what_the_server_is(api: Api, services: Services) -> None:
    statement = metadata(api)  # no token
    assert {k: statement[k] for k in ("fhirVersion", "kind", "format", "status")} == {
        "fhirVersion": "4.0.1",
        "kind": "instance",
        "format": ["json"],
        "status": "active",
    }
    assert statement["date"] == "2026-10-01T12:00:00Z"  # the service's time (fixed in tests)
    assert statement["software"] == {"name": "bipn-monitor", "version": version("bipn-monitor")}
    assert statement["implementation"]["url"] == "http://testserver/fhir/r4"
    [rest] = statement["rest"]
    assert rest["mode"] == "server"
    assert "Authorization: Bearer" in rest["security"]["description"]
    assert "service" not in rest["security"]  # no OAuth/SMART endpoints are claimed
    assert [i["code"] for i in rest["interaction"]] == ["transaction", "batch"]
    # no audit row: nothing about a patient was read
    assert rows(services, "SELECT count(*) AS n FROM audit_log") == [{"n": 0}]


def test_metadata_lists_create_for_exactly_the_mapped_types(api: Api) -> None:
    resources = by_type(metadata(api))
    creatable = [
        name
        for name, r in resources.items()
        if [i["code"] for i in r.get("interaction", [])] == ["create"]
    ]
    assert creatable == list(MAPPED_TYPES)
    assert resources["Patient"]["operation"] == [
        {
            "name": "monitor-summary",
            "definition": SUMMARY_DEFINITION,
            "documentation": "the patient's current decisions, reassessments, watches and alerts",
        }
    ]
    if "Patient" not in MAPPED_TYPES:  # then Patient is neither created nor read here
        assert "interaction" not in resources["Patient"]
    assert [i["code"] for i in resources["OperationDefinition"]["interaction"]] == ["read"]
    assert [i["code"] for i in resources["Questionnaire"]["interaction"]] == ["read"]
    assert set(resources) == {*MAPPED_TYPES, "Patient", "OperationDefinition", "Questionnaire"}


def test_a_type_added_to_the_mapper_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The list is the mapper's (`MAPPED_TYPES`), read when the statement is made: a Patient
    the mapper reads is created and keeps its operation, in one entry."""
    monkeypatch.setattr(capability, "MAPPED_TYPES", ("Observation", "AdverseEvent", "Patient"))
    statement = capability_statement("https://monitor.example", FIXED_NOW).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    resources = statement["rest"][0]["resource"]
    assert [r["type"] for r in resources] == [
        "Observation",
        "AdverseEvent",
        "Patient",
        "OperationDefinition",
        "Questionnaire",
    ]
    patient = resources[2]
    assert [i["code"] for i in patient["interaction"]] == ["create"]
    assert [o["name"] for o in patient["operation"]] == ["monitor-summary"]
    assert statement["url"] == "https://monitor.example/fhir/r4/metadata"


def test_metadata_names_the_configured_public_base_url(api: Api, services: Services) -> None:
    services.settings = services.settings.model_copy(
        update={"public_base_url": "https://ehr.example/monitor"}
    )
    statement = metadata(api)
    assert statement["implementation"]["url"] == "https://ehr.example/monitor/fhir/r4"


def test_the_operation_definition_is_served_and_named_by_the_statement(api: Api) -> None:
    response = api.client.get("/fhir/r4/OperationDefinition/monitor-summary")  # no token
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == FHIR
    definition = OperationDefinition.model_validate(response.json())
    assert definition.url == SUMMARY_DEFINITION
    assert definition.id == "monitor-summary"
    assert (definition.kind, definition.code, definition.resource) == (
        "operation",
        "monitor-summary",
        ["Patient"],
    )
    assert (definition.system, definition.type, definition.instance) == (False, False, True)
    assert definition.affectsState is False
    [returned] = definition.parameter or []
    assert (returned.name, returned.use, returned.min, returned.max, returned.type) == (
        "return",
        "out",
        1,
        "1",
        "Bundle",
    )


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/r4/metadata",
        "/fhir/r4/OperationDefinition/monitor-summary",
        "/fhir/r4/Questionnaire/bipn-patient-report",
    ],
)
def test_the_descriptions_are_public_for_reading_only(api: Api, path: str) -> None:
    """Public by GET; any other method still needs a token (it reads nothing either way)."""
    assert api.client.get(path, headers={"Authorization": "Bearer bm_nope"}).status_code == 200
    refused = api.client.post(path)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"


def test_the_statement_is_dated_by_the_clock() -> None:
    later = FIXED_NOW + dt.timedelta(days=3)
    made = capability_statement("http://x.example", later)
    assert made.date is not None
    assert str(made.date).startswith("2026-10-04")
