"""Bearer tokens with roles: created (shown once, stored as a hash), listed, revoked, expiring.

`authenticate` may answer from a small in-process cache (`MONITOR_TOKEN_CACHE_S`): keyed by
the token's hash, never the token; the token's own expiry is checked at every hit; a revocation
in this process (`revoke_tokens`) drops the token from the cache at once, while another process
still accepts it for at most `token_cache_s` (its cache entry's age). Refusals are not cached:
a token just created works at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal

from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select

from monitor.auth.roles import ROLES, Role
from monitor.operations.clock import wall_now
from monitor.storage.models import ApiTokenRow
from policies.decisions import utc_text, utc_text_or_none

TOKEN_PREFIX = "bm_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name and role (never the token itself). `token_id` lets a
    long-lived request (the alert stream) check the token is still valid."""

    name: str
    role: Role
    token_id: int | None = field(default=None, compare=False)
    # the units the token is bound to (it sees only their patients, alerts and reports);
    # None: every unit
    units: frozenset[str] | None = None
    # when its credential stops being valid, if it says (a provider's JWT: its `exp`); an open
    # stream ends then
    expires_at: dt.datetime | None = field(default=None, compare=False)

    def sees_unit(self, unit: str | None) -> bool:
        """In scope: an unbound token sees every unit (and patients without one); a bound one
        only its units."""
        return self.units is None or (unit is not None and unit in self.units)

    @property
    def scope(self) -> str:
        """The scope as the audit log records it."""
        return "all units" if self.units is None else "units " + ",".join(sorted(self.units))


def is_unit_name(unit: str) -> bool:
    """1-64 printable characters without surrounding blanks, as in the enrolments' `unit`."""
    return 0 < len(unit) <= 64 and unit.isprintable() and unit == unit.strip()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    sessions: sessionmaker[Session],
    role: Role,
    name: str,
    now: dt.datetime,
    expires_at: dt.datetime | None = None,
    units: Sequence[str] | None = None,
) -> str:
    """A new random token; only its hash is stored, so this is the one time it is seen.
    `units`: bind it to these units (None: every unit)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if units is not None:
        bad = [u for u in units if not is_unit_name(u)]
        if bad or not units:
            raise ValueError(
                f"units: {bad[0]!r} is not a unit name (1-64 printable characters, as in the "
                "enrolments' `unit`)"
                if bad
                else "units: give at least one unit, or none for every unit"
            )
        if role in ("admin", "ingest", "cds"):
            raise ValueError(f"a {role} token sees every unit: it cannot be bound to units")
    if expires_at is not None and expires_at <= now:
        raise ValueError(f"the expiry {utc_text(expires_at)} is not in the future")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with sessions.begin() as session:
        session.add(
            ApiTokenRow(
                name=name,
                role=role,
                token_hash=hash_token(token),
                created_at=now,
                expires_at=expires_at,
                units=None if units is None else json.dumps(sorted(set(units))),
            )
        )
    return token


def _usable(row: ApiTokenRow | None, now: dt.datetime) -> bool:
    return (
        row is not None
        and row.revoked_at is None
        and (row.expires_at is None or row.expires_at > now)
        and row.role in ROLES
    )


CACHE_ENTRIES: Final = 1_024


class _Miss(Enum):
    MISS = "miss"


MISS: Final = _Miss.MISS  # not in the cache (or too old): ask the database


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    expires_at: dt.datetime | None  # the token's own expiry, checked at every hit
    stored: float  # time.monotonic() when read from the database


class TokenCache:
    """Recently verified tokens of one database, by hash: a bounded LRU, safe across threads.

    Only usable tokens are kept. `generation` moves at every revocation, so a look-up that read
    the row before a revocation committed cannot put the old answer back after it was dropped.
    """

    def __init__(self, max_entries: int = CACHE_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Cached] = OrderedDict()
        self._lock = threading.Lock()
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: str, now: dt.datetime, max_age_s: float) -> Principal | _Miss | None:
        """The cached principal; None when the cached token has expired by `now`; MISS when
        absent or older than `max_age_s` (dropped then)."""
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return MISS
            if time.monotonic() - entry.stored >= max_age_s:
                del self._entries[digest]
                return MISS
            self._entries.move_to_end(digest)
        if entry.expires_at is not None and entry.expires_at <= now:
            return None
        return entry.principal

    def put(
        self, digest: str, principal: Principal, expires_at: dt.datetime | None, generation: int
    ) -> None:
        """Keep a principal read from the database while `generation` was current."""
        with self._lock:
            if generation != self.generation:
                return  # a revocation happened meanwhile: the row read may be stale
            self._entries[digest] = _Cached(principal, expires_at, time.monotonic())
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, digests: Iterable[str]) -> None:
        with self._lock:
            self.generation += 1
            for digest in digests:
                self._entries.pop(digest, None)


# one cache per session factory (per database), dropped with it
_caches: weakref.WeakKeyDictionary[sessionmaker[Session], TokenCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def token_cache(sessions: sessionmaker[Session]) -> TokenCache:
    """This process's cache of `sessions`' tokens."""
    with _caches_lock:
        cache = _caches.get(sessions)
        if cache is None:
            cache = _caches[sessions] = TokenCache()
        return cache


def cached_principal(
    sessions: sessionmaker[Session], token: str, now: dt.datetime, cache_s: float
) -> Principal | _Miss | None:
    """`authenticate` from the cache alone, without blocking (the event loop may call it):
    MISS when the database must be asked."""
    if cache_s <= 0:
        return MISS
    return token_cache(sessions).get(hash_token(token), now, cache_s)


def authenticate(
    sessions: sessionmaker[Session],
    token: str,
    now: dt.datetime | None = None,
    *,
    cache_s: float = 0.0,
) -> Principal | None:
    """The token's principal, or None when it is unknown, revoked or expired (at `now`).

    `cache_s` > 0: answer from this process's cache when the token was read from the database
    less than `cache_s` ago (the API's `token_cache_s`); so another process's revocation is
    seen within `cache_s`, this process's at once. 0: always the database."""
    moment = now or wall_now()
    digest = hash_token(token)
    cache = token_cache(sessions) if cache_s > 0 else None
    if cache is not None:
        found = cache.get(digest, moment, cache_s)
        if found is not MISS:
            return found
        generation = cache.generation
    with sessions() as session:
        row = session.execute(
            select(ApiTokenRow).where(col(ApiTokenRow.token_hash) == digest)
        ).scalar_one_or_none()
    if row is None or not _usable(row, moment):
        return None  # refusals are not cached: a token created a moment later works at once
    principal = Principal(name=row.name, role=row.role, token_id=row.id, units=token_units(row))
    if cache is not None:
        cache.put(digest, principal, row.expires_at, generation)
    return principal


def token_units(row: ApiTokenRow) -> frozenset[str] | None:
    return None if row.units is None else frozenset(json.loads(row.units))


def still_valid(sessions: sessionmaker[Session], token_id: int, now: dt.datetime) -> bool:
    """Not revoked, not expired: what an open stream asks at each poll."""
    with sessions() as session:
        return _usable(session.get(ApiTokenRow, token_id), now)


TokenState = Literal["active", "revoked", "expired"]


def token_state(row: ApiTokenRow, now: dt.datetime) -> TokenState:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def token_view(row: ApiTokenRow, now: dt.datetime) -> dict[str, object]:
    """A token as `token list` and the admin API show it: never the token or its hash."""
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "units": None if row.units is None else sorted(json.loads(row.units)),
        "state": token_state(row, now),
        "created_at": utc_text(row.created_at),
        "expires_at": utc_text_or_none(row.expires_at),
        "revoked_at": utc_text_or_none(row.revoked_at),
    }


