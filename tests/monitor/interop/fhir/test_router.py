"""`POST /fhir/r4` (monitor/api_fhir.py): stored exactly as POST /v1/events stores events.

A transaction is all or nothing; a batch stores what maps and answers each entry; sending
the same bundle again is a no-op; the answers are FHIR (Bundle or OperationOutcome).
"""

from __future__ import annotations

import json
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from monitor.services import Services
from tests.common.service import Api, eventually, row_counts, rows
from tests.monitor.interop.fhir.test_inbound import as_json, bundle, given, grading, order

FHIR = "application/fhir+json"


def post(api: Api, payload: Any, content_type: str = FHIR, role: Any = "ingest") -> Any:
    headers = api.headers(role) | {"Content-Type": content_type}
    return api.client.post("/fhir/r4", content=json.dumps(payload).encode(), headers=headers)


def statuses(response: Any) -> list[str]:
    answer = Bundle.model_validate(response.json())  # the answer is valid FHIR
    return [entry.response.status for entry in answer.entry or []]


def outcome(response: Any) -> list[str]:
    parsed = OperationOutcome.model_validate(response.json())
    return [str(issue.diagnostics) for issue in parsed.issue]


def course(kind: str) -> dict[str, Any]:
    return bundle(
        order(),
        grading("sensory", 2, "o1", effectiveDateTime="2026-03-22T09:00:00+01:00"),
        grading("pain", 1, "o2", effectiveDateTime="2026-03-22T09:00:00+01:00"),
        given(),
        kind=kind,
    )


def test_a_transaction_is_stored_and_processed(api: Api, services: Services) -> None:
    response = post(api, course("transaction"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR)
    assert Bundle.model_validate(response.json()).type == "transaction-response"
    assert statuses(response) == ["201 Created"] * 4
    assert row_counts(services, ["event", "outbox"]) == {"event": 3, "outbox": 3}
    stored = rows(services, "SELECT type, body FROM event ORDER BY occurred_at")
    assert [r["type"] for r in stored] == ["enrollment", "administration", "assessment"]
    assert json.loads(stored[2]["body"])["grades"] == {"sensory": 2, "pain": 1}
    eventually(lambda: len(api.decisions("P-1")) > 0, what="the patient processed")
    actions = {d["action"] for d in api.decisions("P-1")}
    assert "reduce_dose" in actions  # grade 2 sensory on 1.3: one level down


def test_sending_the_same_bundle_again_is_a_no_op(api: Api, services: Services) -> None:
    assert statuses(post(api, course("batch"))) == ["201 Created"] * 4
    before = row_counts(services, ["event", "outbox"])
    again = post(api, course("batch"))
    assert again.status_code == 200
    assert statuses(again) == ["200 OK"] * 4
    assert "already stored as event fhir-" in json.dumps(again.json())
    assert row_counts(services, ["event", "outbox"]) == before


def test_a_transaction_with_one_bad_entry_stores_nothing(api: Api, services: Services) -> None:
    payload = course("transaction")
    payload["entry"][3]["resource"]["effectiveDateTime"] = "2026-03-03T10:00:00"
    before = row_counts(services)
    response = post(api, payload)
    assert response.status_code == 422
    assert outcome(response) == [
        "Bundle.entry[3].resource.effectiveDateTime: '2026-03-03T10:00:00' has no UTC offset: "
        "clinical times must carry one (e.g. 2026-03-02T08:40:00+01:00 or ...Z)",
        "nothing was stored",
    ]
    assert row_counts(services) == before


def test_a_batch_stores_what_maps_and_answers_each_entry(api: Api, services: Services) -> None:
    payload = course("batch")
    payload["entry"][0]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] = "6809"
    response = post(api, payload)
    assert response.status_code == 200
    assert statuses(response) == [
        "422 Unprocessable Entity",
        "201 Created",
        "201 Created",
        "201 Created",
    ]
    failure = Bundle.model_validate(response.json()).entry[0].response.outcome
    assert failure is not None
    assert "is not bortezomib" in json.dumps(failure.model_dump(mode="json"))
    assert row_counts(services, ["event"]) == {"event": 2}


def test_a_corrected_resource_with_the_same_identifier_conflicts(
    api: Api, services: Services
) -> None:
    assert post(api, as_json(grading(grade=1))).status_code == 201
    corrected = as_json(grading(grade=2, status="corrected"))
    response = post(api, corrected)
    assert response.status_code == 409
    assert "already stored with other content" in outcome(response)[0]
    # in a batch, only that entry fails
    batch = bundle(grading(grade=2, status="corrected"), given())
    assert statuses(post(api, batch)) == ["409 Conflict", "201 Created"]
    assert row_counts(services, ["event"]) == {"event": 2}


def test_a_lone_resource(api: Api) -> None:
    first = post(api, as_json(grading()), content_type="application/json")
    assert first.status_code == 201
    assert outcome(first)[0].startswith("stored as event fhir-")
    again = post(api, as_json(grading()))
    assert again.status_code == 200
    assert outcome(again)[0].startswith("already stored as event fhir-")


def test_refusals_before_mapping(api: Api, services: Services) -> None:
    assert post(api, as_json(grading()), content_type="text/plain").status_code == 415
    bad_json = api.client.post(
        "/fhir/r4", content=b"{nope", headers=api.headers("ingest") | {"Content-Type": FHIR}
    )
    assert bad_json.status_code == 400
    assert "the body is not valid JSON" in outcome(bad_json)[0]
    assert post(api, {"resourceType": "Bundle", "type": "searchset"}).status_code == 422
    assert post(api, as_json(grading()), role="nurse").status_code == 403
    assert post(api, as_json(grading()), role=None).status_code == 401
    assert row_counts(services, ["event"]) == {"event": 0}


def test_calls_are_audited_without_clinical_content(api: Api, services: Services) -> None:
    post(api, course("batch"))
    audit = rows(services, "SELECT action, resource, status_code FROM audit_log")
    assert {"action": "POST /fhir/r4", "resource": "4 entries, 0 failed", "status_code": 200} in (
        audit
    )
