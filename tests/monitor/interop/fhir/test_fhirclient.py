"""SMART's Python FHIR client (`fhirclient`, PyPI) against the service served by uvicorn on a
free port (issue 15, item 7): an independent client, with its own R4 models that parse
strictly, reads what the service writes. `prepare()` reads `/fhir/r4/metadata` (public) and
finds an open server (no OAuth endpoints are claimed: tokens are the service's own, sent as a
header), then the OperationDefinition, the patient report's Questionnaire, a create and the
`$monitor-summary` go through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fhirclient import client as fhir_client
from fhirclient.models.bundle import Bundle
from fhirclient.models.observation import Observation
from fhirclient.models.operationdefinition import OperationDefinition
from fhirclient.models.questionnaire import Questionnaire
from fhirclient.server import FHIRNotFoundException, FHIRUnauthorizedException

from monitor.app import create_app
from monitor.auth.roles import Role
from monitor.interop.fhir.inbound import MAPPED_TYPES
from monitor.interop.fhir.questionnaire import QUESTIONNAIRE_URL
from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services
from tests.common.service import rows
from tests.monitor.interop.fhir.test_inbound import as_json, grading
from tests.monitor.interop.fhir.test_summary_router import PF_EVENTS
from tests.monitor.web.site import Uvicorn, free_port


@pytest.fixture
def base_url(services: Services, worker: InProcessWorker) -> Iterator[str]:
    server = Uvicorn(create_app(services), free_port())
    server.start()
    try:
        yield f"{server.url}/fhir/r4"
    finally:
        server.stop()


def smart_client(base_url: str, token: str | None = None) -> Any:
    client = fhir_client.FHIRClient(settings={"app_id": "bipn-test", "api_base": base_url})
    if token is not None:  # the service's bearer token, as a header on every request
        client.server.session.headers["Authorization"] = f"Bearer {token}"
    return client


def test_prepare_reads_the_capability_statement(base_url: str) -> None:
    client = smart_client(base_url)
    assert client.prepare() is True  # an open server to the client: no OAuth to go through
    statement = client.server.capabilityStatement  # parsed by fhirclient's strict R4 models
    assert statement.fhirVersion == "4.0.1"
    assert statement.kind == "instance"
    [rest] = statement.rest
    assert rest.mode == "server"
    created = [r.type for r in rest.resource if [i.code for i in r.interaction or []] == ["create"]]
    assert created == list(MAPPED_TYPES)
    [patient] = [r for r in rest.resource if r.type == "Patient"]
    [operation] = patient.operation
    definition = OperationDefinition.read("monitor-summary", client.server)
    assert operation.definition == definition.url
    assert (definition.instance, definition.type, definition.system) == (True, False, False)


def test_the_patient_report_questionnaire_through_the_client(base_url: str) -> None:
    """Read without a token and parsed by the client's strict R4 models."""
    client = smart_client(base_url)
    assert client.prepare() is True
    [rest] = client.server.capabilityStatement.rest
    [entry] = [r for r in rest.resource if r.type == "Questionnaire"]
    assert [i.code for i in entry.interaction] == ["read"]
    form = Questionnaire.read("bipn-patient-report", client.server)
    assert form.url == QUESTIONNAIRE_URL
    assert [i.linkId for i in form.item] == [
        "numbness-tingling-severity",
        "numbness-tingling-interference",
        "new-weakness",
        "comment",
    ]
    assert form.item[1].enableWhen[0].answerCoding.code == "0"


def test_a_create_and_the_summary_through_the_client(
    base_url: str, services: Services, worker: InProcessWorker, tokens: dict[Role, str]
) -> None:
    ingest = smart_client(base_url, tokens["ingest"])
    assert ingest.prepare() is True
    observation = as_json(grading(ident="smart-1"))
    del observation["id"]  # fhirclient creates only what has no id yet
    answered = Observation(observation).create(ingest.server)
    assert answered["resourceType"] == "Observation"
    [event] = rows(services, "SELECT event_id FROM event")
    assert answered["id"] == event["event_id"]
    Observation(answered)  # the answer parses with the client's own model

    response = httpx.post(
        base_url.replace("/fhir/r4", "/v1/events"),
        json={"events": PF_EVENTS},
        headers={"Authorization": f"Bearer {tokens['ingest']}"},
    )
    assert response.status_code == 202, response.text
    assert worker.wait_idle()
    nurse = smart_client(base_url, tokens["nurse"])
    summary = Bundle.read_from("Patient/PF/$monitor-summary", nurse.server)  # strict parse
    assert summary.type == "collection"
    kinds = {entry.resource.resource_type for entry in summary.entry}
    assert {"DetectedIssue", "Flag", "Communication"} <= kinds

    with pytest.raises(FHIRUnauthorizedException):
        Bundle.read_from("Patient/PF/$monitor-summary", smart_client(base_url).server)
    with pytest.raises(FHIRNotFoundException):
        Bundle.read_from("Patient/NOBODY/$monitor-summary", nurse.server)
