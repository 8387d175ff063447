"""Who may call the CDS services: CDS Hooks JWTs (ES384 / RS384, audience = the endpoint,
unexpired and short-lived, `typ` JWT with a `kid`, a `jku` only when configured, signed by a
configured issuer's key, never none or HMAC, never replayed) or a bearer token of role `cds`.
Discovery is public."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pathlib
import time
import uuid
from typing import Any

import pytest

from monitor.auth.roles import Role
from tests.common.cds import (
    CHECK,
    ES_ISSUER,
    RS_ISSUER,
    URL_ISSUER,
    CdsService,
    Keys,
    cds_service,
    draft_order,
    hook_request,
    mint,
    public_pem,
)
from tests.common.service import rows

ENDPOINT = f"http://testserver/cds-services/{CHECK}"


def call(cds: CdsService, token: str | None, service: str = CHECK) -> Any:
    body = hook_request("P-HELD", draft_order("mr-1", "P-HELD"))
    if token is None:
        return cds.client.post(f"/cds-services/{service}", json=body)
    return cds.call(body, service=service, token=token)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any]) -> str:
    """An `alg: none` token."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def hmac_signed(secret: bytes, claims: dict[str, Any]) -> str:
    """An HS256 token keyed with `secret`, made by hand: PyJWT refuses to use a public key as
    an HMAC secret, which is exactly the forgery a careless verifier would accept."""
    signing_input = (
        _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + _b64(json.dumps(claims).encode())
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def claims(audience: str = ENDPOINT) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ES_ISSUER, "aud": audience, "exp": now + 300, "iat": now,
            "jti": str(uuid.uuid4())}  # fmt: skip


def valid(keys: Keys, which: str, audience: str | list[str] = ENDPOINT, **options: Any) -> str:
    if which == "ES384 (PEM)":
        return mint(keys.es, "ES384", ES_ISSUER, audience, kid="es-1", **options)
    if which == "RS384 (inline JWKS)":
        return mint(keys.rs, "RS384", RS_ISSUER, audience, kid="rs-1", **options)
    return mint(keys.url, "ES384", URL_ISSUER, audience, kid="url-1", **options)


@pytest.mark.parametrize("which", ["ES384 (PEM)", "RS384 (inline JWKS)", "ES384 (JWKS URL)"])
def test_a_valid_jwt_is_accepted_and_audited_as_its_issuer(
    cds: CdsService, keys: Keys, which: str
) -> None:
    response = call(cds, valid(keys, which))
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card["indicator"] == "critical"
    issuer = {"ES384 (PEM)": ES_ISSUER, "RS384 (inline JWKS)": RS_ISSUER}.get(which, URL_ISSUER)
    [audit] = rows(cds.services, "SELECT actor, role FROM audit_log ORDER BY id DESC LIMIT 1")
    assert audit == {"actor": f"cds:{issuer}", "role": "cds"}
    [stored] = rows(cds.services, "SELECT principal FROM cds_card WHERE uuid = :u", u=card["uuid"])
    assert stored["principal"] == f"cds:{issuer}"


def test_the_audience_may_be_a_list(cds: CdsService, keys: Keys) -> None:
    token = valid(keys, "ES384 (PEM)", ["https://elsewhere.example/cds-services/x", ENDPOINT])
    assert call(cds, token).status_code == 200


def test_jku_must_be_the_configured_jwks_url(cds: CdsService, keys: Keys, jwks_url: str) -> None:
    assert call(cds, valid(keys, "url", headers={"jku": jwks_url})).status_code == 200
    refused = call(cds, valid(keys, "url", headers={"jku": "https://evil.example/jwks"}))
    assert refused.status_code == 401
    assert "jku" in refused.json()["detail"]


