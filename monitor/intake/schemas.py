"""What the invite and report routes answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class InviteCreated(BaseModel):
    """A new invite: the link (its secret in the fragment) and its QR code, shown this once."""

    id: int
    url: str
    expires_at: str
    qr_svg: str


class InviteView(BaseModel):
    id: int
    patient_id: str
    state: Literal["active", "revoked", "expired"]
    created_by: str
    created_at: str
    expires_at: str
    revoked_at: str | None
    last_used_at: str | None


class InviteList(BaseModel):
    patient_id: str
    invites: list[InviteView]


class ReportReceived(BaseModel):
    """A report stored: what the page's "Sent" screen says."""

    event_id: str
    received_at: str
    care_team_phone: str | None
