"""The guard and the provider's tokens (issue 15, item 5): a JWT naming the configured issuer is
verified before the app runs, like an API token; refused (401) or given no role here (403),
no byte of the body is read. The provider is the mock of tests/monitor/auth/test_oidc.py."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI

from monitor.app import create_app
from monitor.auth.oidc import OidcVerifier
from monitor.services import Services
from monitor.settings import Settings
from tests.common.service import rows
from tests.monitor.api.test_guard import call_asgi, endless
from tests.monitor.auth.test_oidc import AUDIENCE, ISSUER, Provider


@pytest.fixture
def sqlite_settings(sqlite_settings: Settings) -> Settings:
    return sqlite_settings.model_copy(update={"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE})


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
def app(services: Services, provider: Provider) -> FastAPI:
    app = create_app(services)
    http = httpx.Client(transport=httpx.MockTransport(provider.handler))
    app.state.oidc_verifier = OidcVerifier(services.settings, http)
    return app


@pytest.mark.parametrize(
    ("claims", "status"),
    [({"aud": "https://elsewhere.example"}, 401), ({"roles": ["visitor"]}, 403)],
    ids=["refused", "no-role"],
)
def test_a_provider_token_refused_reads_no_byte_of_the_body(
    app: FastAPI, services: Services, provider: Provider, claims: dict[str, object], status: int
) -> None:
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(300 * 1024 * 1024),
        "Authorization": f"Bearer {provider.sign(**claims)}",
    }
    answer, response_headers, body, received = call_asgi(
        app, "POST", "/v1/events", headers=headers, body_chunks=endless()
    )
    assert answer == status, body
    assert (received.calls, received.bytes) == (0, 0)
    assert ("www-authenticate" in response_headers) == (status == 401)
    [audit] = rows(services, "SELECT actor, role, action, status_code FROM audit_log")
    actor = "anonymous" if status == 401 else "oidc:u-1"
    assert audit == {"actor": actor, "role": "none", "action": "POST /v1/events",
                     "status_code": status}  # fmt: skip


def test_a_provider_token_with_a_role_reaches_the_route(app: FastAPI, provider: Provider) -> None:
    headers = {"Authorization": f"Bearer {provider.sign()}"}
    answer, _, body, _ = call_asgi(app, "GET", "/v1/me", headers=headers)
    assert answer == 200, body
    assert b'"name":"oidc:u-1"' in body


def test_the_provider_unreachable_is_a_503_not_a_500(app: FastAPI, provider: Provider) -> None:
    token = provider.sign()
    provider.down = True
    answer, _, body, _ = call_asgi(
        app, "GET", "/v1/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer == 503, body
    assert b"the sign-in provider's keys cannot be fetched" in body


def test_another_issuers_jwt_is_just_an_unknown_token(app: FastAPI, provider: Provider) -> None:
    token = provider.sign(iss="https://somewhere-else.example")
    answer, _, body, _ = call_asgi(
        app, "GET", "/v1/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer == 401
    assert b"the token is unknown or revoked" in body
    assert provider.jwks_fetches == 0  # not even looked at by the provider's verifier


@pytest.mark.parametrize(
    ("claims", "status", "code"),
    [
        ({"aud": "https://elsewhere.example"}, 401, "login"),
        ({"roles": ["visitor"]}, 403, "forbidden"),
    ],
    ids=["refused", "no-role"],
)
def test_under_fhir_the_guards_refusal_of_a_provider_token_is_an_operation_outcome(
    app: FastAPI, provider: Provider, claims: dict[str, object], status: int, code: str
) -> None:
    headers = {"Authorization": f"Bearer {provider.sign(**claims)}"}
    answer, response_headers, body, _ = call_asgi(app, "POST", "/fhir/r4", headers=headers)
    assert answer == status, body
    assert response_headers["content-type"] == "application/fhir+json"
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == code