def bad_tokens(keys: Keys) -> dict[str, tuple[str, str]]:
    """A token each way the spec says to refuse, and what the 401 says."""
    es = keys.es
    return {
        "wrong audience": (
            mint(es, "ES384", ES_ISSUER, "http://testserver/cds-services/other", kid="es-1"),
            "audience",
        ),
        "expired": (
            mint(es, "ES384", ES_ISSUER, ENDPOINT, kid="es-1", expires_in=-120, issued_offset=-420),
            "expired",
        ),
        "issued in the future": (
            mint(es, "ES384", ES_ISSUER, ENDPOINT, kid="es-1", issued_offset=600, expires_in=900),
            "future",
        ),
        "bad signature": (
            mint(keys.stranger, "ES384", ES_ISSUER, ENDPOINT, kid="es-1"),
            "signature",
        ),
        "unknown issuer": (
            mint(keys.stranger, "ES384", "https://stranger.example", ENDPOINT, kid="s-1"),
            "issuer",
        ),
        "alg none": (unsigned(claims()), "algorithm"),
        # the classic confusion: HMAC keyed with the client's public key text
        "HS256 with the public key": (
            hmac_signed(public_pem(es).encode(), claims()),
            "algorithm",
        ),
        "HS384": (mint(b"s" * 48, "HS384", ES_ISSUER, ENDPOINT), "algorithm"),
        "no jti": (mint(es, "ES384", ES_ISSUER, ENDPOINT, kid="es-1", omit=("jti",)), "jti"),
        "no exp": (mint(es, "ES384", ES_ISSUER, ENDPOINT, kid="es-1", omit=("exp",)), "exp"),
        "RS384 with an unknown kid": (
            mint(keys.rs, "RS384", RS_ISSUER, ENDPOINT, kid="rs-9"),
            "kid",
        ),
        "not a JWT at all": ("a.b.c", "readable"),
        # the spec's header: kid and typ are required, whatever the client's key source
        "no kid (PEM key)": (mint(es, "ES384", ES_ISSUER, ENDPOINT), "no kid"),
        "no kid (inline JWK Set)": (mint(keys.rs, "RS384", RS_ISSUER, ENDPOINT), "no kid"),
        "no kid (JWK Set URL)": (mint(keys.url, "ES384", URL_ISSUER, ENDPOINT), "no kid"),
        "no typ": (
            mint(es, "ES384", ES_ISSUER, ENDPOINT, kid="es-1", headers={"typ": None}),
            "typ",
        ),
        "typ not JWT": (
            mint(es, "ES384", ES_ISSUER, ENDPOINT, kid="es-1", headers={"typ": "at+jwt"}),
            "typ",
        ),
        # a jku names where keys are: only the configured JWK Set URL is on the allowlist
        "jku with a PEM key": (
            mint(
                es,
                "ES384",
                ES_ISSUER,
                ENDPOINT,
                kid="es-1",
                headers={"jku": "https://ehr.example/jwks.json"},
            ),
            "jku",
        ),
        "jku with an inline JWK Set": (
            mint(
                keys.rs,
                "RS384",
                RS_ISSUER,
                ENDPOINT,
                kid="rs-1",
                headers={"jku": "https://ehr.example/jwks.json"},
            ),
            "jku",
        ),
        "no iat": (mint(es, "ES384", ES_ISSUER, ENDPOINT, kid="es-1", omit=("iat",)), "iat"),
        # short-lived: at most 300 s (+30 s of skew) by exp - iat and by exp - now
        "valid for a year": (
            mint(es, "ES384", ES_ISSUER, ENDPOINT, kid="es-1", expires_in=365 * 86400),
            "lives too long",
        ),
        "valid for 400 s": (
            mint(es, "ES384", ES_ISSUER, ENDPOINT, kid="es-1", expires_in=400),
            "lives too long",
        ),
        "issued an hour ago, expiring in a minute": (
            mint(es, "ES384", ES_ISSUER, ENDPOINT, kid="es-1", issued_offset=-3600, expires_in=60),
            "lives too long",
        ),
        "iat ahead within the skew, exp far ahead": (
            mint(es, "ES384", ES_ISSUER, ENDPOINT, kid="es-1", issued_offset=25, expires_in=350),
            "lives too long",
        ),
    }


