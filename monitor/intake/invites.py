"""Invite links: one patient's permission to send symptom reports, for a limited time.

The secret is random, shown once (in the link's fragment and its QR code) and stored only as
its SHA-256, as API tokens are. It authenticates exactly one thing: a report about its patient.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import secrets
from dataclasses import dataclass
from typing import Literal

import segno
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select

from monitor.storage.models import PatientInviteRow
from policies.decisions import utc_text, utc_text_or_none

INVITE_PREFIX = "bmr_"  # told apart from API tokens (bm_) before any lookup
REPORT_PAGE = "/report"

InviteState = Literal["active", "revoked", "expired"]


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


LINK_UNKNOWN = "This link is not valid; ask your care team for a new one."


def is_invite_secret(credentials: str) -> bool:
    return credentials.startswith(INVITE_PREFIX)


@dataclass(frozen=True, slots=True)
class NewInvite:
    row: PatientInviteRow
    secret: str


def create_invite(
    sessions: sessionmaker[Session],
    patient_id: str,
    unit: str | None,
    created_by: str,
    now: dt.datetime,
    days: int,
) -> NewInvite:
    secret = INVITE_PREFIX + secrets.token_urlsafe(32)
    row = PatientInviteRow(
        patient_id=patient_id,
        unit=unit,
        secret_hash=hash_secret(secret),
        created_by=created_by[:64],
        created_at=now,
        expires_at=now + dt.timedelta(days=days),
    )
    with sessions.begin() as session:
        session.add(row)
        session.flush()
        session.expunge(row)
    return NewInvite(row, secret)


def invite_state(row: PatientInviteRow, now: dt.datetime) -> InviteState:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at <= now:
        return "expired"
    return "active"


def invite_view(row: PatientInviteRow, now: dt.datetime) -> dict[str, object]:
    """An invite as the API lists it: never the secret or its hash."""
    return {
        "id": row.id,
        "patient_id": row.patient_id,
        "state": invite_state(row, now),
        "created_by": row.created_by,
        "created_at": utc_text(row.created_at),
        "expires_at": utc_text(row.expires_at),
        "revoked_at": utc_text_or_none(row.revoked_at),
        "last_used_at": utc_text_or_none(row.last_used_at),
    }


def list_invites(
    sessions: sessionmaker[Session], patient_id: str, now: dt.datetime
) -> list[dict[str, object]]:
    with sessions() as session:
        rows = session.execute(
            select(PatientInviteRow)
            .where(col(PatientInviteRow.patient_id) == patient_id)
            .order_by(col(PatientInviteRow.id))
        ).scalars()
        return [invite_view(row, now) for row in rows]


def revoke_invite(
    sessions: sessionmaker[Session], patient_id: str, invite_id: int, now: dt.datetime
) -> dict[str, object] | None:
    """Revoke the patient's invite (a revoked one keeps its first revocation time); None when
    the patient has no such invite."""
    with sessions.begin() as session:
        row = session.get(PatientInviteRow, invite_id)
        if row is None or row.patient_id != patient_id:
            return None
        if row.revoked_at is None:
            row.revoked_at = now
        return invite_view(row, now)


def find_invite(sessions: sessionmaker[Session], secret: str) -> PatientInviteRow | None:
    with sessions() as session:
        row = session.execute(
            select(PatientInviteRow).where(col(PatientInviteRow.secret_hash) == hash_secret(secret))
        ).scalar_one_or_none()
        if row is not None:
            session.expunge(row)
        return row


def mark_used(session: Session, invite_id: int, now: dt.datetime) -> None:
    row = session.get(PatientInviteRow, invite_id)
    if row is not None:
        row.last_used_at = now


def invite_url(base_url: str, secret: str) -> str:
    """The link: the secret in the fragment, which browsers never send to a server (no access
    log, proxy or Referer sees it); the page hands it to the API as a bearer."""
    return f"{base_url}{REPORT_PAGE}#{secret}"


def qr_svg(url: str) -> str:
    """The link as a QR code (SVG text, error correction M), to be scanned with a phone."""
    out = io.BytesIO()
    segno.make_qr(url, error="m").save(
        out, kind="svg", scale=6, border=4, xmldecl=False, svgns=True, title="QR code of the link"
    )
    return out.getvalue().decode()
