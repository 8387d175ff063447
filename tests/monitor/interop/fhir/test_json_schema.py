"""Everything the FHIR endpoint writes validates against the official FHIR R4 JSON schema
(issue 15, item 7; `tests.common.fhir_schema`: HL7's fhir.schema.json, draft-06, applied with
jsonschema): the CapabilityStatement, the OperationDefinition, the patient report's
Questionnaire, each kind of OperationOutcome,
the transaction and batch answers, what a create answers, and the `$monitor-summary` Bundle
with every resource in it. A judge independent of fhir.resources, which builds them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fhir.resources.R4B.coding import Coding
from starlette.testclient import TestClient

from monitor.app import create_app
from monitor.auth.roles import Role
from monitor.policy_file import load_pack
from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services
from monitor.settings import ATC
from tests.common.fhir_schema import FhirSchema, require_schema
from tests.common.service import Api
from tests.monitor.interop.fhir.test_inbound import (
    as_json,
    bundle,
    given,
    grading,
    order,
    procedure,
)
from tests.monitor.interop.fhir.test_questionnaire import report
from tests.monitor.interop.fhir.test_summary_router import PF_EVENTS, PO_EVENTS

FHIR = "application/fhir+json"
SUMMARY = "/fhir/r4/Patient/{}/$monitor-summary"


@pytest.fixture(scope="module")
def schema() -> FhirSchema:
    return FhirSchema(require_schema())


def valid(schema: FhirSchema, response: Any, status: int) -> dict[str, Any]:
    """The answer, checked: its status, FHIR JSON, no violation of the schema."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == FHIR
    body: dict[str, Any] = response.json()
    assert schema.errors(body) == [], json.dumps(body)[:2000]
    return body


def test_the_schema_catches_what_is_not_r4(schema: FhirSchema) -> None:
    """The checks below can fail: an unknown element, a code not in its value set, a missing
    required element, a list given as one value, a bad date, each found, in a Bundle entry
    too."""
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "bad", "code": "x"}]}
    assert len(schema.errors(outcome)) == 2
    assert schema.errors({"resourceType": "OperationOutcome"}) == [
        "(root): 'issue' is a required property"
    ]
    # (the schema leaves required primitives to FHIR's validators: a statement without `date`
    # passes it; fhir.resources and fhirclient's models refuse one)
    statement = {"resourceType": "CapabilityStatement", "kind": "server", "format": "json"}
    assert [e.split(":")[0] for e in schema.errors(statement)] == ["kind", "format"]
    flag = {"resourceType": "Flag", "status": "active", "code": {}, "subject": {}, "x": 1}
    found = schema.errors(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": flag}]}
    )
    assert found == [
        "entry/0/resource/(root): Additional properties are not allowed ('x' was unexpected)"
    ]
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "authoredOn": "2026-13-01",
    }
    assert any(e.startswith("authoredOn:") for e in schema.errors(task))


def test_the_descriptions_are_valid_r4(api: Api, schema: FhirSchema) -> None:
    statement = valid(schema, api.client.get("/fhir/r4/metadata"), 200)
    assert statement["resourceType"] == "CapabilityStatement"
    definition = valid(schema, api.client.get("/fhir/r4/OperationDefinition/monitor-summary"), 200)
    assert definition["resourceType"] == "OperationDefinition"
    form = valid(schema, api.client.get("/fhir/r4/Questionnaire/bipn-patient-report"), 200)
    assert form["resourceType"] == "Questionnaire"
    assert [r for r in statement["rest"][0]["resource"] if r["type"] == "Questionnaire"]


def test_the_schema_catches_a_bad_questionnaire(schema: FhirSchema) -> None:
    """What the Questionnaire check above could miss is found: an item type not in R4's value
    set, an enableWhen operator not in its own, an answer option of an element R4 lacks."""
    item = {"linkId": "a", "type": "likert", "enableWhen": [{"question": "b", "operator": "<>"}]}
    item["answerOption"] = [{"valueText": "None"}]
    found = schema.errors({"resourceType": "Questionnaire", "status": "active", "item": [item]})
    assert [e.split(":")[0] for e in found] == [
        "item/0/type",
        "item/0/enableWhen/0/operator",
        "item/0/answerOption/0",
    ], found


