"""Webhooks: alerts (and weekly reports coming due, `report_due`) pushed to integration
endpoints, signed, retried, every attempt recorded.

Deliveries are written in the transaction that raises the alert (an outbox) and sent by a task
(`monitor.deliver_webhook`, or the embedded worker's delivery thread) after the commit. Each
send is signed as Standard Webhooks specify (`monitor.webhooks.signing`), once per active
secret of the endpoint; receivers check a signature and reject old timestamps (replay
protection). Delivery is at least once: the `webhook-id` header (the delivery's id) is the same
on every attempt, for receivers to drop repeats.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import func, or_, update
from sqlmodel import Session, col, select

from monitor.alerts.service import alert_view, audiences
from monitor.operations.backoff import exponential_backoff
from monitor.operations.clock import wall_now
from monitor.operations.metrics import WEBHOOK_ATTEMPTS
from monitor.services import Services
from monitor.settings import Settings
from monitor.storage.database import insert_for, is_postgresql
from monitor.storage.models import (
    AlertAckRow,
    AlertRow,
    ReportWindowRow,
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
    WebhookSecretRow,
)
from monitor.webhooks import egress, signing
from monitor.webhooks.outcome import (
    ENDPOINT_DISABLED,
    NO_SECRET,
    SEND_ERRORS,
    Decision,
    Sent,
    answered,
    classify,
    not_answered,
)
from policies.decisions import utc_text, utc_text_or_none

log = logging.getLogger("monitor.webhooks")

TASK_NAME = "monitor.deliver_webhook"
# What the body is, for receivers that route before parsing (not a Standard Webhooks header)
EVENT_HEADER = "X-BIPN-Event"


def active_secrets(session: Session, endpoint_ids: list[int]) -> dict[int, list[WebhookSecretRow]]:
    """Each endpoint's secrets not retired, oldest first."""
    grouped: dict[int, list[WebhookSecretRow]] = {e: [] for e in endpoint_ids}
    if not endpoint_ids:
        return grouped
    rows = session.execute(
        select(WebhookSecretRow)
        .where(
            col(WebhookSecretRow.endpoint_id).in_(endpoint_ids),
            col(WebhookSecretRow.retired_at).is_(None),
        )
        .order_by(col(WebhookSecretRow.id))
    ).scalars()
    for row in rows:
        grouped[row.endpoint_id].append(row)
    return grouped


def endpoint_view(endpoint: WebhookEndpointRow, secrets: list[WebhookSecretRow]) -> dict[str, Any]:
    """An endpoint for `admin`, its active secrets by id only: a secret is shown once, when
    created."""
    return {
        "id": endpoint.id,
        "name": endpoint.name,
        "url": endpoint.url,
        "filters": {
            "severity": json.loads(endpoint.severities),
            "audience": json.loads(endpoint.audiences),
            "unit": json.loads(endpoint.units),
            "kind": json.loads(endpoint.kinds),
            "type": json.loads(endpoint.types),
        },
        "created_at": utc_text(endpoint.created_at),
        "active": endpoint.disabled_at is None,
        "secrets": [{"id": s.id, "created_at": utc_text(s.created_at)} for s in secrets],
    }


def _allowed(values: str, *candidates: str | None) -> bool:
    wanted: list[str] = json.loads(values)
    return not wanted or any(c in wanted for c in candidates)


def takes(endpoint: WebhookEndpointRow, event_type: str) -> bool:
    """The endpoint chose this event type (`filters.type`)."""
    chosen: list[str] = json.loads(endpoint.types)
    return event_type in chosen


def matches(endpoint: WebhookEndpointRow, alert: AlertRow) -> bool:
    """The endpoint takes alerts, and each filter that is set matches; an empty filter matches
    every alert."""
    return (
        takes(endpoint, "alert")
        and _allowed(endpoint.severities, alert.severity)
        and _allowed(endpoint.kinds, alert.kind)
        and _allowed(endpoint.units, alert.unit)
        and _allowed(endpoint.audiences, *audiences(alert))
    )


# built once: fan_out runs in every fold that raises an alert
_ACTIVE_ENDPOINTS = select(WebhookEndpointRow).where(col(WebhookEndpointRow.disabled_at).is_(None))


