"""Staff signed in at the hospital's OpenID Connect provider: its JWT access tokens as bearers.

A bearer that is a JWT naming the configured issuer (`oidc_issuer`) is verified here (joserfc,
the JOSE library of Authlib, whose own `authlib.jose` is deprecated in its favour):

- signed with RS256 or ES256 by a key of the provider's JWK Set, found through its discovery
  document (`{issuer}/.well-known/openid-configuration` -> `jwks_uri`); the set is cached, and
  fetched again when a token names a key id it lacks (a key rotation) and after
  `KEYS_MAX_AGE_S` (a key withdrawn stops verifying), at most every `REFETCH_MIN_INTERVAL_S`
  (failed fetches too; the keys known go on serving while the provider is out of reach);
- `iss` is the issuer, `aud` names `oidc_audience`, `exp` has not passed, `nbf` and `iat` are
  not in the future (`oidc_leeway_s` of skew), `sub` is present.

Then the claims mapping gives the `Principal`: the role from `oidc_role_claim` (through
`oidc_role_map`, or the role names themselves), the units from `oidc_units_claim`. A token that
verifies but maps to no staff role, to several, or lacks the units its role needs, is refused
with a 403: the user is authenticated, this service just gives them nothing. The principal's
name is `oidc:{sub}`: the audit log names the subject, never a name or an e-mail address (a
`sub` that looks like one is refused).

Validity is checked against the wall clock (like CDS Hooks JWTs): a frozen demo clock must not
make every real token look expired.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import httpx
from joserfc import jws, jwt
from joserfc.errors import (
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from monitor.auth.roles import STAFF_ROLES, Role
from monitor.auth.tokens import TOKEN_PREFIX, Principal, is_unit_name
from monitor.settings import Settings

log = logging.getLogger("monitor.auth")

ALGORITHMS = ("RS256", "ES256")
DISCOVERY_PATH = "/.well-known/openid-configuration"
KEYS_MAX_AGE_S = 3600.0
REFETCH_MIN_INTERVAL_S = 30.0  # a flood of tokens with made-up key ids fetches once per this
FETCH_TIMEOUT_S = 5.0
SUBJECT_PREFIX = "oidc:"


class OidcRefusedError(Exception):
    """Why a provider's token was refused: 401 (not verified), 403 (verified, but no role
    here) or 503 (the provider's keys could not be fetched). No secret is in the message."""

    def __init__(self, status: int, detail: str, subject: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.subject = subject  # `oidc:{sub}` once the token verified


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + DISCOVERY_PATH


def unverified_issuer(token: str) -> str | None:
    """The `iss` a compact JWS claims, before any check: which verifier it is for."""
    if token.startswith(TOKEN_PREFIX) or token.count(".") != 2:
        return None
    try:
        payload = json.loads(jws.extract_compact(token.encode()).payload)
    except (JoseError, ValueError, TypeError):
        return None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    return issuer if isinstance(issuer, str) else None


@dataclass
class _CachedKeys:
    keys: KeySet
    fetched: float  # monotonic


class ProviderKeys:
    """The provider's JWK Set, from its discovery document; thread-safe (the guard verifies in
    the thread pool)."""

    def __init__(self, issuer: str, http: httpx.Client | None = None) -> None:
        self._issuer = issuer
        self._http = http or httpx.Client(timeout=FETCH_TIMEOUT_S)
        self._lock = threading.Lock()
        self._cached: _CachedKeys | None = None
        self._attempted: float | None = None  # monotonic time of the last fetch, good or not

    def current(self) -> KeySet:
        with self._lock:
            cached = self._cached
            if cached is None or time.monotonic() - cached.fetched > KEYS_MAX_AGE_S:
                cached = self._fetch_if_due()
            return cached.keys

    def refreshed(self) -> KeySet:
        """The set fetched again (a token named a key id the cached set lacks), unless it was
        tried moments ago."""
        with self._lock:
            return self._fetch_if_due().keys

    def _fetch_if_due(self) -> _CachedKeys:
        """A fetch at most every `REFETCH_MIN_INTERVAL_S`, failed ones too: a provider down
        does not hold every request for a timeout. Meanwhile the keys known serve; with none
        known yet, a 503."""
        now = time.monotonic()
        if self._attempted is None or now - self._attempted >= REFETCH_MIN_INTERVAL_S:
            self._attempted = now
            self._cached = self._fetch() or self._cached
        if self._cached is None:
            raise OidcRefusedError(
                503, "the sign-in provider's keys cannot be fetched: try again shortly"
            )
        return self._cached

    def _fetch(self) -> _CachedKeys | None:
        try:
            metadata = self._get_json(discovery_url(self._issuer))
            jwks_uri = metadata.get("jwks_uri")
            if metadata.get("issuer") != self._issuer or not isinstance(jwks_uri, str):
                raise ValueError("its discovery document names another issuer, or no jwks_uri")
            keys = KeySet.import_key_set(cast(Any, self._get_json(jwks_uri)))
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            log.warning(
                "the OpenID Connect provider's keys could not be fetched",
                extra={"issuer": self._issuer, "error_type": type(exc).__name__},
            )
            return None
        return _CachedKeys(keys, time.monotonic())

    def _get_json(self, url: str) -> dict[str, Any]:
        response = self._http.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        data = response.json()
        if not isinstance(data, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return data


class OidcVerifier:
    """Verifies the provider's access tokens and maps their claims to a `Principal`."""

    def __init__(self, settings: Settings, http: httpx.Client | None = None) -> None:
        if settings.oidc_issuer is None or settings.oidc_audience is None:
            raise ValueError("OidcVerifier needs oidc_issuer and oidc_audience")
        self.issuer = settings.oidc_issuer
        self._settings = settings
        self._keys = ProviderKeys(settings.oidc_issuer, http)
        self._claims = jwt.JWTClaimsRegistry(
            leeway=settings.oidc_leeway_s,
            iss={"essential": True, "value": settings.oidc_issuer},
            aud={"essential": True, "value": settings.oidc_audience},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
        )

    def issued_here(self, token: str) -> bool:
        """A JWT claiming to be the provider's (verified by `principal`); anything else is
        some other credential (an API token)."""
        return unverified_issuer(token) == self.issuer

    def principal(self, token: str) -> Principal:
        """The verified token's principal; `OidcRefusedError` says why not."""
        claims = self.verified_claims(token)
        return principal_from_claims(claims, self._settings)

    def verified_claims(self, token: str) -> dict[str, Any]:
        try:
            try:
                decoded = jwt.decode(token, self._keys.current(), algorithms=ALGORITHMS)
            except InvalidKeyIdError:
                decoded = jwt.decode(token, self._keys.refreshed(), algorithms=ALGORITHMS)
            self._claims.validate(decoded.claims)
        except ExpiredTokenError:
            raise OidcRefusedError(401, "the sign-in has expired: sign in again") from None
        except (MissingClaimError, InvalidClaimError) as exc:
            raise OidcRefusedError(401, f"the token's {exc.claim!r} is not accepted here") from None
        except InvalidKeyIdError:
            raise OidcRefusedError(
                401, "the token is signed with a key the provider does not list"
            ) from None
        except JoseError as exc:
            raise OidcRefusedError(
                401, f"the token does not verify ({exc.error}; algorithms {', '.join(ALGORITHMS)})"
            ) from None
        return decoded.claims


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or a nested one by dotted path (`realm_access.roles`)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _strings(value: Any) -> list[str] | None:
    """A claim that is a string or a list of strings, as a list; None when it is neither."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def principal_from_claims(claims: Mapping[str, Any], settings: Settings) -> Principal:
    """The claims mapping: one staff role, the units, the subject. 403 when they give none."""
    if "@" in str(claims["sub"]):  # an e-mail address: it would be written in the audit log
        raise OidcRefusedError(
            403,
            "the token's 'sub' looks like an e-mail address: the provider must give this "
            "service opaque subject identifiers (they are written in its audit log)",
        )
    subject = SUBJECT_PREFIX + str(claims["sub"])
    role_claim = settings.oidc_role_claim
    values = _strings(claim_at(claims, role_claim)) or []
    mapping = settings.oidc_role_map
    found = {mapping[v] for v in values if v in mapping} if mapping else set(values)
    roles = sorted(r for r in found if r in STAFF_ROLES)
    if not roles:
        raise OidcRefusedError(
            403,
            f"signed in, but the token's {role_claim!r} claim maps to no role of this service "
            f"(staff roles: {', '.join(STAFF_ROLES)}): ask for access",
            subject,
        )
    if len(roles) > 1:
        raise OidcRefusedError(
            403,
            f"the token's {role_claim!r} claim maps to several roles ({', '.join(roles)}): "
            "one is needed, so the provider's groups must be narrowed",
            subject,
        )
    role: Role = roles[0]
    units: frozenset[str] | None = None
    units_claim = settings.oidc_units_claim
    if units_claim and role != "admin":
        names = _strings(claim_at(claims, units_claim))
        if not names or not all(is_unit_name(u) for u in names):
            raise OidcRefusedError(
                403,
                f"a {role} needs the token's {units_claim!r} claim: the unit names (1-64 "
                "printable characters each) whose patients they see",
                subject,
            )
        units = frozenset(names)
    return Principal(
        name=subject[:64],
        role=role,
        units=units,
        expires_at=dt.datetime.fromtimestamp(float(claims["exp"]), dt.UTC),
    )
