"""`GET /fhir/r4/Patient/{id}/$monitor-summary` through the app (issue 6, "FHIR out"): events
posted to `/v1/events`, processed by the in-process worker, then the summary read as `nurse` and
as `infusion`. What the bundle says is checked against what the contract API says (decisions)
and what the database holds (alerts, the audit log): two independent answers.

Every response is parsed back with `fhir.resources` R4B: the Bundle, and each resource with its
own model.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from starlette.testclient import TestClient

from monitor.app import create_app
from monitor.auth.roles import Role
from monitor.auth.tokens import create_token
from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services, build_services
from monitor.settings import FHIR_BASE, Settings
from monitor.storage.migrate import upgrade
from tests.common import factories as f
from tests.common.service import Api, rows
from tests.conftest import FIXED_NOW

DAY = dt.timedelta(days=1)
T0 = FIXED_NOW - 40 * DAY
EVENT_IDS = f"{FHIR_BASE}/NamingSystem/event-id"
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
Json = dict[str, Any]

# PF: IV twice weekly with a risk factor (SC weekly advice), grade 2 (a reduction; graded in
# FHIR: the event names its Observations), grade 3 (discontinued, coasting watch), motor
# worsening after the stop (escalation, unanswered a week later). PO: enrolled 30 days ago and
# never graded (its first reassessment is overdue).
PF_EVENTS = [
    f.enrollment(
        T0,
        patient="PF",
        event_id="pf-e",
        route="IV",
        schedule="twice_weekly",
        risk_factors=["diabetes"],
        unit="u7",
    ),
    f.assessment(
        T0 + 10 * DAY,
        patient="PF",
        event_id="pf-a1",
        sensory=2,
        extra={"fhir_source": ["Observation/obs-1", "Observation/obs-2"]},
    ),
    f.assessment(T0 + 20 * DAY, patient="PF", event_id="pf-a2", sensory=3),
    f.assessment(T0 + 30 * DAY, patient="PF", event_id="pf-a3", sensory=3, motor=2),
]
PO_EVENTS = [f.enrollment(FIXED_NOW - 30 * DAY, patient="PO", event_id="po-e")]


def app_with_summary(services: Services, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """The service's app (create_app registers the summary route)."""
    return create_app(services)


@pytest.fixture
def fhir_api(
    services: Services,
    worker: InProcessWorker,
    tokens: dict[Role, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Api]:
    with TestClient(app_with_summary(services, monkeypatch)) as client:
        yield Api(client, tokens)


def post(api: Api, worker: InProcessWorker, *bodies: Json) -> None:
    response = api.post_events({"events": list(bodies)})
    assert response.status_code == 202, response.text
    assert worker.wait_idle()


def summary(api: Api, patient_id: str, role: Role = "nurse") -> Json:
    """The summary as a client reads it: FHIR JSON, every resource valid."""
    response = api.get(f"/fhir/r4/Patient/{patient_id}/$monitor-summary", role=role)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    Bundle.model_validate_json(response.text)
    payload: Json = response.json()
    assert payload["resourceType"] == "Bundle"
    assert payload["type"] == "collection"
    for entry in payload.get("entry", []):
        get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])
    return payload


def of_type(payload: Json, resource_type: str) -> list[Json]:
    return [
        e["resource"]
        for e in payload.get("entry", [])
        if e["resource"]["resourceType"] == resource_type
    ]


def urls(payload: Json) -> dict[str, str]:
    """fullUrl -> `Type/id` of every entry."""
    return {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in payload["entry"]
    }


