"""The CDS Hooks sandbox calling from the browser: its requests as it sends them
(tests/common/cds_sandbox.py says where each comes from), preflight first, from an allowed
origin; CORS on the CDS Hooks routes only, for the allowed origins only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from tests.common.cds import CHECK, SELECT, CdsService
from tests.common.cds_sandbox import (
    SANDBOX_ISSUER,
    SANDBOX_ORDER_ID,
    SANDBOX_ORIGIN,
    call_headers,
    preflight_headers,
    sandbox_feedback,
    sandbox_jwt,
    sandbox_order,
    sandbox_request,
)
from tests.common.service import rows

pytestmark = pytest.mark.usefixtures("sandbox_jwks_served")
BASE = "http://testserver/cds-services"
ELSEWHERE = "https://evil.example"


def preflight(client: TestClient, path: str, method: str, *headers: str) -> Any:
    response = client.options(path, headers=preflight_headers(method, *headers))
    return response


def post(client: TestClient, service: str, body: Any, token: str) -> Any:
    return client.post(
        f"/cds-services/{service}", content=json.dumps(body), headers=call_headers(token)
    )


def assert_allowed_preflight(response: Any, method: str) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == SANDBOX_ORIGIN
    assert method in response.headers["access-control-allow-methods"].split(", ")
    allowed = response.headers["access-control-allow-headers"].lower().split(", ")
    assert {"authorization", "content-type"} <= set(allowed)
    assert "Origin" in response.headers["vary"]


def test_discovery_preflight_then_get_as_the_sandbox(
    sandboxed: CdsService, sandbox_key: ec.EllipticCurvePrivateKey
) -> None:
    assert_allowed_preflight(
        preflight(sandboxed.client, "/cds-services", "GET", "authorization"), "GET"
    )
    token = sandbox_jwt(sandbox_key, BASE)
    response = sandboxed.client.get("/cds-services", headers=call_headers(token, json_body=False))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SANDBOX_ORIGIN
    assert {s["id"] for s in response.json()["services"]} == {CHECK, SELECT}


@pytest.mark.parametrize(
    ("hook", "service", "smart_launch"),
    [("order-sign", CHECK, False), ("order-sign", CHECK, True), ("order-select", SELECT, False),
     ("order-select", CHECK, True)],
)  # fmt: skip
def test_an_order_call_as_the_sandbox_gets_its_cards_with_cors(
    sandboxed: CdsService,
    sandbox_key: ec.EllipticCurvePrivateKey,
    hook: str,
    service: str,
    smart_launch: bool,
) -> None:
    path = f"/cds-services/{service}"
    assert_allowed_preflight(
        preflight(sandboxed.client, path, "POST", "authorization", "content-type"), "POST"
    )
    # P-HELD: a recorded hold; the sandbox's order only corrected where R4 requires a list
    order = sandbox_order("P-HELD", category_as_list=True)
    body = sandbox_request(hook, "P-HELD", order, smart_launch=smart_launch)
    response = post(sandboxed.client, service, body, sandbox_jwt(sandbox_key, f"{BASE}/{service}"))
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == SANDBOX_ORIGIN
    assert "X-Request-ID" in response.headers["access-control-expose-headers"]
    [card] = response.json()["cards"]
    assert card["indicator"] == "critical"
    [action] = card["suggestions"][0]["actions"]
    assert action == {"type": "delete", "description": action["description"],
                      "resourceId": f"MedicationRequest/{SANDBOX_ORDER_ID}"}  # fmt: skip
    assert "sandbox-access-token" not in response.text
    [stored] = rows(sandboxed.services, "SELECT principal FROM cds_card WHERE uuid = :u",
                    u=card["uuid"])  # fmt: skip
    assert stored["principal"] == f"cds:{SANDBOX_ISSUER}"


@pytest.mark.parametrize("accept", [True, False])
def test_the_sandbox_feedback_is_recorded(
    sandboxed: CdsService, sandbox_key: ec.EllipticCurvePrivateKey, accept: bool
) -> None:
    order = sandbox_order("P-HELD", category_as_list=True)
    body = sandbox_request("order-sign", "P-HELD", order)
    cards = post(sandboxed.client, CHECK, body, sandbox_jwt(sandbox_key, f"{BASE}/{CHECK}"))
    [card] = cards.json()["cards"]
    path = f"/cds-services/{CHECK}/feedback"
    assert_allowed_preflight(
        preflight(sandboxed.client, path, "POST", "authorization", "content-type"), "POST"
    )
    token = sandbox_jwt(sandbox_key, f"http://testserver{path}")
    response = sandboxed.client.post(
        path,
        content=json.dumps(sandbox_feedback(card, accept=accept)),
        headers={k: v for k, v in call_headers(token).items() if k != "Accept"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == SANDBOX_ORIGIN
    assert response.json() == {"recorded": 1, "duplicates": 0}
    [stored] = rows(
        sandboxed.services,
        "SELECT f.outcome, f.override_code FROM cds_feedback f JOIN cds_card c "
        "ON c.id = f.card_id WHERE c.uuid = :u",
        u=card["uuid"],
    )
    reason = None if accept else card["overrideReasons"][0]["code"]
    assert stored == {"outcome": "accepted" if accept else "overridden", "override_code": reason}


def test_the_sandbox_dose_in_pills_is_an_unreadable_dosage_card(
    sandboxed: CdsService, sandbox_key: ec.EllipticCurvePrivateKey
) -> None:
    order = sandbox_order("P-ACT", category_as_list=True)
    body = sandbox_request("order-sign", "P-ACT", order)
    response = post(sandboxed.client, CHECK, body, sandbox_jwt(sandbox_key, f"{BASE}/{CHECK}"))
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card["indicator"] == "warning"
    assert "dosage could not be read" in card["summary"]
    assert "unit '{pill}' is not mg/m2" in card["detail"]


def test_the_sandbox_order_as_sent_is_a_readable_422_in_the_browser(
    sandboxed: CdsService, sandbox_key: ec.EllipticCurvePrivateKey
) -> None:
    """The sandbox sends `category` as one object; R4 has a list: refused, naming the field,
    with the CORS headers that let the sandbox's page read why."""
    body = sandbox_request("order-sign", "P-HELD", sandbox_order("P-HELD"))
    response = post(sandboxed.client, CHECK, body, sandbox_jwt(sandbox_key, f"{BASE}/{CHECK}"))
    assert response.status_code == 422
    assert response.headers["access-control-allow-origin"] == SANDBOX_ORIGIN
    assert "body.context.draftOrders.entry.0.resource.category" in response.text


