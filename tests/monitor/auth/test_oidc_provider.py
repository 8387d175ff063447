"""Issue 15, item 5: the API accepts the access tokens of a real OpenID Connect provider
(oidc-provider, started here), over HTTP to the service served by uvicorn: the claims mapping
gives the role and units; a token for another audience, an expired one, or one whose claims
give no role here is refused; API tokens keep working beside them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from monitor.app import create_app
from monitor.auth.roles import Role
from monitor.services import Services
from monitor.settings import Settings
from tests.common.service import rows
from tests.monitor.auth.oidc.provider import OTHER_AUDIENCE, RunningProvider, running_provider
from tests.monitor.web.site import Uvicorn, free_port

SECRET = "machine-client-secret-of-the-tests-0123456789"
MACHINES = {
    # client id -> the claims its access tokens carry (a stand-in for a user's groups)
    "ward-robot": {"groups": ["bipn-nurses", "everyone"], "units": ["ward-a", "ward-b"]},
    "es256-robot": {"groups": ["bipn-physicians"], "units": "ward-a"},
    "short-lived": {"groups": ["bipn-nurses"], "units": ["ward-a"]},
    # long enough to open a stream on a loaded machine, short enough to watch it end
    "stream-lived": {"groups": ["bipn-nurses"], "units": ["ward-a"]},
    "visitor": {"groups": ["cafeteria"], "units": ["ward-a"]},
    "unitless": {"groups": ["bipn-nurses"]},
    "overseer": {"groups": ["bipn-admins"]},
    "two-hats": {"groups": ["bipn-nurses", "bipn-physicians"], "units": ["ward-a"]},
}
ROLE_MAP = {
    "bipn-nurses": "nurse",
    "bipn-physicians": "physician",
    "bipn-admins": "admin",
}


def machine(client_id: str) -> dict[str, object]:
    return {
        "client_id": client_id,
        "client_secret": SECRET,
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
    }


@pytest.fixture(scope="module")
def provider() -> Iterator[RunningProvider]:
    config = {
        "clients": [machine(c) for c in MACHINES],
        "accounts": {},
        "machines": MACHINES,
        "ttl": {"short-lived": 1, "stream-lived": 4},
    }
    with running_provider(free_port(), config) as running:
        yield running


@pytest.fixture
def sqlite_settings(sqlite_settings: Settings, provider: RunningProvider) -> Settings:
    """The service of tests/conftest.py, accepting the provider's tokens."""
    return Settings.model_validate(
        {
            **sqlite_settings.model_dump(exclude_unset=True),
            "oidc_issuer": provider.issuer,
            "oidc_audience": provider.config["audience"],
            "oidc_role_claim": "groups",
            "oidc_role_map": ROLE_MAP,
            "oidc_leeway_s": 0,
        }
    )


@pytest.fixture
def http(services: Services) -> Iterator[httpx.Client]:
    server = Uvicorn(create_app(services), free_port())
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield client
    finally:
        server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_of(provider: RunningProvider, client_id: str, resource: str | None = None) -> str:
    issued = provider.client_credentials(client_id, SECRET, *([resource] if resource else []))
    return str(issued["access_token"])


def test_a_provider_token_is_a_principal_with_the_mapped_role_and_units(
    provider: RunningProvider, http: httpx.Client, services: Services
) -> None:
    me = http.get("/v1/me", headers=bearer(token_of(provider, "ward-robot")))
    assert me.status_code == 200, me.text
    assert me.json() == {
        "name": "oidc:ward-robot",
        "role": "nurse",
        "units": ["ward-a", "ward-b"],
        "audiences": ["nurse"],
    }
    # the role works as any nurse token's: the feed yes, the admin API no (403, audited)
    assert http.get("/v1/alerts", headers=bearer(token_of(provider, "ward-robot"))).is_success
    admin = http.get("/v1/admin/tokens", headers=bearer(token_of(provider, "ward-robot")))
    assert admin.status_code == 403, admin.text
    audit = rows(services, "SELECT actor, role, action, status_code FROM audit_log ORDER BY id")
    assert {"actor": "oidc:ward-robot", "role": "nurse", "action": "GET /v1/me",
            "status_code": 200} in audit  # fmt: skip
    assert audit[-1]["actor"] == "oidc:ward-robot"
    assert audit[-1]["status_code"] == 403