def fan_out(session: Session, alerts: list[AlertRow], wall: dt.datetime) -> list[int]:
    """One delivery row per (alert, matching active endpoint), in the caller's transaction."""
    if not alerts:
        return []
    endpoints = list(session.execute(_ACTIVE_ENDPOINTS).scalars())
    rows = [
        WebhookDeliveryRow(
            alert_id=alert.id, endpoint_id=endpoint.id, next_attempt_at=wall, created_at=wall
        )
        for alert in alerts
        for endpoint in endpoints
        if alert.id is not None and endpoint.id is not None and matches(endpoint, alert)
    ]
    if not rows:
        return []
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows if row.id is not None]


def matches_report_due(endpoint: WebhookEndpointRow, window: ReportWindowRow) -> bool:
    """The endpoint takes `report_due`, for the window's unit (the only filter that applies:
    severity, audience and kind describe alerts)."""
    return takes(endpoint, "report_due") and _allowed(endpoint.units, window.unit)


def fan_out_report_due(
    session: Session, windows: list[ReportWindowRow], wall: dt.datetime
) -> list[int]:
    """One delivery row per (report window, matching active endpoint), in the caller's
    transaction; a pair already written is left alone (unique), so a second run adds none."""
    if not windows:
        return []
    endpoints = list(session.execute(_ACTIVE_ENDPOINTS).scalars())
    values = [
        {
            "report_window_id": window.id,
            "endpoint_id": endpoint.id,
            "next_attempt_at": wall,
            "created_at": wall,
        }
        for window in windows
        for endpoint in endpoints
        if window.id is not None and matches_report_due(endpoint, window)
    ]
    if not values:
        return []
    inserted = session.execute(
        insert_for(session)(WebhookDeliveryRow)
        .values(values)
        .on_conflict_do_nothing()
        .returning(col(WebhookDeliveryRow.id))
    ).scalars()
    return sorted(inserted)


def report_due_view(window: ReportWindowRow) -> dict[str, Any]:
    """The `report_due` payload: whom to remind, for which week (no other patient data)."""
    return {
        "patient_id": window.patient_id,
        "unit": window.unit,
        "window_start": utc_text(window.window_start),
        "window_end": utc_text(window.window_end),
        "window": window.window_index,
    }


def backoff_s(settings: Settings, attempts: int) -> float:
    """2, 4, 8, ... s (with jitter), capped: the wait after the `attempts`-th failure."""
    return exponential_backoff(
        settings.webhook_backoff_s, settings.webhook_backoff_max_s, attempts - 1, (0.75, 1.0)
    )


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    outcome: Literal["delivered", "retry", "failed", "skipped"]
    retry_in_s: float | None = None


# What a claim covers beyond the attempt's own deadline (the database writes around it): while
# it holds, no other worker may send the same delivery.
CLAIM_MARGIN_S = 30.0


@dataclass(frozen=True, slots=True)
class _Claimed:
    url: str
    secrets: tuple[str, ...] = field(repr=False)  # the active ones, oldest first
    active: bool
    attempt_id: int
    attempt_number: int
    attempts_this_round: int
    body: bytes
    event_type: str = "alert"


def deliver(services: Services, delivery_id: int) -> DeliveryResult:
    """Try one delivery once: claim it, POST it (outside any transaction), classify the
    outcome, record the attempt.

    `skipped` when it is not pending, or another worker holds the claim: a delivery in flight
    is never sent twice (the claim outlasts the attempt, whose one deadline is
    `webhook_timeout_s`). The attempt is recorded as `sending` with its number when claimed,
    so numbers are true even when a worker dies mid-send (its attempt is then marked `lost`).
    Operational times are the wall clock.
    """
    claimed = _claim(services, delivery_id)
    if claimed is None:
        return DeliveryResult("skipped")
    settings = services.settings
    started = time.perf_counter()
    sent = _send(settings, delivery_id, claimed)
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    decision = classify(
        sent,
        attempts=claimed.attempts_this_round,
        max_attempts=settings.webhook_max_attempts,
        backoff_s=backoff_s(settings, claimed.attempts_this_round),
        backoff_max_s=settings.webhook_backoff_max_s,
    )
    _record(services, delivery_id, claimed, sent, decision, elapsed_ms)
    _report(delivery_id, claimed, sent, decision, elapsed_ms)
    return DeliveryResult(decision.outcome, decision.retry_in_s)


