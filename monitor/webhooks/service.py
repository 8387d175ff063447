"""Webhook administration (no HTTP): register, list, disable endpoints; rotate their signing
secrets; list deliveries with their attempts; send a failed delivery again."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpcore
from pydantic import AnyHttpUrl
from sqlmodel import Session, col, select

from monitor.settings import Settings
from monitor.storage.models import (
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
    WebhookSecretRow,
)
from monitor.webhooks import egress, signing
from monitor.webhooks.delivery import active_secrets, delivery_view, endpoint_view
from monitor.webhooks.schemas import WebhookRegistration
from policies.decisions import utc_text


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
    secret = registration.secret or signing.new_secret()
    filters = registration.filters
    row = WebhookEndpointRow(
        name=registration.name,
        url=str(registration.url),
        severities=json.dumps(filters.severity),
        audiences=json.dumps(filters.audience),
        units=json.dumps(filters.unit),
        kinds=json.dumps(filters.kind),
        types=json.dumps(filters.type),
        created_at=now,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    key = WebhookSecretRow(endpoint_id=row.id, secret=secret, created_at=now)
    session.add(key)
    session.flush()
    return {**endpoint_view(row, [key]), "secret": secret}


def list_endpoints(session: Session) -> list[dict[str, Any]]:
    rows = list(
        session.execute(select(WebhookEndpointRow).order_by(col(WebhookEndpointRow.id))).scalars()
    )
    keys = active_secrets(session, [row.id for row in rows if row.id is not None])
    return [endpoint_view(row, keys[row.id or 0]) for row in rows]


def _view(session: Session, row: WebhookEndpointRow) -> dict[str, Any]:
    assert row.id is not None
    return endpoint_view(row, active_secrets(session, [row.id])[row.id])


def disable_endpoint(
    session: Session, *, webhook_id: int, now: dt.datetime
) -> dict[str, Any] | None:
    """The endpoint, disabled from now on (once: disabling again keeps the first time)."""
    row = session.get(WebhookEndpointRow, webhook_id)
    if row is None:
        return None
    if row.disabled_at is None:
        row.disabled_at = now
    return _view(session, row)


# An endpoint signs every request once per active secret: a few while rotating, not a pile.
MAX_ACTIVE_SECRETS = 5


class SecretRefusedError(Exception):
    """Why a secret cannot be added or retired: 404 (unknown) or 409 (the last one, too
    many). The message names ids only, never a secret."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _locked_endpoint(session: Session, webhook_id: int) -> WebhookEndpointRow:
    """The endpoint, its row locked on PostgreSQL (SQLite serialises writers): two rotations
    at once cannot both pass the checks on the count of active secrets."""
    row = session.get(WebhookEndpointRow, webhook_id, with_for_update=True)
    if row is None:
        raise SecretRefusedError(404, f"no webhook {webhook_id}")
    return row


def add_secret(session: Session, *, webhook_id: int, now: dt.datetime) -> dict[str, Any]:
    """A new generated secret for the endpoint, shown this once; the active ones keep
    signing until retired. Raises `SecretRefusedError`."""
    _locked_endpoint(session, webhook_id)
    active = active_secrets(session, [webhook_id])[webhook_id]
    if len(active) >= MAX_ACTIVE_SECRETS:
        raise SecretRefusedError(
            409,
            f"webhook {webhook_id} already has {len(active)} active secrets, the most allowed: "
            "retire one first (DELETE /v1/admin/webhooks/{id}/secrets/{secret_id})",
        )
    secret = signing.new_secret()
    key = WebhookSecretRow(endpoint_id=webhook_id, secret=secret, created_at=now)
    session.add(key)
    session.flush()
    return {
        "id": key.id,
        "webhook_id": webhook_id,
        "created_at": utc_text(now),
        "secret": secret,
    }


def retire_secret(
    session: Session, *, webhook_id: int, secret_id: int, now: dt.datetime
) -> dict[str, Any]:
    """The endpoint without that secret: it signs nothing from now on (retiring it again
    changes nothing). The last active secret stays. Raises `SecretRefusedError`."""
    endpoint = _locked_endpoint(session, webhook_id)
    key = session.get(WebhookSecretRow, secret_id)
    if key is None or key.endpoint_id != webhook_id:
        raise SecretRefusedError(404, f"webhook {webhook_id} has no secret {secret_id}")
    if key.retired_at is None:
        active = active_secrets(session, [webhook_id])[webhook_id]
        if [k.id for k in active] == [secret_id]:
            raise SecretRefusedError(
                409,
                f"secret {secret_id} is the last active secret of webhook {webhook_id}: add "
                "its successor first (POST /v1/admin/webhooks/{id}/secrets)",
            )
        key.retired_at = now
    return _view(session, endpoint)


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
