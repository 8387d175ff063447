"""Bearer tokens with roles, and the hash-chained audit log of who did what."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select

from monitor.roles import ROLES, Role
from monitor.storage.models import ApiTokenRow, AuditLogRow

GENESIS_HASH = "0" * 64
TOKEN_PREFIX = "bm_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name and role (never the token itself)."""

    name: str
    role: Role


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(sessions: sessionmaker[Session], role: Role, name: str, now: dt.datetime) -> str:
    """A new random token; only its hash is stored, so this is the one time it is seen."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with sessions.begin() as session:
        session.add(ApiTokenRow(name=name, role=role, token_hash=hash_token(token), created_at=now))
    return token


def authenticate(sessions: sessionmaker[Session], token: str) -> Principal | None:
    with sessions() as session:
        row = session.execute(
            select(ApiTokenRow).where(
                col(ApiTokenRow.token_hash) == hash_token(token),
                col(ApiTokenRow.revoked_at).is_(None),
            )
        ).scalar_one_or_none()
    if row is None or row.role not in ROLES:
        return None
    return Principal(name=row.name, role=row.role)


def _row_hash(prev_hash: str, row: AuditLogRow) -> str:
    fields = (
        prev_hash,
        row.at.astimezone(dt.UTC).isoformat(),
        row.actor,
        row.role,
        row.action,
        row.resource,
        str(row.status_code),
    )
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def record(
    sessions: sessionmaker[Session],
    principal: Principal,
    action: str,
    resource: str,
    status_code: int,
    now: dt.datetime,
) -> None:
    """Append one audit row chained to the last. No clinical payload: who, what, when, result."""
    with sessions.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            # one appender at a time, or two rows would chain to the same predecessor
            session.execute(text("SELECT pg_advisory_xact_lock(7301)"))
        last = session.execute(
            select(col(AuditLogRow.row_hash)).order_by(col(AuditLogRow.id).desc()).limit(1)
        ).scalar_one_or_none()
        row = AuditLogRow(
            at=now,
            actor=principal.name,
            role=principal.role,
            action=action,
            resource=resource[:256],
            status_code=status_code,
            prev_hash=last or GENESIS_HASH,
            row_hash="",
        )
        row.row_hash = _row_hash(row.prev_hash, row)
        session.add(row)


@dataclass(frozen=True, slots=True)
class ChainReport:
    rows: int
    broken_at: int | None  # the id of the first row that does not verify
    reason: str | None


def verify_chain(sessions: sessionmaker[Session]) -> ChainReport:
    """Recompute every row's hash from its predecessor; the first mismatch is reported."""
    previous = GENESIS_HASH
    count = 0
    with sessions() as session:
        rows = session.execute(select(AuditLogRow).order_by(col(AuditLogRow.id))).scalars()
        for row in rows:
            count += 1
            if row.prev_hash != previous:
                return ChainReport(count, row.id, "prev_hash does not match the previous row")
            if _row_hash(row.prev_hash, row) != row.row_hash:
                return ChainReport(count, row.id, "row_hash does not match the row's content")
            previous = row.row_hash
    return ChainReport(count, None, None)
