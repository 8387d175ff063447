"""Fixtures of the CDS Hooks tests: keys, a published JWK Set, and the seeded service."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests.common.cds import (
    CdsService,
    Keys,
    cds_service,
    jwk,
    make_keys,
    serving_jwks,
)


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
