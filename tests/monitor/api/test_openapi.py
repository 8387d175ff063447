"""The OpenAPI document (issue 12, item 3): a valid OpenAPI 3.1 document in which every
successful answer declares what it is. schemathesis checks the answers against it
(tests/monitor/api/test_schemathesis.py)."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from tests.common.service import Api


@pytest.fixture
def document(api: Api) -> dict[str, Any]:
    response = api.client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on the first violation


def test_the_validator_catches_a_3_2_key(document: dict[str, Any]) -> None:
    """What the document once held (`itemSchema` on the SSE route) is refused: the check
    above can fail."""
    stream = document["paths"]["/v1/alerts/stream"]["get"]["responses"]["200"]["content"]
    broken = {**document}
    stream["text/event-stream"] = {"itemSchema": {"type": "object"}, "schema": 1}
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def _successes(document: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, status, response)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if status.startswith("2")
    ]


def test_every_success_declares_its_content_and_schema(document: dict[str, Any]) -> None:
    untyped = [
        f"{method} {path} {status} {media}"
        for method, path, status, response in _successes(document)
        for media, content in (response.get("content") or {"(none)": {}}).items()
        if not content.get("schema")
    ]
    assert untyped == []


def test_json_successes_are_named_models(document: dict[str, Any]) -> None:
    """A JSON 2xx refers to a component (a model clients can generate), except the two whose
    shape is the standard's (FHIR resources) or the report's format switch."""
    open_shapes = {"/fhir/r4", "/fhir/r4/Patient/{patient_id}/$monitor-summary"}
    anonymous = [
        f"{method} {path} {status}"
        for method, path, status, response in _successes(document)
        if path not in open_shapes and path != "/v1/reports/adherence"
        for media, content in response.get("content", {}).items()
        if media == "application/json" and "$ref" not in content["schema"]
    ]
    assert anonymous == []


def test_the_components_hold_the_bodies_routes_read_themselves(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("Enrollment", "Assessment", "CdsHookRequest", "CdsFeedbackRequest"):
        assert name in schemas, name
