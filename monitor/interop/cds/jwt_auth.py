"""CDS Hooks client authentication: the signed JWT of the spec ("Trusting CDS Clients").

A CDS client signs each call with its private key; the service knows each client by its issuer
(`settings.cds_clients`: `iss` and its public key as PEM, an inline JWK Set, or a JWK Set URL).
A token is accepted only when:

- its header is the spec's: `typ` JWT, a `kid` (required for every client; it picks the key in
  a JWK Set), an asymmetric `alg` (ES384 and RS384 as the spec recommends, or another ES/RS/PS
  size: `none` and HMAC, a shared secret, are refused, as the spec requires), and a `jku` only
  when it is the client's configured JWK Set URL (the spec's allowlist of `jku` URLs: the
  service never fetches keys from a URL the token names, and a client configured with a PEM
  key or an inline JWK Set takes no `jku`);
- its issuer is a configured client, and its signature verifies with that client's key;
- `aud` is the URL of the endpoint called, `exp` has not passed, `iat` is not in the future
  (30 s of clock skew either way), the token is short-lived (`exp - iat`, and `exp` from now,
  at most `max_lifetime_s`, default 300 s, plus the skew: a token valid for a year is a
  credential, not a call), and `jti` is present and not seen before from that issuer
  (`remember_jti`: a replayed token is refused by whichever API process sees it).

Token validity is checked against the wall clock (transport time), not the service's clinical
clock: a frozen demo clock must not make every real token look expired.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col

from monitor.auth.tokens import TOKEN_PREFIX
from monitor.settings import CdsClient
from monitor.storage.models import CdsJwtRow

ALGORITHMS = ("ES384", "RS384", "ES256", "ES512", "RS256", "RS512", "PS256", "PS384", "PS512")
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]
LEEWAY_S = 30.0
MAX_LIFETIME_S = 300.0  # the default of Settings.cds_jwt_max_lifetime_s
JWKS_LIFESPAN_S = 300.0  # a fetched JWK Set is reused this long (key rotation shows after it)
JWKS_TIMEOUT_S = 5.0


class JwtRejectedError(Exception):
    """Why a token was refused (said in the 401: no secret is in it)."""


@dataclass(frozen=True, slots=True)
class VerifiedJwt:
    issuer: str
    jti: str
    expires_at: dt.datetime


def looks_like_jwt(token: str) -> bool:
    """A compact JWS (three dot-separated parts); the service's own tokens never have dots."""
    return not token.startswith(TOKEN_PREFIX) and token.count(".") == 2