def list_tokens(
    sessions: sessionmaker[Session], now: dt.datetime, *, include_inactive: bool = False
) -> list[dict[str, object]]:
    with sessions() as session:
        rows = session.execute(select(ApiTokenRow).order_by(col(ApiTokenRow.id))).scalars()
        views = [token_view(row, now) for row in rows]
    return views if include_inactive else [v for v in views if v["state"] == "active"]


def revoke_tokens(
    sessions: sessionmaker[Session],
    now: dt.datetime,
    *,
    token_id: int | None = None,
    name: str | None = None,
) -> list[dict[str, object]]:
    """Revoke one token by id, or every active token of a name; returns what was revoked
    (a token already revoked stays as it was, with its first revocation time)."""
    if (token_id is None) == (name is None):
        raise ValueError("give a token id or a name")
    with sessions.begin() as session:
        query = select(ApiTokenRow).where(col(ApiTokenRow.revoked_at).is_(None))
        if token_id is not None:
            query = query.where(col(ApiTokenRow.id) == token_id)
        else:
            query = query.where(col(ApiTokenRow.name) == name)
        rows = list(session.execute(query).scalars())
        for row in rows:
            row.revoked_at = now  # written at the commit
        views = [token_view(row, now) for row in rows]
        digests = [row.token_hash for row in rows]
    _forget_everywhere(digests)
    return views


def _forget_everywhere(digests: list[str]) -> None:
    """After the revocation committed: out of every cache of this process (whichever session
    factory revoked it), so no request here is let in by it again."""
    with _caches_lock:
        caches = list(_caches.values())
    for cache in caches:
        cache.forget(digests)


def find_token(sessions: sessionmaker[Session], token_id: int) -> ApiTokenRow | None:
    with sessions() as session:
        return session.get(ApiTokenRow, token_id)
