"""Webhook administration (no HTTP): register, list, disable endpoints; list deliveries with
their attempts; send a failed delivery again."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Any

import httpcore
from pydantic import AnyHttpUrl
from sqlmodel import Session, col, select

from monitor.settings import Settings
from monitor.storage.models import WebhookAttemptRow, WebhookDeliveryRow, WebhookEndpointRow
from monitor.webhooks import egress
from monitor.webhooks.delivery import delivery_view, endpoint_view
from monitor.webhooks.schemas import WebhookRegistration


def destination_refusal(url: AnyHttpUrl, settings: Settings) -> str | None:
    """Why webhooks may not call this URL (`monitor.webhooks.egress`), checked at registration
    as far as it can be: the host as written, then what it resolves to now (a name that does
    not resolve yet is accepted; every delivery checks again, after its own resolution)."""
    host = url.host or ""
    allowed = settings.webhook_allow_networks
    why = egress.host_refusal(host, allowed)
    if why is None:
        try:
            addresses = egress.resolve(host, url.port or 443, timeout=2.0)
        except (egress.DeadlineExceededError, httpcore.ConnectError):
            return None
        reasons = [r for r in (egress.refusal(a, allowed) for a in addresses) if r is not None]
        why = f"{host} resolves to {reasons[0]}" if reasons else None
    if why is None:
        return None
    return (
        f"refused: {why}. Webhooks may not reach loopback, link-local, private, shared or "
        "metadata addresses; allow an on-premise receiver's network with "
        "MONITOR_WEBHOOK_ALLOW_NETWORKS"
    )


def register_endpoint(
    session: Session, *, registration: WebhookRegistration, now: dt.datetime
) -> dict[str, Any]:
    """The new endpoint, with its secret (the one time it is shown: the receiver needs it)."""
    secret = registration.secret or secrets.token_urlsafe(32)
    filters = registration.filters
    row = WebhookEndpointRow(
        name=registration.name,
        url=str(registration.url),
        secret=secret,
        severities=json.dumps(filters.severity),
        audiences=json.dumps(filters.audience),
        units=json.dumps(filters.unit),
        kinds=json.dumps(filters.kind),
        created_at=now,
    )
    session.add(row)
    session.flush()
    return {**endpoint_view(row), "secret": secret}


def list_endpoints(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(select(WebhookEndpointRow).order_by(col(WebhookEndpointRow.id)))
    return [endpoint_view(row) for row in rows.scalars()]


def disable_endpoint(
    session: Session, *, webhook_id: int, now: dt.datetime
) -> dict[str, Any] | None:
    """The endpoint, disabled from now on (once: disabling again keeps the first time)."""
    row = session.get(WebhookEndpointRow, webhook_id)
    if row is None:
        return None
    if row.disabled_at is None:
        row.disabled_at = now
    return endpoint_view(row)


def list_deliveries(
    session: Session, *, status: str | None, webhook_id: int | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first, each with its attempts in order."""
    query = select(WebhookDeliveryRow).order_by(col(WebhookDeliveryRow.id).desc())
    if status is not None:
        query = query.where(col(WebhookDeliveryRow.status) == status)
    if webhook_id is not None:
        query = query.where(col(WebhookDeliveryRow.endpoint_id) == webhook_id)
    rows = list(session.execute(query.limit(limit)).scalars())
    attempts = _attempts(session, [r.id for r in rows if r.id is not None])
    return [delivery_view(r, attempts.get(r.id or 0, [])) for r in rows]


class RetryRefusedError(Exception):
    """Why a delivery cannot be sent again: 404 (unknown) or 409 (not failed, or disabled)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def requeue_delivery(session: Session, *, delivery_id: int, wall: dt.datetime) -> None:
    """A failed delivery pending again, with a fresh round of attempts from `wall` (the real
    time: deliveries are scheduled against receivers' clocks). Raises `RetryRefusedError`."""
    row = session.get(WebhookDeliveryRow, delivery_id)
    if row is None:
        raise RetryRefusedError(404, f"no webhook delivery {delivery_id}")
    if row.status != "failed":
        raise RetryRefusedError(409, f"delivery {delivery_id} is {row.status}, not failed")
    endpoint = session.get(WebhookEndpointRow, row.endpoint_id)
    if endpoint is None or endpoint.disabled_at is not None:
        raise RetryRefusedError(409, f"webhook {row.endpoint_id} is disabled")
    row.status = "pending"
    row.attempts = 0
    row.next_attempt_at = wall
    row.failed_at = None
    row.claimed_until = None


def _attempts(session: Session, ids: list[int]) -> dict[int, list[WebhookAttemptRow]]:
    grouped: dict[int, list[WebhookAttemptRow]] = {}
    if not ids:
        return grouped
    rows = session.execute(
        select(WebhookAttemptRow)
        .where(col(WebhookAttemptRow.delivery_id).in_(ids))
        .order_by(col(WebhookAttemptRow.id))
    ).scalars()
    for row in rows:
        grouped.setdefault(row.delivery_id, []).append(row)
    return grouped