def _claim(services: Services, delivery_id: int) -> _Claimed | None:
    """Take the delivery for one attempt, or None (not pending, or claimed by another)."""
    wall = wall_now()
    claim_s = services.settings.webhook_timeout_s + CLAIM_MARGIN_S
    with services.sessions.begin() as session:
        claimed = session.execute(
            update(WebhookDeliveryRow)
            .where(
                col(WebhookDeliveryRow.id) == delivery_id,
                col(WebhookDeliveryRow.status) == "pending",
                or_(
                    col(WebhookDeliveryRow.claimed_until).is_(None),
                    col(WebhookDeliveryRow.claimed_until) < wall,
                ),
            )
            .values(claimed_until=wall + dt.timedelta(seconds=claim_s))
        ).rowcount  # type: ignore[attr-defined]  # a CursorResult
        if not claimed:
            return None
        delivery = session.get(WebhookDeliveryRow, delivery_id)
        assert delivery is not None
        endpoint = session.get(WebhookEndpointRow, delivery.endpoint_id)
        assert endpoint is not None
        keys = active_secrets(session, [delivery.endpoint_id])[delivery.endpoint_id]
        event_type, content = _content(session, delivery)
        # an attempt still `sending` belongs to a worker that died with the claim held
        session.execute(
            update(WebhookAttemptRow)
            .where(
                col(WebhookAttemptRow.delivery_id) == delivery_id,
                col(WebhookAttemptRow.outcome) == "sending",
            )
            .values(outcome="lost", error="the worker stopped during the attempt")
        )
        number = (
            1
            + session.execute(
                select(func.count(col(WebhookAttemptRow.id))).where(
                    col(WebhookAttemptRow.delivery_id) == delivery_id
                )
            ).scalar_one()
        )
        attempt = WebhookAttemptRow(
            delivery_id=delivery_id, attempt=number, at=wall, outcome="sending"
        )
        session.add(attempt)
        session.flush()
        assert attempt.id is not None
        payload = {"type": event_type, "delivery_id": delivery_id, event_type: content}
        return _Claimed(
            url=endpoint.url,
            secrets=tuple(k.secret for k in keys),
            active=endpoint.disabled_at is None,
            attempt_id=attempt.id,
            attempt_number=number,
            attempts_this_round=delivery.attempts + 1,
            body=json.dumps(payload, separators=(",", ":")).encode(),
            event_type=event_type,
        )


def _content(session: Session, delivery: WebhookDeliveryRow) -> tuple[str, dict[str, Any]]:
    """What the delivery carries: its event type and that event's object, read at send time
    (an alert's acknowledgement as of now)."""
    if delivery.report_window_id is not None:
        window = session.get(ReportWindowRow, delivery.report_window_id)
        assert window is not None
        return "report_due", report_due_view(window)
    alert = session.get(AlertRow, delivery.alert_id)
    assert alert is not None
    ack = session.execute(
        select(AlertAckRow).where(col(AlertAckRow.alert_id) == alert.id)
    ).scalar_one_or_none()
    return "alert", alert_view(alert, ack)


def _send(settings: Settings, delivery_id: int, claimed: _Claimed) -> Sent:
    """POST the signed body under the egress policy (`monitor.webhooks.egress`), the
    response read up to `webhook_max_response_bytes`. A disabled endpoint is not called."""
    if not claimed.active:
        return ENDPOINT_DISABLED
    if not claimed.secrets:
        return NO_SECRET
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "bipn-monitor-webhooks/1",
        **signing.headers(claimed.secrets, str(delivery_id), int(time.time()), claimed.body),
        EVENT_HEADER: claimed.event_type,
    }
    try:
        answer = egress.post(
            claimed.url,
            claimed.body,
            headers,
            deadline_s=settings.webhook_timeout_s,
            allowed=settings.webhook_allow_networks,
            max_response_bytes=settings.webhook_max_response_bytes,
        )
    except SEND_ERRORS as exc:
        return not_answered(exc, settings.webhook_timeout_s)
    return answered(answer.status, answer.headers)


