"""The provider's tokens verified and mapped (monitor/auth/oidc.py), with keys made here and the
provider's discovery document and JWK Set served by an httpx mock: algorithms, claims, the key
cache and its refresh on an unknown key id, the claims mapping. The same against a real provider
over HTTP: test_oidc_provider.py."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from monitor.auth import oidc
from monitor.auth.oidc import OidcRefusedError, OidcVerifier, principal_from_claims
from monitor.settings import Settings

ISSUER = "https://login.hospital.example/realms/staff"
AUDIENCE = "https://bipn-monitor.hospital.example"


class Provider:
    """The provider's two documents, with its keys; counts the JWK Set fetches."""

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})]
        self.jwks_fetches = 0
        self.down = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503)
        if request.url == oidc.discovery_url(ISSUER):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/certs"})
        if request.url == f"{ISSUER}/certs":
            self.jwks_fetches += 1
            return httpx.Response(200, json=KeySet(self.keys).as_dict())  # public parts only
        return httpx.Response(404)

    def sign(self, key: Any = None, alg: str = "RS256", **claims: Any) -> str:
        key = key or self.keys[0]
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-1", "iat": now, "exp": now + 300}
        body.update({"roles": ["nurse"], "units": ["ward-a"]})
        body.update(claims)
        header = {"alg": alg, "kid": key.kid}
        return jwt.encode(header, {k: v for k, v in body.items() if v is not None}, key)


def settings(**overrides: Any) -> Settings:
    return Settings(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_leeway_s=5, **overrides)


@pytest.fixture
def provider() -> Provider:
    return Provider()


def verifier(provider: Provider, **overrides: Any) -> OidcVerifier:
    http = httpx.Client(transport=httpx.MockTransport(provider.handler))
    return OidcVerifier(settings(**overrides), http)


def refusal(verifier: OidcVerifier, token: str) -> OidcRefusedError:
    with pytest.raises(OidcRefusedError) as caught:
        verifier.principal(token)
    return caught.value


def test_a_valid_token_is_a_principal_named_by_its_subject(provider: Provider) -> None:
    principal = verifier(provider).principal(provider.sign())
    assert (principal.name, principal.role, principal.units) == (
        "oidc:u-1",
        "nurse",
        frozenset({"ward-a"}),
    )
    assert principal.expires_at is not None
    assert principal.token_id is None


def test_es256_is_accepted_too(provider: Provider) -> None:
    provider.keys.append(ECKey.generate_key("P-256", parameters={"kid": "ec-1"}))
    assert verifier(provider).principal(provider.sign(provider.keys[1], "ES256")).role == "nurse"


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        ({"aud": "https://another-service.example"}, "the token's 'aud' is not accepted here"),
        ({"iss": "https://evil.example"}, "the token's 'iss' is not accepted here"),
        ({"exp": -60}, "the sign-in has expired: sign in again"),
        ({"nbf": +60}, "the token's 'nbf' is not accepted here"),
        ({"iat": +60}, "the token's 'iat' is not accepted here"),
        ({"sub": None}, "the token's 'sub' is not accepted here"),
        ({"exp": None}, "the token's 'exp' is not accepted here"),
    ],
    ids=["audience", "issuer", "expired", "not-yet", "issued-later", "no-sub", "no-exp"],
)
def test_claims_are_checked(provider: Provider, claims: dict[str, Any], detail: str) -> None:
    """The times are seconds from now, read when the test runs (not when it is collected)."""
    now = int(time.time())
    timed = {k: now + v if k in ("exp", "nbf", "iat") and v is not None else v
             for k, v in claims.items()}  # fmt: skip
    refused = refusal(verifier(provider), provider.sign(**timed))
    assert (refused.status, refused.detail) == (401, detail)


def test_the_leeway_allows_a_little_clock_skew(provider: Provider) -> None:
    token = provider.sign(exp=int(time.time()) - 2, iat=int(time.time()) + 2)
    assert verifier(provider).principal(token).role == "nurse"  # leeway 5 s


def test_a_forged_signature_and_hmac_are_refused(provider: Provider) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # the same kid, not its key
    assert refusal(verifier(provider), provider.sign(stranger)).status == 401
    secret = OctKey.generate_key(256, parameters={"kid": "rsa-1"})
    hmac = refusal(verifier(provider), provider.sign(secret, "HS256"))
    assert hmac.status == 401
    assert "RS256, ES256" in hmac.detail