def test_summary_of_a_treated_and_stopped_patient(
    fhir_api: Api, services: Services, worker: InProcessWorker
) -> None:
    post(fhir_api, worker, *PF_EVENTS)
    decisions = {d["decision_id"]: d for d in fhir_api.decisions("PF")}
    payload = summary(fhir_api, "PF")
    assert payload["timestamp"] == "2026-10-01T12:00:00Z"
    assert payload["link"] == [
        {"relation": "self", "url": "http://testserver/fhir/r4/Patient/PF/$monitor-summary"}
    ]
    named = urls(payload)

    # one DetectedIssue per current decision, nothing else
    issues = {i["id"]: i for i in of_type(payload, "DetectedIssue")}
    assert set(issues) == set(decisions)
    by_action = {decisions[i]["action"]: issue for i, issue in issues.items()}
    assert by_action["reduce_dose"]["mitigation"][0]["action"]["text"] == (
        "bortezomib 1.0 mg/m2 weekly SC"
    )
    # graded in FHIR: the Observations; sent as JSON: the event by its id; a timer: nothing
    assert by_action["reduce_dose"]["evidence"] == [
        {"detail": [{"reference": "Observation/obs-1"}, {"reference": "Observation/obs-2"}]}
    ]
    assert by_action["discontinue"]["evidence"] == [
        {"detail": [{"type": "Observation", "identifier": {"system": EVENT_IDS, "value": "pf-a2"}}]}
    ]
    assert by_action["advise_subcutaneous_weekly"]["evidence"][0]["detail"][0]["type"] == (
        "MedicationRequest"
    )
    assert "evidence" not in by_action["escalation_unanswered"]
    assert by_action["discontinue"]["severity"] == "high"

    # the pending reassessment of the coasting watch, pointing at its decision
    [task] = of_type(payload, "Task")
    assert task["restriction"]["period"]["end"] == "2026-10-05T12:00:00Z"
    assert task["businessStatus"]["coding"][0]["code"] == "scheduled"
    focus = decisions[named[task["focus"]["reference"]].removeprefix("DetectedIssue/")]
    assert (focus["action"], focus["due_at"]) == ("schedule_reassessment", "2026-10-05T12:00:00Z")

    # the watch and the unanswered escalation
    flags = {flag["code"]["coding"][0]["code"]: flag for flag in of_type(payload, "Flag")}
    assert set(flags) == {"coasting-watch", "immunotherapy-escalation"}
    assert flags["coasting-watch"]["period"] == {
        "start": "2026-09-11T12:00:00Z",
        "end": "2026-12-10T12:00:00Z",
    }
    for code, action in (
        ("coasting-watch", "coasting_watch_started"),
        ("immunotherapy-escalation", "escalation_unanswered"),
    ):
        [detail] = [e for e in flags[code]["extension"] if e["url"] == FLAG_DETAIL]
        target = named[detail["valueReference"]["reference"]].removeprefix("DetectedIssue/")
        assert decisions[target]["action"] == action

    # one Communication per alert the database holds for the patient
    stored = rows(
        services,
        "SELECT id, decision_id, message FROM alert WHERE patient_id = 'PF' ORDER BY id",
    )
    messages = of_type(payload, "Communication")
    assert stored
    assert [m["id"] for m in messages] == [f"alert-{a['id']}" for a in stored]
    for message, row in zip(messages, stored, strict=True):
        assert message["payload"] == [{"contentString": row["message"]}]
        assert named[message["about"][0]["reference"]] == f"DetectedIssue/{row['decision_id']}"
        assert "received" not in message


def test_an_acknowledgement_shows_in_the_summary(
    fhir_api: Api, services: Services, worker: InProcessWorker
) -> None:
    post(fhir_api, worker, *PF_EVENTS)
    [alert_id] = [
        r["id"]
        for r in rows(services, "SELECT id, action FROM alert WHERE patient_id = 'PF'")
        if r["action"] == "discontinue"
    ]
    response = fhir_api.client.post(
        f"/v1/alerts/{alert_id}/ack",
        headers=fhir_api.headers("nurse"),
        json={"by": "nurse-7", "at": "2026-10-01T12:01:00Z", "note": "physician called"},
    )
    assert response.status_code == 200, response.text
    messages = {m["id"]: m for m in of_type(summary(fhir_api, "PF"), "Communication")}
    acked = messages.pop(f"alert-{alert_id}")
    assert acked["received"] == "2026-10-01T12:01:00Z"
    [ack] = acked["extension"]
    assert ack["url"] == f"{FHIR_BASE}/StructureDefinition/acknowledgement"
    assert {e["url"]: next(v for k, v in e.items() if k != "url") for e in ack["extension"]} == {
        "by": "nurse-7",
        "token": "test-nurse",
        "at": "2026-10-01T12:01:00Z",
        "note": "physician called",
        "recorded-at": "2026-10-01T12:00:00Z",
    }
    assert all("received" not in m for m in messages.values())