def _record(
    services: Services,
    delivery_id: int,
    claimed: _Claimed,
    sent: Sent,
    decision: Decision,
    elapsed_ms: float,
) -> None:
    """The attempt's result and the delivery's new state, in one transaction; the claim is
    released."""
    done = wall_now()
    with services.sessions.begin() as session:
        session.execute(
            update(WebhookAttemptRow)
            .where(col(WebhookAttemptRow.id) == claimed.attempt_id)
            .values(
                status_code=sent.status_code,
                outcome=decision.outcome,
                error=sent.error,
                duration_ms=elapsed_ms,
            )
        )
        session.execute(
            update(WebhookDeliveryRow)
            .where(col(WebhookDeliveryRow.id) == delivery_id)
            .values(**_delivery_state(decision, claimed.attempts_this_round, done))
        )


def _delivery_state(decision: Decision, attempts: int, done: dt.datetime) -> dict[str, Any]:
    """The columns of the delivery row that an attempt changes."""
    values: dict[str, Any] = {"attempts": attempts, "claimed_until": None}
    if decision.outcome == "delivered":
        values |= {"status": "delivered", "delivered_at": done}
    elif decision.outcome == "failed":
        values |= {"status": "failed", "failed_at": done}
    else:
        assert decision.retry_in_s is not None
        values |= {"next_attempt_at": done + dt.timedelta(seconds=decision.retry_in_s)}
    return values | {"last_error": decision.last_error}


def _report(
    delivery_id: int, claimed: _Claimed, sent: Sent, decision: Decision, elapsed_ms: float
) -> None:
    """The attempt's metric and log line (a warning when the delivery failed for good)."""
    WEBHOOK_ATTEMPTS.labels(outcome=decision.outcome).inc()
    log_call = log.warning if decision.outcome == "failed" else log.info
    log_call(
        "webhook attempt",
        extra={
            "delivery_id": delivery_id,
            "attempt": claimed.attempt_number,
            "status_code": sent.status_code,
            "outcome": decision.outcome,
            "ms": elapsed_ms,
        },
    )


def due_for_redrive(services: Services, limit: int = 500) -> list[int]:
    """Pending deliveries whose next attempt is overdue by the re-drive grace period and not
    claimed: their task was lost (a broker outage, a restart). Restamped so the next tick
    does not send them again before another grace period."""
    wall = wall_now()
    stale = wall - dt.timedelta(seconds=services.settings.outbox_redrive_after_s)
    with services.sessions.begin() as session:
        query = (
            select(col(WebhookDeliveryRow.id))
            .where(
                col(WebhookDeliveryRow.status) == "pending",
                col(WebhookDeliveryRow.next_attempt_at) <= stale,
                or_(
                    col(WebhookDeliveryRow.claimed_until).is_(None),
                    col(WebhookDeliveryRow.claimed_until) < wall,
                ),
            )
            .order_by(col(WebhookDeliveryRow.id))
            .limit(limit)
        )
        if is_postgresql(session):
            query = query.with_for_update(skip_locked=True)  # two schedulers split the rows
        ids = list(session.execute(query).scalars())
        if ids:
            session.execute(
                update(WebhookDeliveryRow)
                .where(col(WebhookDeliveryRow.id).in_(ids))
                .values(next_attempt_at=wall)
            )
    return ids


def delivery_view(
    delivery: WebhookDeliveryRow, attempts: list[WebhookAttemptRow]
) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "type": "alert" if delivery.report_window_id is None else "report_due",
        "alert_id": delivery.alert_id,
        "report_window_id": delivery.report_window_id,
        "endpoint_id": delivery.endpoint_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": utc_text_or_none(
            delivery.next_attempt_at if delivery.status == "pending" else None
        ),
        "last_error": delivery.last_error,
        "created_at": utc_text_or_none(delivery.created_at),
        "delivered_at": utc_text_or_none(delivery.delivered_at),
        "failed_at": utc_text_or_none(delivery.failed_at),
        "history": [
            {
                "attempt": a.attempt,
                "at": utc_text_or_none(a.at),
                "status_code": a.status_code,
                "outcome": a.outcome,
                "error": a.error,
                "duration_ms": a.duration_ms,
            }
            for a in attempts
        ],
    }