@pytest.mark.parametrize(
    "order",
    [
        pytest.param(sandbox_order("P-HELD", code="310431", name="Etodolac"), id="its-own-drug"),
        pytest.param(
            {k: v for k, v in sandbox_order("P-HELD").items() if k != "medicationCodeableConcept"},
            id="no-drug-picked-yet",
        ),
    ],
)
def test_the_sandbox_order_of_another_drug_as_sent_gets_no_cards(
    sandboxed: CdsService, sandbox_key: ec.EllipticCurvePrivateKey, order: dict[str, Any]
) -> None:
    """Its `category` object is not R4, but an order for another drug (or none yet) is not this
    service's business: answered with no cards, not refused."""
    body = sandbox_request("order-sign", "P-HELD", order)
    response = post(sandboxed.client, CHECK, body, sandbox_jwt(sandbox_key, f"{BASE}/{CHECK}"))
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}
    assert response.headers["access-control-allow-origin"] == SANDBOX_ORIGIN


def test_a_refused_sandbox_jwt_is_a_401_the_browser_can_read(
    sandboxed: CdsService, sandbox_key: ec.EllipticCurvePrivateKey
) -> None:
    body = sandbox_request("order-sign", "P-HELD", sandbox_order("P-HELD", category_as_list=True))
    foreign = sandbox_jwt(sandbox_key, f"{BASE}/{CHECK}", jku="https://evil.example/jwks.json")
    response = post(sandboxed.client, CHECK, body, foreign)
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == SANDBOX_ORIGIN
    assert "jku" in response.json()["detail"]
    # the guard's own refusal (an unknown bearer token) carries the headers too
    response = post(sandboxed.client, CHECK, body, "bm_unknown")
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == SANDBOX_ORIGIN


def test_another_origin_gets_no_cors_headers(
    sandboxed: CdsService, sandbox_key: ec.EllipticCurvePrivateKey
) -> None:
    path = f"/cds-services/{CHECK}"
    headers = {**preflight_headers("POST", "authorization", "content-type"), "Origin": ELSEWHERE}
    refused = sandboxed.client.options(path, headers=headers)
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    body = sandbox_request("order-sign", "P-HELD", sandbox_order("P-HELD", category_as_list=True))
    token = sandbox_jwt(sandbox_key, f"{BASE}/{CHECK}")
    called = sandboxed.client.post(
        path, content=json.dumps(body), headers={**call_headers(token), "Origin": ELSEWHERE}
    )
    assert called.status_code == 200  # CORS is the browser's rule: a server client is answered
    assert "access-control-allow-origin" not in called.headers
    # a preflight asking for a method or header the CDS routes do not take
    for method, extra in (("DELETE", ()), ("POST", ("x-custom",))):
        odd = sandboxed.client.options(path, headers=preflight_headers(method, *extra))
        assert odd.status_code == 400


def test_the_rest_of_the_api_sends_no_cors_headers(sandboxed: CdsService) -> None:
    for path in ("/v1/patients/P-ACT", "/healthz", "/fhir/r4"):
        response = sandboxed.client.options(path, headers=preflight_headers("GET", "authorization"))
        assert "access-control-allow-origin" not in response.headers, path
        # the guard lets only the CDS routes' preflights through without a token
        assert response.status_code == (405 if path == "/healthz" else 401), path
        response = sandboxed.client.get(
            path, headers={"Origin": SANDBOX_ORIGIN, **sandboxed.headers("admin")}
        )
        assert "access-control-allow-origin" not in response.headers, path


def test_without_allowed_origins_there_is_no_cors(cds: CdsService) -> None:
    """The default: no CORS headers, and a preflight is not an audited 401 (it carries no
    token by design) but the app's 405."""
    before = rows(cds.services, "SELECT count(*) AS n FROM audit_log")[0]["n"]
    response = cds.client.options(
        f"/cds-services/{CHECK}", headers=preflight_headers("POST", "authorization")
    )
    assert response.status_code == 405
    assert "access-control-allow-origin" not in response.headers
    assert rows(cds.services, "SELECT count(*) AS n FROM audit_log")[0]["n"] == before
    # an OPTIONS that is no preflight is still a call without a token
    assert cds.client.options(f"/cds-services/{CHECK}").status_code == 401
