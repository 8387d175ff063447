"""CDS Hooks over HTTP (issue 6, item 3): discovery, the bortezomib order check for each card
type against courses the service really folded, order-select, and refused requests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.reference import Reference

from monitor.ingest.service import store_events
from monitor.interop.fhir.medication import Regimen, read_regimen
from monitor.settings import RXNORM as RXNORM_SYSTEM
from monitor.settings import Settings
from policies import parse_event
from tests.common import factories as f
from tests.common.cds import (
    CHECK,
    SELECT,
    CdsService,
    days,
    draft_order,
    hook_request,
    no_empty_values,
)
from tests.common.service import rows
from tests.conftest import FIXED_NOW

BORTEZOMIB = "bortezomib"
DEXAMETHASONE = ("http://www.nlm.nih.gov/research/umls/rxnorm", "3264", "dexamethasone")


# --- discovery --------------------------------------------------------------------------------


def test_discovery_is_public_and_lists_both_hooks(cds: CdsService) -> None:
    response = cds.client.get("/cds-services")  # no token
    assert response.status_code == 200
    services = {s["id"]: s for s in response.json()["services"]}
    assert {(i, s["hook"]) for i, s in services.items()} == {
        (CHECK, "order-sign"),
        (SELECT, "order-select"),
    }
    for service in services.values():
        assert service["title"]
        assert service["description"]
        assert "prefetch" not in service  # nothing to prefetch: omitted, not empty
        assert no_empty_values(service, "service") == []


# --- the courses behind the cards -------------------------------------------------------------


def test_the_seeded_courses_are_what_the_cards_assume(cds: CdsService) -> None:
    def state(patient: str) -> Any:
        response = cds.client.get(f"/v1/patients/{patient}", headers=cds.headers("nurse"))
        return response.json()

    assert [state(p)["status"] for p in ("P-ACT", "P-HELD", "P-DISC", "P-LATE", "P-DONE")] == [
        "active",
        "held",
        "discontinued",
        "active",
        "completed",
    ]
    assert (state("P-ACT")["dose_mg_m2"], state("P-ACT")["schedule"]) == (1.0, "weekly")
    assert state("P-LATE")["reassessment_overdue_since"] is not None


# --- one card per situation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patient", "order", "indicator", "rule", "suggestion", "says"),
    [
        ("P-ACT", {}, "info", "D1", None, "in line"),
        ("P-ACT", {"dose": 1.3}, "warning", "D1", "update", "above the recommendation"),
        ("P-ACT", {"schedule": "twice_weekly"}, "warning", "D1", "update", "twice weekly"),
        ("P-ACT", {"dose": 2.3, "unit": "mg"}, "warning", "D1", "update", "not checked"),
        ("P-HELD", {}, "critical", "D6", "delete", "on hold"),
        ("P-DISC", {}, "critical", "D2", "delete", "discontinued"),
        ("P-LATE", {"dose": 1.3}, "warning", "D5", None, "reassessment overdue"),
        ("P-DONE", {"dose": 1.3}, "warning", "D3", None, "completed"),
        (
            "P-D0",
            {"dose": 1.3, "schedule": "twice_weekly", "route": "IV"},
            "warning",
            "D0",
            "update",
            "1.3 mg/m2 weekly SC recommended",
        ),
        ("P-NEW", {}, "info", "D7", None, "No bortezomib course"),
    ],
)
def test_order_sign_cards(
    cds: CdsService,
    patient: str,
    order: dict[str, Any],
    indicator: str,
    rule: str,
    suggestion: str | None,
    says: str,
) -> None:
    request = draft_order("mr-9", patient, **order)
    [card] = cds.cards(patient, request)
    assert (card["indicator"], card["source"]["label"]) == (
        indicator,
        f"bipn-monitor default@1, rule {rule}",
    )
    assert says in card["summary"]
    assert len(card["summary"]) < 140
    assert card["links"][0]["url"] == f"http://testserver/patients/{patient}"
    assert no_empty_values(card) == []
    actions = [a for s in card.get("suggestions", []) for a in s["actions"]]
    assert [a["type"] for a in actions] == ([suggestion] if suggestion else [])
    if suggestion == "delete":
        assert actions[0]["resourceId"] == "MedicationRequest/mr-9"
    if suggestion == "update":
        updated = MedicationRequest.model_validate(actions[0]["resource"])
        assert updated.id == "mr-9"
        recommended = {"P-ACT": Regimen(1.0, "SC", "weekly"), "P-D0": Regimen(1.3, "SC", "weekly")}
        assert read_regimen(updated, Settings(), "MedicationRequest") == recommended[patient]
    [stored] = rows(cds.services, "SELECT * FROM cds_card WHERE uuid = :u", u=card["uuid"])
    assert (stored["indicator"], stored["rule"], stored["patient_id"], stored["hook"]) == (
        indicator,
        rule,
        patient,
        "order-sign",
    )
    assert stored["order_ref"] == "MedicationRequest/mr-9"
    assert json.loads(stored["suggestions"]) == [s["uuid"] for s in card.get("suggestions", [])]


def test_the_critical_card_rests_on_the_discontinue_decision(cds: CdsService) -> None:
    [card] = cds.cards("P-DISC", draft_order("mr-1", "P-DISC"))
    decisions = cds.client.get("/v1/patients/P-DISC/decisions", headers=cds.headers("nurse"))
    [stop] = [d for d in decisions.json()["decisions"] if d["action"] == "discontinue"]
    assert stop["decision_id"] in card["detail"]
    assert stop["rationale"] in card["detail"]
    [stored] = rows(
        cds.services, "SELECT decision_id FROM cds_card WHERE uuid = :u", u=card["uuid"]
    )
    assert stored["decision_id"] == stop["decision_id"]


def test_pending_events_make_a_warning(fresh: CdsService) -> None:
    """Events stored but not folded yet (no worker ran for them): the advice may be stale."""
    event = parse_event(f.assessment(days(-1), "P-ACT", event_id="act-late", sensory=2))
    store_events(fresh.services.sessions, [event], FIXED_NOW)  # not enqueued: stays pending
    [card] = fresh.cards("P-ACT", draft_order("mr-1", "P-ACT"))
    assert card["indicator"] == "warning"
    assert "still being processed" in card["summary"]
    assert "1 recent event(s)" in card["detail"]


def test_one_card_per_bortezomib_order_none_for_other_drugs(cds: CdsService) -> None:
    other = draft_order("dex-1", "P-ACT", drug=DEXAMETHASONE)
    assert cds.cards("P-ACT", other) == []
    cards = cds.cards(
        "P-ACT", other, draft_order("mr-a", "P-ACT"), draft_order("mr-b", "P-ACT", dose=1.3)
    )
    assert [c["indicator"] for c in cards] == ["info", "warning"]
    assert "**Order** MedicationRequest/mr-a:" in cards[0]["detail"]
    assert "**Order** MedicationRequest/mr-b:" in cards[1]["detail"]
    assert len({c["uuid"] for c in cards}) == 2


def test_order_select_checks_only_the_selected_orders(cds: CdsService) -> None:
    body = hook_request(
        "P-HELD",
        draft_order("mr-old", "P-HELD"),
        draft_order("mr-new", "P-HELD"),
        hook="order-select",
        selections=["MedicationRequest/mr-new"],
    )
    for service in (SELECT, CHECK):
        response = cds.call(body, service=service)
        assert response.status_code == 200, response.text
        [card] = response.json()["cards"]
        assert card["indicator"] == "critical"
        assert card["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/mr-new"
    stored = rows(cds.services, "SELECT hook, service_id FROM cds_card WHERE order_ref = :r",
                  r="MedicationRequest/mr-new")  # fmt: skip
    assert sorted((r["hook"], r["service_id"]) for r in stored) == [
        ("order-select", CHECK),
        ("order-select", SELECT),
    ]


def test_public_base_url_makes_the_links(tmp_path: Any, keys: Any, jwks_url: str) -> None:
    from tests.common.cds import cds_service

    with cds_service(tmp_path, keys, jwks_url, public_base_url="https://bipn.example/m") as svc:
        [card] = svc.cards("P-ACT", draft_order("mr-1", "P-ACT"))
    assert card["links"][0]["url"] == "https://bipn.example/m/patients/P-ACT"


def test_calls_are_audited_without_clinical_content(cds: CdsService) -> None:
    cds.cards("P-HELD", draft_order("mr-audit", "P-HELD"))
    [last] = rows(cds.services, "SELECT * FROM audit_log ORDER BY id DESC LIMIT 1")
    assert (last["actor"], last["role"], last["action"], last["resource"], last["status_code"]) == (
        "t-cds",
        "cds",
        "POST /cds-services/{service_id}",
        "patient:P-HELD",
        200,
    )


# --- refused requests -------------------------------------------------------------------------


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


def _set(body: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def _no_intent(body: dict[str, Any]) -> dict[str, Any]:
    del body["context"]["draftOrders"]["entry"][0]["resource"]["intent"]
    return body


def _other_patient(body: dict[str, Any]) -> dict[str, Any]:
    body["context"]["draftOrders"]["entry"][0]["resource"]["subject"] = {
        "reference": "Patient/P-OTHER"
    }
    return body


BAD: dict[str, tuple[Any, str]] = {
    "no hookInstance": (lambda b: _without(b, "hookInstance"), "body.hookInstance"),
    "no hook": (lambda b: _without(b, "hook"), "body.hook"),
    "a hook the service does not answer": (lambda b: _set(b, "patient-view", "hook"), "body.hook"),
    "no context": (lambda b: _without(b, "context"), "body.context"),
    "no patientId": (lambda b: _without(b, "context", "patientId"), "body.context.patientId"),
    "a patientId with a slash": (
        lambda b: _set(b, "P/1", "context", "patientId"),
        "body.context.patientId",
    ),
    "no userId": (lambda b: _without(b, "context", "userId"), "body.context.userId"),
    "no draftOrders": (
        lambda b: _without(b, "context", "draftOrders"),
        "body.context.draftOrders",
    ),
    "draftOrders not a Bundle": (
        lambda b: _set(b, "Patient", "context", "draftOrders", "resourceType"),
        "body.context.draftOrders.resourceType",
    ),
    "order-select without selections": (
        lambda b: _set(b, "order-select", "hook"),
        "body.context.selections",
    ),
    "an invalid MedicationRequest": (
        _no_intent,
        "body.context.draftOrders.entry.0.resource.intent",
    ),
    "an order for another patient": (
        _other_patient,
        "body.context.draftOrders.entry.0.resource.subject",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_request_is_422_naming_the_field(cds: CdsService, name: str) -> None:
    spoil, field = BAD[name]
    body = spoil(hook_request("P-ACT", draft_order("mr-1", "P-ACT")))
    before = rows(cds.services, "SELECT count(*) AS n FROM cds_card")[0]["n"]
    response = cds.call(body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert rows(cds.services, "SELECT count(*) AS n FROM cds_card")[0]["n"] == before


def test_an_access_token_in_the_request_is_never_echoed(cds: CdsService) -> None:
    body = hook_request("P/1", draft_order("mr-1", "P-ACT"))
    body["fhirAuthorization"] = {"access_token": "very-secret-token", "token_type": "Bearer"}
    response = cds.call(body)
    assert response.status_code == 422
    assert "very-secret-token" not in response.text


def test_an_unknown_service_is_404(cds: CdsService) -> None:
    response = cds.call(hook_request("P-ACT", draft_order()), service="no-such-service")
    assert response.status_code == 404
    assert "GET /cds-services" in response.json()["detail"]


def test_authentication_comes_before_the_body(cds: CdsService) -> None:
    """Without a token the body is not read: no 400/422 tells a stranger the rules."""
    for path in (f"/cds-services/{CHECK}", f"/cds-services/{CHECK}/feedback"):
        assert cds.client.post(path, content=b"{broken").status_code == 401
        assert cds.client.post(path, json={"hook": 1}).status_code == 401
        broken = cds.client.post(path, content=b"{broken", headers=cds.headers("cds"))
        assert broken.status_code == 400
        assert "not valid JSON" in broken.json()["detail"]


@pytest.mark.parametrize(
    "raw",
    [b'{"hook": NaN}', b'{"hook": "\\ud800"}', b"[" * 100_000],
    ids=["NaN", "an unpaired surrogate", "nested too deeply"],
)
def test_bodies_no_database_could_store_are_400(cds: CdsService, raw: bytes) -> None:
    response = cds.client.post(f"/cds-services/{CHECK}", content=raw, headers=cds.headers("cds"))
    assert response.status_code == 400, response.text


def test_a_body_over_the_limit_is_413(cds: CdsService) -> None:
    limit = cds.services.settings.max_body_bytes
    body = hook_request("P-ACT", draft_order())
    body["padding"] = "x" * limit
    assert cds.call(body).status_code == 413


def test_the_openapi_documents_the_request_bodies(cds: CdsService) -> None:
    schema = cds.client.get("/openapi.json").json()
    paths = schema["paths"]
    for path, model in (
        ("/cds-services/{service_id}", "CdsHookRequest"),
        ("/cds-services/{service_id}/feedback", "CdsFeedbackRequest"),
    ):
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"}
    components = schema["components"]["schemas"]
    assert set(components["CdsHookRequest"]["required"]) == {"hook", "hookInstance", "context"}
    assert "draftOrders" in components["CdsOrderContext"]["properties"]
    assert "outcomeTimestamp" in components["CdsFeedback"]["properties"]


def test_an_order_coding_its_drug_in_a_medication_of_the_draft_orders(cds: CdsService) -> None:
    """EHRs often send the drug as a Medication beside the order; both ways get the card."""
    order = draft_order("mr-ref", "P-HELD").model_copy(
        update={
            "medicationCodeableConcept": None,
            "medicationReference": Reference(reference="Medication/bz"),
        }
    )
    body = hook_request("P-HELD", order)
    medication = Medication(
        id="bz", code=CodeableConcept(coding=[Coding(system=RXNORM_SYSTEM, code="358258")])
    )
    body["context"]["draftOrders"]["entry"].append(
        {"resource": medication.model_dump(mode="json", exclude_none=True)}
    )
    response = cds.call(body)
    assert response.status_code == 200, response.text
    assert [c["indicator"] for c in response.json()["cards"]] == ["critical"]
    # without the Medication, the order can't be told to be bortezomib: no card
    body["context"]["draftOrders"]["entry"].pop()
    assert cds.call(body).json()["cards"] == []