def test_es256_tokens_verify_and_a_unit_may_be_a_single_string(
    provider: RunningProvider, http: httpx.Client
) -> None:
    token = token_of(provider, "es256-robot")
    assert '"ES256"' in httpx.get(f"{provider.issuer}/jwks").text
    me = http.get("/v1/me", headers=bearer(token))
    assert me.status_code == 200, me.text
    assert (me.json()["role"], me.json()["units"]) == ("physician", ["ward-a"])


def test_an_admin_is_not_bound_to_units(provider: RunningProvider, http: httpx.Client) -> None:
    me = http.get("/v1/me", headers=bearer(token_of(provider, "overseer")))
    assert me.status_code == 200, me.text
    assert (me.json()["role"], me.json()["units"]) == ("admin", None)


def test_a_token_for_another_audience_is_refused(
    provider: RunningProvider, http: httpx.Client, services: Services
) -> None:
    token = token_of(provider, "ward-robot", OTHER_AUDIENCE)
    refused = http.get("/v1/me", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.json() == {"detail": "the token's 'aud' is not accepted here"}
    assert refused.headers["www-authenticate"] == "Bearer"
    last = rows(services, "SELECT actor, status_code FROM audit_log ORDER BY id DESC LIMIT 1")
    assert last == [{"actor": "anonymous", "status_code": 401}]


def test_an_expired_token_is_refused(provider: RunningProvider, http: httpx.Client) -> None:
    token = token_of(provider, "short-lived")  # the provider gives it one second
    time.sleep(2.1)
    refused = http.get("/v1/me", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.json()["detail"] == "the sign-in has expired: sign in again"


def test_a_tampered_token_is_refused(provider: RunningProvider, http: httpx.Client) -> None:
    header, payload, signature = token_of(provider, "ward-robot").split(".")
    flipped = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
    refused = http.get("/v1/me", headers=bearer(f"{header}.{payload}.{flipped}"))
    assert refused.status_code == 401
    assert refused.json()["detail"].startswith("the token does not verify")


@pytest.mark.parametrize(
    ("client_id", "why"),
    [
        ("visitor", "'groups' claim maps to no role of this service"),
        ("unitless", "a nurse needs the token's 'units' claim"),
        ("two-hats", "maps to several roles (nurse, physician)"),
    ],
)
def test_claims_that_give_no_single_role_or_no_units_are_a_403_naming_the_subject(
    provider: RunningProvider, http: httpx.Client, services: Services, client_id: str, why: str
) -> None:
    refused = http.get("/v1/alerts", headers=bearer(token_of(provider, client_id)))
    assert refused.status_code == 403, refused.text
    assert why in refused.json()["detail"]
    last = rows(
        services, "SELECT actor, role, action, status_code FROM audit_log ORDER BY id DESC LIMIT 1"
    )
    assert last == [
        {"actor": f"oidc:{client_id}", "role": "none", "action": "GET /v1/alerts",
         "status_code": 403}
    ]  # fmt: skip


def test_api_tokens_keep_working_beside_the_provider(
    http: httpx.Client, tokens: dict[Role, str]
) -> None:
    me = http.get("/v1/me", headers=bearer(tokens["ingest"]))
    assert me.status_code == 200, me.text
    assert me.json()["name"] == "test-ingest"
    assert http.get("/v1/me", headers=bearer("bm_unknown")).status_code == 401


def test_an_open_alert_stream_ends_when_the_token_expires(
    provider: RunningProvider, http: httpx.Client
) -> None:
    token = token_of(provider, "stream-lived")  # four seconds
    started = time.monotonic()
    seen: list[str] = []
    with http.stream("GET", "/v1/alerts/stream", headers=bearer(token), timeout=15) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            seen.append(line)
            if "stream closed" in line:
                break
    assert ": the sign-in has expired: stream closed" in seen
    assert time.monotonic() - started < 15  # not the stream's 300 s end
