"""Issue 17: `authenticate` answers recently verified tokens from memory (`token_cache_s`),
without giving up expiry or this process's revocations; refusals are never cached."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
from sqlalchemy import event

from monitor.auth.roles import Role
from monitor.auth.tokens import (
    CACHE_ENTRIES,
    MISS,
    Principal,
    TokenCache,
    authenticate,
    create_token,
    hash_token,
    revoke_tokens,
    token_cache,
)
from monitor.services import Services
from monitor.settings import Settings
from tests.common.service import Api
from tests.conftest import FIXED_NOW


class Statements:
    """Every SQL statement the engine sends, as text."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.sent.append(statement)

    def token_reads(self) -> int:
        return sum(1 for s in self.sent if "FROM api_token" in s)


@pytest.fixture
def statements(services: Services) -> Iterator[Statements]:
    counter = Statements()
    event.listen(services.engine, "before_cursor_execute", counter)
    yield counter
    event.remove(services.engine, "before_cursor_execute", counter)


def test_a_second_look_up_within_the_ttl_sends_no_statement(
    services: Services, statements: Statements
) -> None:
    token = create_token(services.sessions, "nurse", "ward", FIXED_NOW)
    first = authenticate(services.sessions, token, FIXED_NOW, cache_s=60)
    assert statements.token_reads() == 1
    statements.sent.clear()
    second = authenticate(services.sessions, token, FIXED_NOW, cache_s=60)
    assert statements.sent == []
    assert first == second == Principal("ward", "nurse")
    assert first is not None
    assert second is not None
    assert second.token_id == first.token_id


def test_the_cache_is_keyed_by_the_hash_never_the_token(services: Services) -> None:
    token = create_token(services.sessions, "nurse", "ward", FIXED_NOW)
    authenticate(services.sessions, token, FIXED_NOW, cache_s=60)
    cache = token_cache(services.sessions)
    assert cache.get(hash_token(token), FIXED_NOW, 60) == Principal("ward", "nurse")
    assert cache.get(token, FIXED_NOW, 60) is MISS


def test_an_entry_older_than_the_ttl_is_read_again(
    services: Services, statements: Statements
) -> None:
    token = create_token(services.sessions, "nurse", "ward", FIXED_NOW)
    assert authenticate(services.sessions, token, FIXED_NOW, cache_s=0.05) is not None
    time.sleep(0.1)  # older than the TTL whatever the machine's load
    assert authenticate(services.sessions, token, FIXED_NOW, cache_s=0.05) is not None
    assert statements.token_reads() == 2


def test_a_token_that_expires_while_cached_is_refused(
    services: Services, statements: Statements
) -> None:
    expiry = FIXED_NOW + dt.timedelta(hours=1)
    token = create_token(services.sessions, "nurse", "short", FIXED_NOW, expiry)
    assert authenticate(services.sessions, token, FIXED_NOW, cache_s=60) is not None
    statements.sent.clear()
    assert authenticate(services.sessions, token, expiry, cache_s=60) is None
    assert statements.sent == []  # refused from the cache: its expiry is checked at each hit
    assert authenticate(services.sessions, token, expiry - dt.timedelta(seconds=1), cache_s=60)


def test_revoking_in_this_process_clears_the_cache_at_once(
    services: Services, statements: Statements
) -> None:
    token = create_token(services.sessions, "nurse", "ward", FIXED_NOW)
    other = create_token(services.sessions, "nurse", "other", FIXED_NOW)
    assert authenticate(services.sessions, token, FIXED_NOW, cache_s=60) is not None
    assert authenticate(services.sessions, other, FIXED_NOW, cache_s=60) is not None
    revoke_tokens(services.sessions, FIXED_NOW, name="ward")
    statements.sent.clear()
    assert authenticate(services.sessions, token, FIXED_NOW, cache_s=60) is None
    assert statements.token_reads() == 1  # asked the database, which says revoked
    statements.sent.clear()
    assert authenticate(services.sessions, other, FIXED_NOW, cache_s=60) is not None
    assert statements.sent == []  # the other token stays cached


def test_a_look_up_that_read_before_a_revocation_does_not_cache_it() -> None:
    cache = TokenCache()
    generation = cache.generation  # read, then the row is revoked elsewhere in this process
    cache.forget(["d" * 64])
    cache.put("d" * 64, Principal("ward", "nurse"), None, generation)
    assert cache.get("d" * 64, FIXED_NOW, 60) is MISS


def test_ttl_zero_always_asks_the_database(services: Services, statements: Statements) -> None:
    token = create_token(services.sessions, "nurse", "ward", FIXED_NOW)
    for _ in range(3):
        assert authenticate(services.sessions, token, FIXED_NOW, cache_s=0) is not None
    assert statements.token_reads() == 3
    assert len(token_cache(services.sessions)) == 0


def test_refusals_are_not_cached(services: Services, statements: Statements) -> None:
    assert authenticate(services.sessions, "bm_unknown", FIXED_NOW, cache_s=60) is None
    assert authenticate(services.sessions, "bm_unknown", FIXED_NOW, cache_s=60) is None
    assert statements.token_reads() == 2
    assert len(token_cache(services.sessions)) == 0


def test_the_cache_is_a_bounded_lru() -> None:
    assert TokenCache().max_entries == CACHE_ENTRIES == 1_024
    cache = TokenCache(max_entries=3)
    for name in "abc":
        cache.put(name * 64, Principal(name, "nurse"), None, cache.generation)
    assert cache.get("a" * 64, FIXED_NOW, 60) == Principal("a", "nurse")  # now most recent
    cache.put("d" * 64, Principal("d", "nurse"), None, cache.generation)
    assert len(cache) == 3
    assert cache.get("b" * 64, FIXED_NOW, 60) is MISS  # the least recently used went
    assert [cache.get(n * 64, FIXED_NOW, 60) for n in "acd"] == [
        Principal(n, "nurse") for n in "acd"
    ]


@pytest.mark.parametrize("value", [-0.5, 61])
def test_the_setting_is_bounded(value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match="token_cache_s"):
        Settings(token_cache_s=value)


def test_the_api_reads_a_token_once_within_the_ttl(
    api: Api, services: Services, tokens: dict[Role, str], statements: Statements
) -> None:
    assert services.settings.token_cache_s == 2.0  # the default
    for _ in range(3):
        assert api.get("/v1/admin/tokens", role="admin").status_code == 200
    auth_reads = [s for s in statements.sent if "api_token.token_hash =" in s]
    assert len(auth_reads) == 1


def test_the_api_refuses_a_token_revoked_through_it_at_once(
    api: Api, tokens: dict[Role, str]
) -> None:
    assert api.get("/v1/patients/P1", role="nurse").status_code in (200, 404)
    listed = api.get("/v1/admin/tokens", role="admin").json()["tokens"]
    nurse = next(t["id"] for t in listed if t["name"] == "test-nurse")
    revoked = api.client.post(f"/v1/admin/tokens/{nurse}/revoke", headers=api.headers("admin"))
    assert revoked.status_code == 200
    assert api.get("/v1/patients/P1", role="nurse").status_code == 401