def test_every_kind_of_operation_outcome_is_valid_r4(
    api: Api, services: Services, schema: FhirSchema, tokens: dict[Role, str]
) -> None:
    ingest = api.headers("ingest") | {"Content-Type": FHIR}
    client = api.client
    answers = [
        (client.post("/fhir/r4"), 401),
        (client.get(SUMMARY.format("P1"), headers=api.headers("ingest")), 403),
        (api.get("/fhir/r4/Patient/P1"), 404),
        (api.get(SUMMARY.format("NOBODY")), 404),
        (client.post("/fhir/r4/Encounter", content=b"{}", headers=ingest), 404),
        (client.delete("/fhir/r4", headers=ingest), 405),
        (api.client.get("/fhir/r4/metadata", headers={"Accept": "application/fhir+xml"}), 406),
        (client.post("/fhir/r4", content=b"{", headers=ingest), 400),
        (client.post("/fhir/r4/Observation", json=as_json(order()), headers=ingest), 400),
        (client.post("/fhir/r4", content=b"<x/>", headers=api.headers("ingest")), 415),
        (api.get(SUMMARY.format("a,b")), 422),
        (client.get(SUMMARY.format("P1") + "?x=%01", headers=api.headers("nurse")), 422),
        (client.post("/fhir/r4", json={"resourceType": "Observation"}, headers=ingest), 422),
        (client.post("/fhir/r4", json=as_json(grading()), headers=ingest), 201),  # information
    ]
    changed = as_json(grading(grade=3))  # the same identifier, another grade
    answers.append((client.post("/fhir/r4", json=changed, headers=ingest), 409))
    services.settings = services.settings.model_copy(update={"max_body_bytes": 100})
    answers.append((client.post("/fhir/r4", json=as_json(grading()), headers=ingest), 413))
    for response, status in answers:
        assert valid(schema, response, status)["resourceType"] == "OperationOutcome"


def test_a_500_outcome_is_valid_r4(
    services: Services, tokens: dict[Role, str], schema: FhirSchema
) -> None:
    app: FastAPI = create_app(services)

    @app.get("/fhir/r4/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app) as client:
        response = client.get(
            "/fhir/r4/boom", headers={"Authorization": f"Bearer {tokens['nurse']}"}
        )
    valid(schema, response, 500)


def test_the_transaction_and_batch_answers_are_valid_r4(api: Api, schema: FhirSchema) -> None:
    ingest = api.headers("ingest") | {"Content-Type": FHIR}
    course = [order(), grading("sensory", 2, "o1"), given()]
    transaction = bundle(*course, kind="transaction")
    answer = valid(schema, api.client.post("/fhir/r4", json=transaction, headers=ingest), 200)
    assert answer["type"] == "transaction-response"
    bad = as_json(grading(ident="o9")) | {"effectiveDateTime": "2026-03-03T10:00:00"}
    batch = bundle(*course, kind="batch")
    batch["entry"].append({"resource": bad, "request": {"method": "POST", "url": "Observation"}})
    answer = valid(schema, api.client.post("/fhir/r4", json=batch, headers=ingest), 200)
    assert [e["response"]["status"] for e in answer["entry"]] == ["200 OK"] * 3 + [
        "422 Unprocessable Entity"
    ]
    failed = bundle(grading(ident="o8"), kind="transaction")
    failed["entry"][0]["resource"]["effectiveDateTime"] = "2026-03-03T10:00:00"
    valid(schema, api.client.post("/fhir/r4", json=failed, headers=ingest), 422)


@pytest.mark.parametrize(
    ("resource_type", "resource"),
    [
        ("Observation", lambda: as_json(grading())),
        ("MedicationRequest", lambda: as_json(order())),
        ("MedicationAdministration", lambda: as_json(given())),
        ("Procedure", lambda: as_json(procedure(Coding(system=ATC, code="J06BA02")))),
        ("QuestionnaireResponse", lambda: report(comment="worse at night")),
    ],
)
def test_what_a_create_answers_is_valid_r4(
    api: Api, services: Services, schema: FhirSchema, resource_type: str, resource: Any
) -> None:
    services.pack = load_pack("default@2", None)  # where patient reports are taken (V9)
    ingest = api.headers("ingest") | {"Content-Type": FHIR}
    path = f"/fhir/r4/{resource_type}"
    created = valid(schema, api.client.post(path, json=resource(), headers=ingest), 201)
    assert created["id"].startswith("fhir-")
    valid(schema, api.client.post(path, json=resource(), headers=ingest), 200)


@pytest.fixture
def processed(api: Api, worker: InProcessWorker) -> Api:
    response = api.post_events({"events": [*PF_EVENTS, *PO_EVENTS]})
    assert response.status_code == 202, response.text
    assert worker.wait_idle()
    # an acknowledged alert: the Communication says who, and when
    [first, *_] = api.get("/v1/alerts", role="nurse").json()["alerts"]
    ack = api.client.post(f"/v1/alerts/{first['id']}/ack", json={}, headers=api.headers("nurse"))
    assert ack.status_code == 200, ack.text
    return api


@pytest.mark.parametrize("patient", ["PF", "PO"])
def test_the_summary_and_every_resource_in_it_are_valid_r4(
    processed: Api, schema: FhirSchema, patient: str
) -> None:
    for method in ("GET", "POST"):
        response = processed.client.request(
            method, SUMMARY.format(patient), headers=processed.headers("nurse")
        )
        summary = valid(schema, response, 200)
        kinds = {e["resource"]["resourceType"] for e in summary["entry"]}
        expected = (
            {"DetectedIssue", "Task", "Flag", "Communication"} if patient == "PF" else {"Task"}
        )
        assert expected <= kinds, kinds