def test_an_overdue_reassessment_is_an_overdue_task(fhir_api: Api, worker: InProcessWorker) -> None:
    post(fhir_api, worker, *PO_EVENTS)
    decisions = {d["decision_id"]: d for d in fhir_api.decisions("PO")}
    payload = summary(fhir_api, "PO")
    named = urls(payload)
    [task] = of_type(payload, "Task")
    assert task["businessStatus"]["coding"][0]["code"] == "overdue"
    assert task["restriction"]["period"]["end"] == "2026-09-22T12:00:00Z"
    missed = named[task["reasonReference"]["reference"]].removeprefix("DetectedIssue/")
    assert decisions[missed]["action"] == "reassessment_overdue"
    assert of_type(payload, "Flag") == []


def test_nurse_and_infusion_read_the_same_summary_and_are_audited(
    fhir_api: Api, services: Services, worker: InProcessWorker
) -> None:
    post(fhir_api, worker, *PF_EVENTS)
    assert summary(fhir_api, "PF", "nurse") == summary(fhir_api, "PF", "infusion")
    assert fhir_api.get("/fhir/r4/Patient/NOBODY/$monitor-summary").status_code == 404
    audited = rows(
        services,
        "SELECT actor, role, resource, status_code FROM audit_log WHERE action = :action "
        "ORDER BY id",
        action="GET /fhir/r4/Patient/{patient_id}/$monitor-summary",
    )
    assert audited == [
        {"actor": "test-nurse", "role": "nurse", "resource": "patient:PF", "status_code": 200},
        {
            "actor": "test-infusion",
            "role": "infusion",
            "resource": "patient:PF",
            "status_code": 200,
        },
        {"actor": "test-nurse", "role": "nurse", "resource": "patient:NOBODY", "status_code": 404},
    ]


def test_a_patient_with_events_not_yet_processed_has_an_empty_summary(
    fhir_api: Api, services: Services, worker: InProcessWorker
) -> None:
    class Parked:
        def enqueue(self, patient_ids: list[str]) -> int:
            return len(patient_ids)

        def ping(self) -> bool:
            return True

    services.dispatcher = Parked()
    assert fhir_api.post_events(PO_EVENTS[0]).status_code == 202
    payload = summary(fhir_api, "PO")
    assert "entry" not in payload


def test_an_unknown_patient_is_a_404_operation_outcome(fhir_api: Api) -> None:
    response = fhir_api.get("/fhir/r4/Patient/NOBODY/$monitor-summary", role="infusion")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = OperationOutcome.model_validate_json(response.text)
    [issue] = outcome.issue
    assert (issue.severity, issue.code) == ("error", "not-found")
    assert "NOBODY" in (issue.diagnostics or "")


@pytest.mark.parametrize(
    ("role", "status"),
    [(None, 401), ("ingest", 403), ("auditor", 403), ("cds", 403), ("admin", 200)],
)
def test_who_may_read_the_summary(
    fhir_api: Api, worker: InProcessWorker, role: Role | None, status: int
) -> None:
    post(fhir_api, worker, *PO_EVENTS)
    response = fhir_api.get("/fhir/r4/Patient/PO/$monitor-summary", role=role)
    assert response.status_code == status, response.text


def test_a_bad_token_is_401(fhir_api: Api) -> None:
    response = fhir_api.client.get(
        "/fhir/r4/Patient/PO/$monitor-summary", headers={"Authorization": "Bearer bm_nope"}
    )
    assert response.status_code == 401


@pytest.mark.parametrize("patient_id", ["x" * 65, "a b", "a,b"])
def test_a_malformed_patient_id_is_rejected(fhir_api: Api, patient_id: str) -> None:
    response = fhir_api.get(f"/fhir/r4/Patient/{patient_id}/$monitor-summary")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    issues = OperationOutcome.model_validate(response.json()).issue
    assert [i.code for i in issues] == ["invalid", "invalid"]
    assert str(issues[1].diagnostics).startswith(f"patient_id: {patient_id!r}: String should")


