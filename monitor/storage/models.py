"""The tables (ARCHITECTURE.md, "Storage"). Times are aware UTC; bodies are JSON text."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from monitor.storage.types import UTCDateTime

# Row ids are 32-bit integers (INTEGER, SERIAL): an id taken from a request is bounded by this,
# or PostgreSQL refuses the comparison ("integer out of range") and the request would fail.
MAX_ROW_ID = 2**31 - 1


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
    # set by `admin` when this one event stops the patient's fold: it is kept (and shown on the
    # patient page) but left out of every fold until released
    quarantined_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    quarantined_by: str | None = Field(default=None, max_length=64)
    quarantine_reason: str | None = Field(default=None, max_length=512)


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
    reassessment_due_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    version: int = 0
    # where the last fold stopped (monitor/processing/checkpoints.py): the next one resumes it
    fold_checkpoint: str | None = Field(default=None, sa_type=Text)


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
    due_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    superseded_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # why: `later_events` (a fold over more events no longer supports it) or `policy_change`
    # (the patient's pack changed); with a policy change, the new pack's matching decision
    superseded_reason: str | None = Field(default=None, max_length=16)
    superseded_by: str | None = Field(default=None, max_length=40)
    # set when the decision came with a policy change (made or revived then): it is in force
    # from that time, not from its own, so the adherence audit does not judge what was done
    # before against advice that did not exist yet
    in_force_from: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class AlertRow(SQLModel, table=True):
    """What people are told. One per decision with an audience (`new`), and at most one each of
    `correction` (the decision no longer holds), `reminder` (a reassessment is due tomorrow) and
    `escalation` (an urgent alert went unacknowledged; it points to that alert).

    The id comes from `alert_sequence`, allocated under a row lock held to commit: ids become
    visible in increasing order, so a feed reader that has seen id N never misses a smaller
    id committed later (the SSE stream resumes from `Last-Event-ID` on that promise).
    """

    __tablename__ = "alert"
    __table_args__ = (
        UniqueConstraint("decision_id", "kind", name="uq_alert_decision_kind"),
        Index("ix_alert_escalation_scan", "severity", "kind", "created_at"),
    )

    id: int | None = Field(
        default=None, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    decision_id: str = Field(max_length=40, index=True)
    kind: str = Field(max_length=16)  # new | correction | reminder | escalation
    action: str = Field(max_length=40)  # the decision's action, for titles and filters
    patient_id: str = Field(max_length=64, index=True)
    unit: str | None = Field(default=None, max_length=64)
    severity: str = Field(max_length=16)
    audience: str = Field(sa_type=Text)  # JSON list
    message: str = Field(sa_type=Text)
    escalates_alert_id: int | None = Field(default=None, foreign_key="alert.id")
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    # the clinical time it is about: the decision's (its trigger's) time, a reminder's due time;
    # none for a monitoring alert (and alerts raised before this was kept)
    clinical_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class AlertSequenceRow(SQLModel, table=True):
    """The last alert id handed out (one row, `name = "alert"`)."""

    __tablename__ = "alert_sequence"

    name: str = Field(primary_key=True, max_length=32)
    value: int = Field(default=0, sa_type=BigInteger)


class AlertAckRow(SQLModel, table=True):
    """Who acknowledged an alert, when, with an optional note. The first acknowledgement
    stands; acknowledging again changes nothing."""

    __tablename__ = "alert_ack"

    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alert.id", unique=True)
    acknowledged_by: str = Field(max_length=128)
    token_name: str = Field(max_length=64)
    acknowledged_at: dt.datetime = Field(sa_type=UTCDateTime)
    note: str | None = Field(default=None, sa_type=Text)
    recorded_at: dt.datetime = Field(sa_type=UTCDateTime)


class SchedulerLeaseRow(SQLModel, table=True):
    """Which scheduler replica may act, until when (renewed every tick by its holder)."""

    __tablename__ = "scheduler_lease"

    name: str = Field(primary_key=True, max_length=32)
    holder: str = Field(max_length=128)
    acquired_at: dt.datetime = Field(sa_type=UTCDateTime)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)


class WebhookEndpointRow(SQLModel, table=True):
    """An integration endpoint registered by `admin`: where alerts go and which ones (its
    signing secrets are `WebhookSecretRow`s). Filters are JSON lists; empty means all."""

    __tablename__ = "webhook_endpoint"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    url: str = Field(max_length=2048)
    severities: str = Field(default="[]", sa_type=Text)
    audiences: str = Field(default="[]", sa_type=Text)
    units: str = Field(default="[]", sa_type=Text)
    kinds: str = Field(default="[]", sa_type=Text)
    # the event types sent (`alert`, `report_due`); endpoints registered before there was a
    # choice get alerts only
    types: str = Field(
        default='["alert"]', sa_type=Text, sa_column_kwargs={"server_default": '["alert"]'}
    )
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    disabled_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookSecretRow(SQLModel, table=True):
    """A signing secret of an endpoint (`whsec_...`), kept as given: signing needs it (HMAC).
    Every active one (`retired_at` unset) signs each request, so a receiver can move to a new
    secret before the old one is retired; an endpoint always keeps at least one."""

    __tablename__ = "webhook_secret"

    id: int | None = Field(default=None, primary_key=True)
    endpoint_id: int = Field(foreign_key="webhook_endpoint.id", index=True)
    secret: str = Field(max_length=512)  # a migrated pre-whsec_ secret is longer than 94
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    retired_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookDeliveryRow(SQLModel, table=True):
    """One event to one endpoint: an alert (`alert_id`) or a weekly report coming due
    (`report_window_id`), written in the transaction that raised it (an outbox), sent by a task.

    status: `pending` (to send; `next_attempt_at` says when), `delivered`, `failed` (retries
    exhausted or refused for good: shown to `admin`, who may retry it)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("alert_id", "endpoint_id", name="uq_delivery_alert_endpoint"),
        UniqueConstraint(
            "report_window_id", "endpoint_id", name="uq_delivery_report_window_endpoint"
        ),
        Index("ix_delivery_open", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    alert_id: int | None = Field(default=None, foreign_key="alert.id")
    report_window_id: int | None = Field(default=None, foreign_key="report_window.id")
    endpoint_id: int = Field(foreign_key="webhook_endpoint.id", index=True)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: dt.datetime = Field(sa_type=UTCDateTime)
    claimed_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    delivered_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    failed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class ReportWindowRow(SQLModel, table=True):
    """One week in which a patient on a course is asked to report their symptoms (issue 16):
    window k of the course enrolled at `enrolled_at` is [enrolled_at + 7k days, + 7 days).
    Opened by the scheduler while the course is on treatment, held or in the coasting watch;
    `reported_at` is the time of the first patient report in it, `notified_at` when its
    `report_due` webhooks were written (unset: reported before it opened, or opened late)."""

    __tablename__ = "report_window"
    __table_args__ = (
        UniqueConstraint("patient_id", "enrolled_at", "window_index", name="uq_report_window"),
        Index("ix_report_window_open", "reported_at", "window_end"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(max_length=64, index=True)
    unit: str | None = Field(default=None, max_length=64)
    enrolled_at: dt.datetime = Field(sa_type=UTCDateTime)
    window_index: int
    window_start: dt.datetime = Field(sa_type=UTCDateTime)
    window_end: dt.datetime = Field(sa_type=UTCDateTime)
    reported_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    notified_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


class WebhookAttemptRow(SQLModel, table=True):
    """Every try of a delivery: when, the HTTP status (or the error), how long it took."""

    __tablename__ = "webhook_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="webhook_delivery.id", index=True)
    attempt: int
    at: dt.datetime = Field(sa_type=UTCDateTime)
    status_code: int | None = None
    outcome: str = Field(max_length=16)  # delivered | retry | failed
    error: str | None = Field(default=None, sa_type=Text)
    duration_ms: float = 0.0


class DeadLetterRow(SQLModel, table=True):
    """Work that could not be done, with the reason; `admin` lists and retries it. Open while
    `retried_at` is unset: set by a retry, a quarantine, or the patient's next successful fold
    (its monitoring runs again)."""

    __tablename__ = "dead_letter"

    id: int | None = Field(default=None, primary_key=True)
    task: str = Field(max_length=64)
    patient_id: str | None = Field(default=None, max_length=256, index=True)
    reason: str = Field(max_length=64)
    error: str = Field(sa_type=Text)
    attempts: int = 0
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    retried_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    event_id: str | None = Field(default=None, max_length=128)  # the event that failed, if known


class ApiTokenRow(SQLModel, table=True):
    """A bearer token, stored only as its SHA-256."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    role: str = Field(max_length=16)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # a JSON list of the units the token is bound to; none: every unit
    units: str | None = Field(default=None, sa_type=Text)


class PatientInviteRow(SQLModel, table=True):
    """A link that lets one patient report symptoms (monitor/intake): only the SHA-256 of its
    secret is kept, as for API tokens; the secret itself is shown once, in the link."""

    __tablename__ = "patient_invite"

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(max_length=64, index=True)
    unit: str | None = Field(default=None, max_length=64)  # the course's unit when invited
    secret_hash: str = Field(max_length=64, unique=True)
    created_by: str = Field(max_length=64)  # the inviting token's name (never a person's)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuditLogRow(SQLModel, table=True):
    """Append-only access log: who did what, when; each row chained to the previous by a keyed
    hash (`scheme` 2, see `monitor.auth.audit`; 1: rows written before the chain was keyed)."""

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
    scheme: int = Field(default=2, sa_column_kwargs={"server_default": "1"})


class CdsCardRow(SQLModel, table=True):
    """A CDS Hooks card the service answered (issue 6): kept so feedback can be matched to it
    and the adherence report can count cards and what became of them. `unit` is the course's
    unit when the card was issued (the report's unit filter); `suggestions` is the JSON list of
    the card's suggestion uuids (accepted feedback must name one of them)."""

    __tablename__ = "cds_card"

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(max_length=36, unique=True)
    service_id: str = Field(max_length=64)
    hook: str = Field(max_length=32)
    hook_instance: str = Field(max_length=128)
    patient_id: str = Field(max_length=64, index=True)
    unit: str | None = Field(default=None, max_length=64)
    order_ref: str | None = Field(default=None, max_length=128)
    indicator: str = Field(max_length=16)  # info | warning | critical
    rule: str = Field(max_length=8)
    policy: str = Field(max_length=64)
    decision_id: str | None = Field(default=None, max_length=40)
    suggestions: str = Field(default="[]", sa_type=Text)
    principal: str = Field(max_length=64)
    created_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)


class CdsFeedbackRow(SQLModel, table=True):
    """What the clinician did with a card, as the CDS client reported it: `accepted` (with the
    suggestion uuids) or `overridden` (with an optional reason coding and comment). A card may
    get several; the latest `outcome_at` stands."""

    __tablename__ = "cds_feedback"

    id: int | None = Field(default=None, primary_key=True)
    card_id: int = Field(foreign_key="cds_card.id", index=True)
    outcome: str = Field(max_length=16)  # accepted | overridden
    accepted_suggestions: str = Field(default="[]", sa_type=Text)
    override_system: str | None = Field(default=None, max_length=256)
    override_code: str | None = Field(default=None, max_length=64)
    override_display: str | None = Field(default=None, max_length=256)
    override_comment: str | None = Field(default=None, sa_type=Text)
    outcome_at: dt.datetime = Field(sa_type=UTCDateTime)
    received_at: dt.datetime = Field(sa_type=UTCDateTime)
    principal: str = Field(max_length=64)


class CdsJwtRow(SQLModel, table=True):
    """A CDS Hooks JWT already used (`iss`, `jti`), kept until it expires: the same token
    presented again is a replay and is refused, whichever API process sees it."""

    __tablename__ = "cds_jwt"
    __table_args__ = (UniqueConstraint("issuer", "jti", name="uq_cds_jwt_issuer_jti"),)

    id: int | None = Field(default=None, primary_key=True)
    issuer: str = Field(max_length=256)
    jti: str = Field(max_length=256)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)
