"""Every error under /fhir/r4 is an `OperationOutcome` (issue 15, item 1): those of the FHIR
handlers, and those answered before them (the guard's 401 and 422, the role check's 403, the
router's 404 and 405, the body limit's 413, FastAPI's 422, the request log's 500), each with
the IssueType of its status; the /v1 API keeps its `{"detail", "errors"}` shape.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fhir.resources.R4B.operationoutcome import OperationOutcome
from starlette.testclient import TestClient

from monitor.app import create_app
from monitor.auth.roles import Role
from monitor.services import Services
from tests.common.service import Api, rows
from tests.monitor.interop.fhir.test_inbound import as_json, grading

FHIR = "application/fhir+json"
SUMMARY = "/fhir/r4/Patient/P1/$monitor-summary"


def outcome(response: Any) -> list[tuple[str, str, str]]:
    """(severity, code, diagnostics) of each issue; the answer must be FHIR JSON."""
    assert response.headers["content-type"] == FHIR, response.text
    parsed = OperationOutcome.model_validate(response.json())
    return [(str(i.severity), str(i.code), str(i.diagnostics)) for i in parsed.issue]


def test_no_token_is_a_401_outcome_with_its_challenge(api: Api, services: Services) -> None:
    for method, path in [("POST", "/fhir/r4"), ("GET", SUMMARY), ("GET", "/fhir/r4/nothing")]:
        response = api.client.request(method, path)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert outcome(response) == [("error", "login", "a bearer token is required")]
    unknown = api.client.post("/fhir/r4", headers={"Authorization": "Bearer bm_nope"})
    assert outcome(unknown) == [("error", "login", "the token is unknown or revoked")]
    assert rows(services, "SELECT count(*) AS n FROM event") == [{"n": 0}]


def test_a_role_not_allowed_is_a_403_outcome(api: Api) -> None:
    response = api.client.get(SUMMARY, headers=api.headers("ingest"))
    assert response.status_code == 403
    [(severity, code, why)] = outcome(response)
    assert (severity, code) == ("error", "forbidden")
    assert why.startswith("role 'ingest' may not GET /fhir/r4/Patient/{patient_id}/$monitor-")


@pytest.mark.parametrize(
    "path", ["/fhir/r4/Patient/P1", "/fhir/r4/Observation/o1/_history/1", "/fhir/r4/a/b/c/d"]
)
def test_an_unknown_route_is_a_404_outcome(api: Api, path: str) -> None:
    response = api.get(path, role="nurse")
    assert response.status_code == 404
    assert outcome(response) == [("error", "not-found", "Not Found")]


def test_a_method_not_served_is_a_405_outcome_with_allow(api: Api) -> None:
    response = api.client.delete("/fhir/r4", headers=api.headers("ingest"))
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert outcome(response) == [("error", "not-supported", "Method Not Allowed")]
    # a search (GET on a type) is not served either
    search = api.get("/fhir/r4/Observation", role="ingest")
    assert search.status_code == 405
    assert outcome(search)[0][1] == "not-supported"


def test_a_body_over_the_limit_is_a_413_outcome(api: Api, services: Services) -> None:
    services.settings = services.settings.model_copy(update={"max_body_bytes": 200})
    headers = api.headers("ingest") | {"Content-Type": FHIR}
    body = json.dumps(as_json(grading())).encode()
    assert len(body) > 200
    for path in ("/fhir/r4", "/fhir/r4/Observation"):
        response = api.client.post(path, content=body, headers=headers)
        assert response.status_code == 413, path
        assert outcome(response) == [
            ("error", "too-costly", "request: body over 200 bytes"),
        ]
    as_nurse = headers | api.headers("nurse")
    by_post = api.client.post(SUMMARY, content=body, headers=as_nurse)
    assert by_post.status_code == 413
    assert outcome(by_post)[0][1] == "too-costly"
    assert rows(services, "SELECT count(*) AS n FROM event") == [{"n": 0}]


def test_a_media_type_not_read_is_a_415_outcome(api: Api) -> None:
    headers = api.headers("ingest") | {"Content-Type": "application/fhir+xml"}
    response = api.client.post("/fhir/r4", content=b"<Bundle/>", headers=headers)
    assert response.status_code == 415
    [(_, code, why)] = outcome(response)
    assert code == "not-supported"
    assert why == (
        "request: Content-Type must be application/fhir+json (or application/json), "
        "not 'application/fhir+xml'"
    )


def test_an_invalid_parameter_is_a_422_outcome_naming_it(api: Api) -> None:
    response = api.get("/fhir/r4/Patient/a,b/$monitor-summary", role="nurse")
    assert response.status_code == 422
    assert outcome(response) == [
        ("error", "invalid", "invalid request"),
        (
            "error",
            "invalid",
            "patient_id: 'a,b': String should match pattern '^[A-Za-z0-9._-]{1,64}$'",
        ),
    ]


def test_a_control_character_refused_by_the_guard_is_a_422_outcome(api: Api) -> None:
    response = api.client.get(f"{SUMMARY}?_format=json%00", headers=api.headers("nurse"))
    assert response.status_code == 422
    assert outcome(response) == [
        ("error", "invalid", "invalid request"),
        (
            "error",
            "invalid",
            "_format: contains the control character U+0000, which is not allowed",
        ),
    ]


def test_an_unhandled_error_is_a_500_outcome_naming_the_request(
    services: Services, tokens: dict[Role, str]
) -> None:
    app: FastAPI = create_app(services)

    @app.get("/fhir/r4/boom")
    def boom() -> None:
        raise KeyError("PX-SECRET")

    with TestClient(app) as client:
        response = client.get(
            "/fhir/r4/boom", headers={"Authorization": f"Bearer {tokens['nurse']}"}
        )
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert outcome(response) == [
        ("error", "exception", f"internal error (request_id {request_id})")
    ]
    assert "PX-SECRET" not in response.text


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"Accept": "application/fhir+xml"}, ""),
        ({"Accept": "application/xml"}, ""),
        ({"Accept": "application/fhir+xml, application/fhir+json;q=0"}, ""),
        ({}, "?_format=xml"),
        ({}, "?_format=application/fhir%2Bxml"),
        ({"Accept": "application/fhir+json"}, "?_format=xml"),  # _format wins
    ],
    ids=["fhir-xml", "xml", "json-refused", "format-xml", "format-fhir-xml", "format-wins"],
)
def test_a_format_other_than_json_is_a_406_outcome(
    api: Api, headers: dict[str, str], query: str
) -> None:
    for path in ("/fhir/r4/metadata", SUMMARY):
        response = api.client.get(f"{path}{query}", headers=api.headers("nurse") | headers)
        assert response.status_code == 406, (path, response.text)
        [(_, code, why)] = outcome(response)
        assert code == "not-supported"
        assert "this server answers application/fhir+json only" in why


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, ""),
        ({"Accept": "application/fhir+json"}, ""),
        ({"Accept": "application/json"}, ""),
        ({"Accept": "*/*"}, ""),
        ({"Accept": "application/fhir+xml;q=1, */*;q=0.1"}, ""),
        ({"Accept": "application/fhir+xml"}, "?_format=json"),
        ({}, "?_format=application/fhir%2Bjson"),
        ({}, "?_format=application/fhir+json"),  # an unescaped + (a space once decoded)
    ],
)
def test_json_is_served_however_it_is_asked_for(
    api: Api, headers: dict[str, str], query: str
) -> None:
    response = api.client.get(f"/fhir/r4/metadata{query}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["resourceType"] == "CapabilityStatement"


def test_the_v1_api_keeps_its_error_shape(api: Api) -> None:
    assert api.get("/v1/nothing", role="nurse").json() == {"detail": "Not Found"}
    no_token = api.get("/v1/alerts", role=None)
    assert (no_token.status_code, no_token.json()) == (
        401,
        {"detail": "a bearer token is required"},
    )
    assert no_token.headers["content-type"] == "application/json"
    invalid = api.get("/v1/patients/a,b", role="nurse")
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["field"] == "patient_id"
    wrong_method = api.client.delete("/v1/events", headers=api.headers("ingest"))
    assert (wrong_method.status_code, wrong_method.json()) == (
        405,
        {"detail": "Method Not Allowed"},
    )
    # XML asked of the v1 API is not refused (it answers JSON, as before)
    assert api.get("/v1/alerts", role="nurse", **{}).status_code == 200
    xml = api.client.get("/v1/alerts", headers=api.headers("nurse") | {"Accept": "application/xml"})
    assert xml.status_code == 200