BAD_NAMES = [
    "wrong audience",
    "expired",
    "issued in the future",
    "bad signature",
    "unknown issuer",
    "alg none",
    "HS256 with the public key",
    "HS384",
    "no jti",
    "no exp",
    "RS384 with an unknown kid",
    "not a JWT at all",
    "no kid (PEM key)",
    "no kid (inline JWK Set)",
    "no kid (JWK Set URL)",
    "no typ",
    "typ not JWT",
    "jku with a PEM key",
    "jku with an inline JWK Set",
    "no iat",
    "valid for a year",
    "valid for 400 s",
    "issued an hour ago, expiring in a minute",
    "iat ahead within the skew, exp far ahead",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_jwt_is_401_saying_why(cds: CdsService, keys: Keys, name: str) -> None:
    token, why = bad_tokens(keys)[name]
    before = rows(cds.services, "SELECT count(*) AS n FROM cds_card")[0]["n"]
    response = call(cds, token)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert why in response.json()["detail"]
    assert rows(cds.services, "SELECT count(*) AS n FROM cds_card")[0]["n"] == before


def test_the_bad_jwt_list_is_complete(keys: Keys) -> None:
    assert sorted(bad_tokens(keys)) == sorted(BAD_NAMES)


def test_a_jwt_without_kid_is_logged_and_audited_with_its_reason(
    cds: CdsService, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    token, _ = bad_tokens(keys)["no kid (PEM key)"]
    with caplog.at_level("WARNING", logger="monitor.cds"):
        response = call(cds, token)
    assert response.status_code == 401
    [logged] = [r for r in caplog.records if r.getMessage() == "cds jwt refused"]
    assert "no kid" in logged.__dict__["reason"]
    [audit] = rows(
        cds.services, "SELECT actor, action, status_code FROM audit_log ORDER BY id DESC LIMIT 1"
    )
    assert audit == {"actor": "anonymous", "action": "POST /cds-services/{service_id}",
                     "status_code": 401}  # fmt: skip


def test_a_lifetime_within_the_bound_and_its_skew_is_accepted(cds: CdsService, keys: Keys) -> None:
    assert call(cds, valid(keys, "ES384 (PEM)", expires_in=325)).status_code == 200
    assert call(cds, valid(keys, "ES384 (JWKS URL)", expires_in=60)).status_code == 200


def test_the_lifetime_bound_is_a_setting(tmp_path: pathlib.Path, keys: Keys, jwks_url: str) -> None:
    with cds_service(tmp_path, keys, jwks_url, cds_jwt_max_lifetime_s=3600) as svc:
        assert call(svc, valid(keys, "ES384 (PEM)", expires_in=1800)).status_code == 200
        too_long = call(svc, valid(keys, "ES384 (PEM)", expires_in=2 * 3600))
        assert too_long.status_code == 401
        assert "at most 3600 s" in too_long.json()["detail"]


def test_a_replayed_jwt_is_refused(cds: CdsService, keys: Keys) -> None:
    token = valid(keys, "ES384 (PEM)", jti=str(uuid.uuid4()))
    assert call(cds, token).status_code == 200
    again = call(cds, token)
    assert again.status_code == 401
    assert "already used" in again.json()["detail"]
    # a refused JWT is in the audit log, as every refused call (issue 11)
    refusals = rows(
        cds.services,
        "SELECT actor, action, status_code FROM audit_log WHERE status_code = 401",
    )
    assert refusals[-1] == {
        "actor": "anonymous",
        "action": "POST /cds-services/{service_id}",
        "status_code": 401,
    }


def test_missing_token_is_401(cds: CdsService) -> None:
    assert call(cds, None).status_code == 401
    assert cds.client.get("/cds-services").status_code == 200  # discovery stays public


@pytest.mark.parametrize(
    ("role", "status"),
    [("cds", 200), ("admin", 200), ("nurse", 403), ("infusion", 403), ("ingest", 403),
     ("auditor", 403)],
)  # fmt: skip
def test_bearer_tokens_by_role(cds: CdsService, role: Role, status: int) -> None:
    response = cds.call(hook_request("P-ACT", draft_order()), role=role)
    assert response.status_code == status, response.text
    feedback = cds.feedback([{"card": str(uuid.uuid4()), "outcome": "overridden",
                              "outcomeTimestamp": "2026-10-01T12:00:00Z"}], role=role)  # fmt: skip
    assert feedback.status_code == (404 if status == 200 else 403)  # 404: an unknown card


def test_an_unknown_bearer_token_is_401(cds: CdsService) -> None:
    response = cds.call(hook_request("P-ACT", draft_order()), token="bm_not-a-token")
    assert response.status_code == 401


def test_feedback_takes_its_own_url_or_the_service_url_as_audience(
    cds: CdsService, keys: Keys
) -> None:
    for audience in (f"{ENDPOINT}/feedback", ENDPOINT):
        token = valid(keys, "ES384 (PEM)", audience)
        response = cds.client.post(
            f"/cds-services/{CHECK}/feedback",
            json={"feedback": [{"card": "no-such-card", "outcome": "overridden",
                                "outcomeTimestamp": "2026-10-01T12:00:00Z"}]},
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        assert response.status_code == 404, response.text  # authenticated; the card is unknown
    wrong = valid(keys, "ES384 (PEM)", "http://testserver/cds-services/bortezomib-order-select")
    response = cds.client.post(
        f"/cds-services/{CHECK}/feedback",
        json={"feedback": []},
        headers={"Authorization": f"Bearer {wrong}"},
    )
    assert response.status_code == 401


def test_with_a_public_base_url_the_audience_is_that_url(
    tmp_path: pathlib.Path, keys: Keys, jwks_url: str
) -> None:
    base = "https://bipn.example/monitor"
    with cds_service(tmp_path, keys, jwks_url, public_base_url=base) as svc:
        inside = call(svc, valid(keys, "ES384 (PEM)", f"{base}/cds-services/{CHECK}"))
        assert inside.status_code == 200, inside.text
        as_seen_by_the_proxy = call(svc, valid(keys, "ES384 (PEM)", ENDPOINT))
        assert as_seen_by_the_proxy.status_code == 401


def test_an_unusable_configured_key_stops_the_start(tmp_path: pathlib.Path) -> None:
    from monitor.interop.cds.jwt_auth import JwtVerifier
    from monitor.settings import CdsClient

    with pytest.raises(ValueError, match="public_key is not a PEM public key"):
        JwtVerifier([CdsClient(iss="https://x.example", public_key="not a key")])
    with pytest.raises(ValueError, match="jwks is not a usable JWK Set"):
        JwtVerifier([CdsClient(iss="https://x.example", jwks={"keys": []})])