def test_the_configured_public_base_url_names_the_bundle(
    sqlite_settings: Settings, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = sqlite_settings.model_copy(
        update={
            "database_url": f"sqlite:///{tmp_path / 'public.db'}",
            "public_base_url": "https://ehr.example/monitor",
        }
    )
    services = build_services(settings)
    upgrade(services.engine)
    worker = InProcessWorker(services)
    services.dispatcher = worker
    worker.start()
    try:
        tokens: dict[Role, str] = {
            role: create_token(services.sessions, role, f"test-{role}", FIXED_NOW)
            for role in ("ingest", "nurse")
        }
        with TestClient(app_with_summary(services, monkeypatch)) as client:
            api = Api(client, tokens)
            post(api, worker, *PO_EVENTS)
            payload = summary(api, "PO")
    finally:
        worker.stop()
        services.close()
    assert payload["link"] == [
        {
            "relation": "self",
            "url": "https://ehr.example/monitor/fhir/r4/Patient/PO/$monitor-summary",
        }
    ]
    assert json.dumps(payload).count("http://testserver") == 0


# --- the operation by POST (FHIR allows it for an operation that changes nothing) -----------

SUMMARY_PF = "/fhir/r4/Patient/PF/$monitor-summary"


def post_summary(
    api: Api, content: bytes, content_type: str | None = "application/fhir+json"
) -> Any:
    headers = api.headers("nurse")
    if content_type is not None:
        headers["Content-Type"] = content_type
    return api.client.post(SUMMARY_PF, content=content, headers=headers)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"", None),
        (b"", "application/fhir+json"),
        (b'{"resourceType": "Parameters"}', "application/fhir+json"),
        (b'{"resourceType": "Parameters", "parameter": []}', "application/json"),
    ],
    ids=["empty", "empty-typed", "parameters", "no-parameters"],
)
def test_by_post_the_summary_is_the_same_and_audited_as_post(
    fhir_api: Api,
    services: Services,
    worker: InProcessWorker,
    content: bytes,
    content_type: str | None,
) -> None:
    post(fhir_api, worker, *PF_EVENTS)
    response = post_summary(fhir_api, content, content_type)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    assert response.json() == summary(fhir_api, "PF")
    audited = rows(
        services,
        "SELECT action, resource, status_code FROM audit_log WHERE action LIKE 'POST /fhir/%'",
    )
    assert audited == [
        {
            "action": "POST /fhir/r4/Patient/{patient_id}/$monitor-summary",
            "resource": "patient:PF",
            "status_code": 200,
        }
    ]


@pytest.mark.parametrize(
    ("content", "content_type", "status", "why"),
    [
        (
            b'{"resourceType": "Parameters", "parameter": [{"name": "since", "valueDate": '
            b'"2026-01-01"}]}',
            "application/fhir+json",
            400,
            "request: monitor-summary takes no input parameters; given: ['since']",
        ),
        (
            b'{"resourceType": "Patient"}',
            "application/fhir+json",
            400,
            "request: the body is empty or a Parameters resource",
        ),
        (
            b'{"resourceType": "Parameters", "parameter": "x"}',
            "application/fhir+json",
            400,
            "request: not a valid Parameters resource: parameter: Input should be a valid list",
        ),
        (b"{", "application/fhir+json", 400, "request: the body is not valid JSON: "),
        (
            b"<Parameters/>",
            "application/fhir+xml",
            415,
            "request: Content-Type must be application/fhir+json, not 'application/fhir+xml'",
        ),
    ],
    ids=["a-parameter", "not-parameters", "invalid-parameters", "not-json", "xml"],
)
def test_by_post_a_body_other_than_no_parameters_is_refused(
    fhir_api: Api,
    services: Services,
    worker: InProcessWorker,
    content: bytes,
    content_type: str,
    status: int,
    why: str,
) -> None:
    post(fhir_api, worker, *PF_EVENTS)
    response = post_summary(fhir_api, content, content_type)
    assert response.status_code == status, response.text
    [issue] = OperationOutcome.model_validate(response.json()).issue
    assert str(issue.diagnostics).startswith(why)
    # refused before the patient was read: no audit row for a read
    assert rows(
        services, "SELECT count(*) AS n FROM audit_log WHERE action LIKE 'POST /fhir/%'"
    ) == [{"n": 0}]