class JwtVerifier:
    """Verifies CDS Hooks JWTs against the configured clients. Thread-safe; JWK Sets fetched
    from a URL are cached (PyJWKClient) for `JWKS_LIFESPAN_S`."""

    def __init__(
        self, clients: Sequence[CdsClient], max_lifetime_s: float = MAX_LIFETIME_S
    ) -> None:
        self._clients = {c.iss: c for c in clients}
        self._max_lifetime_s = max_lifetime_s
        self._pem_keys: dict[str, Any] = {}
        self._jwk_sets: dict[str, jwt.PyJWKSet] = {}
        self._fetchers: dict[str, jwt.PyJWKClient] = {}
        self._lock = threading.Lock()
        for client in clients:  # a bad key stops the start-up, not the first call
            if client.public_key is not None:
                try:
                    self._pem_keys[client.iss] = serialization.load_pem_public_key(
                        client.public_key.encode()
                    )
                except ValueError as exc:
                    raise ValueError(
                        f"cds_clients: client {client.iss!r}: public_key is not a PEM public "
                        f"key ({exc})"
                    ) from None
            elif client.jwks is not None:
                try:
                    self._jwk_sets[client.iss] = jwt.PyJWKSet.from_dict(client.jwks)
                except jwt.PyJWTError as exc:
                    raise ValueError(
                        f"cds_clients: client {client.iss!r}: jwks is not a usable JWK Set ({exc})"
                    ) from None

    def verify(self, token: str, audiences: Sequence[str]) -> VerifiedJwt:
        """The verified token, or `JwtRejectedError` saying why not."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise JwtRejectedError("not a readable JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise JwtRejectedError(
                f"algorithm {alg!r} is not accepted: sign with ES384 or RS384 (never none or HMAC)"
            )
        _check_header(header)
        issuer = unverified.get("iss")
        client = self._clients.get(issuer) if isinstance(issuer, str) else None
        if client is None:
            raise JwtRejectedError(f"issuer {issuer!r} is not a configured CDS client")
        jku = header.get("jku")
        if jku is not None and jku != client.jwks_url:
            raise JwtRejectedError(
                f"jku {jku!r} is not the client's configured JWK Set URL"
                if client.jwks_url is not None
                else f"jku {jku!r} is not accepted: the client's key is configured, not fetched"
            )
        key = self._key(client, header, token)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=list(audiences),
                issuer=client.iss,
                leeway=LEEWAY_S,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise JwtRejectedError("the token has expired (exp)") from None
        except jwt.InvalidAudienceError:
            raise JwtRejectedError(
                f"the audience (aud) is not the endpoint called: expected {audiences[0]}"
            ) from None
        except jwt.InvalidSignatureError:
            raise JwtRejectedError("the signature does not verify with the client's key") from None
        except jwt.MissingRequiredClaimError as exc:
            raise JwtRejectedError(f"claim {exc.claim!r} is required") from None
        except jwt.ImmatureSignatureError:
            raise JwtRejectedError("the token is issued in the future (iat)") from None
        except jwt.InvalidIssuedAtError:
            raise JwtRejectedError("claim 'iat' must be a number of seconds") from None
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            raise JwtRejectedError(f"the token is invalid: {exc}") from None
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise JwtRejectedError("claim 'jti' must be a string of 1-256 characters")
        exp = float(claims["exp"])
        self._check_lifetime(exp, float(claims["iat"]))
        return VerifiedJwt(client.iss, jti, dt.datetime.fromtimestamp(exp, dt.UTC))

    def _check_lifetime(self, exp: float, iat: float) -> None:
        """A short-lived token, by what it claims (`exp - iat`) and by when it really ends
        (`exp` from now: an `iat` set ahead within the skew does not stretch it)."""
        bound = self._max_lifetime_s + LEEWAY_S
        lifetime, remaining = exp - iat, exp - time.time()
        if lifetime > bound or remaining > bound:
            raise JwtRejectedError(
                f"the token lives too long ({max(lifetime, remaining):.0f} s from iat or now "
                f"to exp): at most {self._max_lifetime_s:.0f} s is accepted; sign a new "
                "short-lived token for each call"
            )

    def _key(self, client: CdsClient, header: dict[str, Any], token: str) -> Any:
        if client.iss in self._pem_keys:
            return self._pem_keys[client.iss]
        if client.iss in self._jwk_sets:
            kid = header["kid"]  # present: _check_header
            matching = [k for k in self._jwk_sets[client.iss].keys if k.key_id == kid]
            if len(matching) != 1:
                raise JwtRejectedError(f"no single key with kid {kid!r} in the client's JWK Set")
            return _raw(matching[0])
        assert client.jwks_url is not None  # CdsClient holds exactly one key source
        with self._lock:
            fetcher = self._fetchers.get(client.iss)
            if fetcher is None:
                fetcher = jwt.PyJWKClient(
                    client.jwks_url,
                    cache_jwk_set=True,
                    lifespan=JWKS_LIFESPAN_S,
                    timeout=JWKS_TIMEOUT_S,
                )
                self._fetchers[client.iss] = fetcher
        try:
            return _raw(fetcher.get_signing_key_from_jwt(token))
        except jwt.PyJWKClientConnectionError:
            raise JwtRejectedError("the client's JWK Set could not be fetched") from None
        except jwt.PyJWTError as exc:
            raise JwtRejectedError(
                f"no key for this token in the client's JWK Set: {exc}"
            ) from None


def _check_header(header: dict[str, Any]) -> None:
    """The header fields the spec requires besides `alg`: `typ` JWT and the signing key's `kid`."""
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.upper() != "JWT":
        raise JwtRejectedError(f"header typ {typ!r} is not accepted: the spec requires 'JWT'")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise JwtRejectedError(
            "the header has no kid: the spec requires the id of the signing key"
            if kid is None
            else f"header kid {kid!r} must be a non-empty string"
        )


def _raw(key: jwt.PyJWK) -> Any:
    """The JWK's public key itself: verified with the token's (allow-listed) algorithm, not the
    one PyJWK infers for a JWK without `alg` (RS256 for any RSA key, which would refuse RS384).
    The key's type still has to fit the algorithm (an EC key cannot verify RS384)."""
    return key.key


def remember_jti(sessions: sessionmaker[Session], verified: VerifiedJwt, now: dt.datetime) -> None:
    """Record the token's `jti`; one seen before from the same issuer is a replay
    (`JwtRejectedError`). Entries past their expiry (plus the leeway) are dropped here."""
    try:
        with sessions.begin() as session:
            session.execute(
                delete(CdsJwtRow).where(
                    col(CdsJwtRow.expires_at) < now - dt.timedelta(seconds=2 * LEEWAY_S)
                )
            )
            session.add(
                CdsJwtRow(issuer=verified.issuer, jti=verified.jti, expires_at=verified.expires_at)
            )
    except IntegrityError:
        raise JwtRejectedError(
            "the token was already used (jti): each call needs a new one"
        ) from None
