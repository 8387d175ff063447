"""The tables (ARCHITECTURE.md, "Storage"). Times are aware UTC; bodies are JSON text."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from monitor.storage.types import UTCDateTime


class EventRow(SQLModel, table=True):
    """An accepted event: its validated body as received (offsets kept) and indexed columns."""

    __tablename__ = "event"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=128, unique=True)
    patient_id: str = Field(max_length=64, index=True)
    type: str = Field(max_length=32)
    occurred_at: dt.datetime = Field(sa_type=UTCDateTime)
    received_at: dt.datetime = Field(sa_type=UTCDateTime)
    body: str = Field(sa_type=Text)
    body_hash: str = Field(max_length=64)


class OutboxRow(SQLModel, table=True):
    """Work to dispatch, written in the event's transaction: nothing accepted is ever lost.

    `processed_at` is set by the worker that folded the event; rows still open after
    `outbox_redrive_after_s` are enqueued again by the scheduler.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_open", "processed_at", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    event_pk: int = Field(foreign_key="event.id", unique=True)
    patient_id: str = Field(max_length=64, index=True)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    enqueued_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    enqueue_count: int = 0
    processed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    dead_letter_id: int | None = Field(default=None, foreign_key="dead_letter.id")


class PatientRow(SQLModel, table=True):
    """The per-patient lock row, the cached course state, and the next timer's due time."""

    __tablename__ = "patient"

    patient_id: str = Field(primary_key=True, max_length=64)
    status: str = Field(default="none", max_length=16)
    state: str = Field(default="{}", sa_type=Text)
    next_timer_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    processed_event_pk: int = 0
    evaluated_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    evaluated_policy: str | None = Field(default=None, max_length=64)
    timer_enqueued_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = 0


class DecisionRow(SQLModel, table=True):
    """A decision; `superseded_at` is set when a later fold no longer supports it."""

    __tablename__ = "decision"
    __table_args__ = (Index("ix_decision_patient_current", "patient_id", "superseded_at"),)

    id: int | None = Field(default=None, primary_key=True)
    decision_id: str = Field(max_length=40, unique=True)
    patient_id: str = Field(max_length=64)
    at: dt.datetime = Field(sa_type=UTCDateTime)
    action: str = Field(max_length=40)
    severity: str = Field(max_length=16)
    rule: str = Field(max_length=8)
    policy: str = Field(max_length=64)
    body: str = Field(sa_type=Text)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    superseded_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class AlertRow(SQLModel, table=True):
    """What people are told: one per decision with an audience, and one per correction."""

    __tablename__ = "alert"
    __table_args__ = (UniqueConstraint("decision_id", "kind", name="uq_alert_decision_kind"),)

    id: int | None = Field(default=None, primary_key=True)
    decision_id: str = Field(max_length=40, index=True)
    kind: str = Field(max_length=16)  # new | correction
    patient_id: str = Field(max_length=64, index=True)
    unit: str | None = Field(default=None, max_length=64)
    severity: str = Field(max_length=16)
    audience: str = Field(sa_type=Text)  # JSON list
    message: str = Field(sa_type=Text)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


class DeadLetterRow(SQLModel, table=True):
    """Work that could not be done, with the reason; `admin` lists and retries it."""

    __tablename__ = "dead_letter"

    id: int | None = Field(default=None, primary_key=True)
    task: str = Field(max_length=64)
    patient_id: str | None = Field(default=None, max_length=256, index=True)
    reason: str = Field(max_length=64)
    error: str = Field(sa_type=Text)
    attempts: int = 0
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    retried_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApiTokenRow(SQLModel, table=True):
    """A bearer token, stored only as its SHA-256."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    role: str = Field(max_length=16)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuditLogRow(SQLModel, table=True):
    """Append-only access log: who did what, when; each row chained to the previous by hash."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(sa_type=UTCDateTime)
    actor: str = Field(max_length=64)
    role: str = Field(max_length=16)
    action: str = Field(max_length=128)
    resource: str = Field(max_length=256)
    status_code: int
    prev_hash: str = Field(max_length=64)
    row_hash: str = Field(max_length=64)