def test_an_unknown_key_id_fetches_the_keys_again_once(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    checking = verifier(provider)
    assert checking.principal(provider.sign()).role == "nurse"
    assert provider.jwks_fetches == 1
    checking.principal(provider.sign())
    assert provider.jwks_fetches == 1  # cached
    # the provider rotates its key: the first token of the new key fetches the set again
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})
    provider.keys = [rotated]
    monkeypatch.setattr(oidc, "REFETCH_MIN_INTERVAL_S", 0.0)
    assert checking.principal(provider.sign(rotated)).role == "nurse"
    assert provider.jwks_fetches == 2
    # made-up key ids do not make a fetch each once the interval is back
    monkeypatch.setattr(oidc, "REFETCH_MIN_INTERVAL_S", 3600.0)
    unknown = RSAKey.generate_key(2048, parameters={"kid": "made-up"})
    for _ in range(3):
        assert refusal(checking, provider.sign(unknown)).status == 401
    assert provider.jwks_fetches == 2


def test_unreachable_keys_are_a_503_until_first_fetched_then_the_known_keys_serve(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider.down = True
    checking = verifier(provider)
    assert refusal(checking, provider.sign()).status == 503
    provider.down = False
    # tried moments ago: not again yet (a provider down must not hold every request)
    assert refusal(checking, provider.sign()).status == 503
    assert provider.jwks_fetches == 0
    monkeypatch.setattr(oidc, "REFETCH_MIN_INTERVAL_S", 0.0)
    assert checking.principal(provider.sign()).role == "nurse"
    assert provider.jwks_fetches == 1
    provider.down = True
    monkeypatch.setattr(oidc, "KEYS_MAX_AGE_S", 0.0)  # due for a refresh, which fails
    assert checking.principal(provider.sign()).role == "nurse"


def test_only_the_configured_issuer_is_taken_for_a_provider_token(provider: Provider) -> None:
    checking = verifier(provider)
    assert checking.issued_here(provider.sign())
    assert not checking.issued_here(provider.sign(iss="https://ehr.example"))
    assert not checking.issued_here("bm_an-api-token")
    assert not checking.issued_here("not.a.jwt")


# --- the claims mapping --------------------------------------------------------------------


def claims(**values: Any) -> dict[str, Any]:
    return {"sub": "u-9", "exp": int(time.time()) + 60, **values}


def test_groups_are_mapped_to_roles_through_the_role_map() -> None:
    mapped = settings(
        oidc_role_claim="realm_access.roles",
        oidc_role_map={"onc-nurses": "nurse", "onc-doctors": "physician"},
        oidc_units_claim="wards",
    )
    principal = principal_from_claims(
        claims(realm_access={"roles": ["staff", "onc-doctors"]}, wards="ward-c"), mapped
    )
    assert (principal.role, principal.units) == ("physician", frozenset({"ward-c"}))
    # with a map, a role name in the claim is not a role: only the map's groups count
    with pytest.raises(OidcRefusedError, match="maps to no role") as caught:
        principal_from_claims(claims(realm_access={"roles": ["nurse"]}, wards="w"), mapped)
    assert (caught.value.status, caught.value.subject) == (403, "oidc:u-9")


def test_machine_roles_cannot_be_signed_in_to() -> None:
    with pytest.raises(OidcRefusedError, match="maps to no role"):
        principal_from_claims(claims(roles=["ingest", "cds"]), settings())
    with pytest.raises(ValueError, match=r"role\(s\) \['ingest'\] cannot be signed in to"):
        settings(oidc_role_map={"feeds": "ingest"})


def test_several_roles_are_refused_rather_than_one_guessed() -> None:
    with pytest.raises(OidcRefusedError, match=r"several roles \(nurse, physician\)"):
        principal_from_claims(claims(roles=["nurse", "physician"], units=["a"]), settings())


def test_units_are_required_except_for_admin_or_when_the_claim_is_switched_off() -> None:
    with pytest.raises(OidcRefusedError, match="a nurse needs the token's 'units' claim"):
        principal_from_claims(claims(roles="nurse"), settings())
    with pytest.raises(OidcRefusedError, match="'units' claim"):
        principal_from_claims(claims(roles="nurse", units=[" padded "]), settings())
    assert principal_from_claims(claims(roles="admin"), settings()).units is None
    unbound = principal_from_claims(claims(roles="nurse"), settings(oidc_units_claim=""))
    assert unbound.units is None


def test_a_subject_that_is_an_e_mail_address_is_refused_and_not_recorded() -> None:
    with pytest.raises(OidcRefusedError, match="looks like an e-mail address") as caught:
        principal_from_claims(claims(sub="jane.doe@hospital.example", roles="admin"), settings())
    assert (caught.value.status, caught.value.subject) == (403, None)
