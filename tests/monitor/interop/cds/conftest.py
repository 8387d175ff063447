"""Fixtures of the CDS Hooks tests: keys, a published JWK Set, the seeded service, and the
CDS Hooks sandbox as a client (tests/common/cds_sandbox.py)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.common.cds import (
    CdsService,
    Keys,
    cds_service,
    jwk,
    make_keys,
    serving_jwks,
)
from tests.common.cds_sandbox import SANDBOX_JWKS_URL, SANDBOX_ORIGIN, sandbox_client


@pytest.fixture(scope="package")
def keys() -> Keys:
    return make_keys()


@pytest.fixture(scope="package")
def jwks_url(keys: Keys) -> Iterator[str]:
    with serving_jwks({"keys": [jwk(keys.url, "url-1", alg="ES384")]}) as url:
        yield url


@pytest.fixture(scope="module")
def cds(
    tmp_path_factory: pytest.TempPathFactory, keys: Keys, jwks_url: str
) -> Iterator[CdsService]:
    """One seeded service per test module (its cards and feedback accumulate)."""
    with cds_service(tmp_path_factory.mktemp("cds"), keys, jwks_url) as service:
        yield service


@pytest.fixture
def fresh(tmp_path: pathlib.Path, keys: Keys, jwks_url: str) -> Iterator[CdsService]:
    """A seeded service of this test alone (for counts)."""
    with cds_service(tmp_path, keys, jwks_url) as service:
        yield service


@pytest.fixture(scope="module")
def sandbox_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def sandbox_jwks(sandbox_key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    return sandbox_client(sandbox_key)[1]


@pytest.fixture(scope="module")
def sandboxed(
    tmp_path_factory: pytest.TempPathFactory,
    keys: Keys,
    jwks_url: str,
    sandbox_key: ec.EllipticCurvePrivateKey,
) -> Iterator[CdsService]:
    """The service with the sandbox as a client and its origin allowed."""
    client, _ = sandbox_client(sandbox_key)
    with cds_service(
        tmp_path_factory.mktemp("sandbox"),
        keys,
        jwks_url,
        extra_clients=(client,),
        cds_allowed_origins=[SANDBOX_ORIGIN, "http://localhost:8080"],
    ) as service:
        yield service


@pytest.fixture
def sandbox_jwks_served(monkeypatch: pytest.MonkeyPatch, sandbox_jwks: dict[str, Any]) -> None:
    """The sandbox's real JWK Set URL answers the test key's JWK Set (no network in tests);
    any other URL is fetched as usual."""
    fetch = jwt.PyJWKClient.fetch_data

    def fetch_data(self: jwt.PyJWKClient) -> Any:
        return sandbox_jwks if self.uri == SANDBOX_JWKS_URL else fetch(self)

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", fetch_data)
