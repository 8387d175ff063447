"""Webhook administration over HTTP (role `admin`): endpoints, deliveries, retries.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

import datetime as dt
import json
import secrets
from collections.abc import Callable
from typing import Annotated, Any, Literal

import httpcore
from fastapi import Depends, FastAPI, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator
from sqlmodel import col, select

from monitor.alerts.router import Unit
from monitor.alerts.service import AlertAudience, AlertKind
from monitor.auth.tokens import Principal
from monitor.services import Services
from monitor.settings import Settings
from monitor.storage.models import (
    MAX_ROW_ID,
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
)
from monitor.webhooks import egress
from monitor.webhooks.delivery import delivery_view, endpoint_view
from policies.decisions import Severity

ID = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


class WebhookFilters(BaseModel):
    """Which alerts go to the endpoint; an empty list means all."""

    model_config = ConfigDict(extra="forbid")

    severity: list[Severity] = []
    audience: list[AlertAudience] = []
    unit: list[Unit] = []
    kind: list[AlertKind] = []


class WebhookRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")]
    url: AnyHttpUrl
    secret: Annotated[str, Field(min_length=16, max_length=256)] | None = Field(
        default=None, description="HMAC key, 16+ characters; omitted: one is generated"
    )
    filters: WebhookFilters = WebhookFilters()

    @field_validator("url")
    @classmethod
    def _plain_url(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if value.username or value.password:
            raise ValueError("credentials in the URL would be stored and logged: use the secret")
        if len(str(value)) > 2048:
            raise ValueError("longer than 2048 characters")
        return value


def destination_refusal(url: AnyHttpUrl, settings: Settings) -> str | None:
    """Why webhooks may not call this URL (`monitor.webhooks.egress`), checked at registration
    as far as it can be: the host as written, then what it resolves to now (a name that does not
    resolve yet is accepted; every delivery checks again, after its own resolution)."""
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


def add_webhook_routes(
    app: FastAPI, services: Services, require: Callable[..., Callable[..., Principal]]
) -> None:
    """The admin's webhook routes: endpoints (register, list, disable), then deliveries
    (list, retry)."""
    _add_endpoint_routes(app, services, require)
    _add_delivery_routes(app, services, require)


def _add_endpoint_routes(
    app: FastAPI, services: Services, require: Callable[..., Callable[..., Principal]]
) -> None:
    def now() -> dt.datetime:
        return services.settings.now()

    def audit(principal: Principal, action: str, resource: str, status: int) -> None:
        services.audit.record(principal, action, resource, status, now())

    @app.post("/v1/admin/webhooks", status_code=201, summary="Register a webhook endpoint")
    def register_webhook(
        registration: WebhookRegistration,
        principal: Annotated[Principal, Depends(require("admin"))],
    ) -> JSONResponse:
        refused = destination_refusal(registration.url, services.settings)
        if refused is not None:
            audit(principal, "POST /v1/admin/webhooks", "webhook", 422)
            return JSONResponse(
                status_code=422,
                content={
                    "detail": "invalid request",
                    "errors": [{"field": "url", "message": refused}],
                },
            )
        secret = registration.secret or secrets.token_urlsafe(32)
        filters = registration.filters
        with services.sessions.begin() as session:
            row = WebhookEndpointRow(
                name=registration.name,
                url=str(registration.url),
                secret=secret,
                severities=json.dumps(filters.severity),
                audiences=json.dumps(filters.audience),
                units=json.dumps(filters.unit),
                kinds=json.dumps(filters.kind),
                created_at=now(),
            )
            session.add(row)
            session.flush()
            view = endpoint_view(row)
        audit(principal, "POST /v1/admin/webhooks", f"webhook:{view['id']}", 201)
        # the secret is shown this once (the receiver needs it); never listed again
        return JSONResponse(status_code=201, content={**view, "secret": secret})

    @app.get("/v1/admin/webhooks", summary="Registered webhook endpoints (no secrets)")
    def list_webhooks(
        principal: Annotated[Principal, Depends(require("admin"))],
    ) -> dict[str, Any]:
        with services.sessions() as session:
            rows = list(
                session.execute(
                    select(WebhookEndpointRow).order_by(col(WebhookEndpointRow.id))
                ).scalars()
            )
        audit(principal, "GET /v1/admin/webhooks", "webhooks", 200)
        return {"webhooks": [endpoint_view(row) for row in rows]}

    @app.delete("/v1/admin/webhooks/{webhook_id}", summary="Disable an endpoint")
    def disable_webhook(
        webhook_id: ID, principal: Annotated[Principal, Depends(require("admin"))]
    ) -> dict[str, Any]:
        with services.sessions.begin() as session:
            row = session.get(WebhookEndpointRow, webhook_id)
            if row is None:
                raise HTTPException(404, f"no webhook {webhook_id}")
            if row.disabled_at is None:
                row.disabled_at = now()
            view = endpoint_view(row)
        audit(principal, "DELETE /v1/admin/webhooks/{webhook_id}", f"webhook:{webhook_id}", 200)
        return view


def _add_delivery_routes(
    app: FastAPI, services: Services, require: Callable[..., Callable[..., Principal]]
) -> None:
    def audit(principal: Principal, action: str, resource: str, status: int) -> None:
        services.audit.record(principal, action, resource, status, services.settings.now())

    @app.get("/v1/admin/webhook-deliveries", summary="Deliveries and their attempts")
    def list_deliveries(
        principal: Annotated[Principal, Depends(require("admin"))],
        status: Literal["pending", "delivered", "failed"] | None = None,
        webhook_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        query = select(WebhookDeliveryRow).order_by(col(WebhookDeliveryRow.id).desc())
        if status is not None:
            query = query.where(col(WebhookDeliveryRow.status) == status)
        if webhook_id is not None:
            query = query.where(col(WebhookDeliveryRow.endpoint_id) == webhook_id)
        with services.sessions() as session:
            rows = list(session.execute(query.limit(limit)).scalars())
            attempts = _attempts(session, [r.id for r in rows if r.id is not None])
        audit(principal, "GET /v1/admin/webhook-deliveries", "deliveries", 200)
        return {"deliveries": [delivery_view(r, attempts.get(r.id or 0, [])) for r in rows]}

    @app.post(
        "/v1/admin/webhook-deliveries/{delivery_id}/retry",
        status_code=202,
        summary="Send a failed delivery again (a fresh round of attempts)",
    )
    def retry_delivery(
        delivery_id: ID, principal: Annotated[Principal, Depends(require("admin"))]
    ) -> dict[str, Any]:
        wall = dt.datetime.now(dt.UTC)
        with services.sessions.begin() as session:
            row = session.get(WebhookDeliveryRow, delivery_id)
            if row is None:
                raise HTTPException(404, f"no webhook delivery {delivery_id}")
            if row.status != "failed":
                raise HTTPException(409, f"delivery {delivery_id} is {row.status}, not failed")
            endpoint = session.get(WebhookEndpointRow, row.endpoint_id)
            if endpoint is None or endpoint.disabled_at is not None:
                raise HTTPException(409, f"webhook {row.endpoint_id} is disabled")
            row.status = "pending"
            row.attempts = 0
            row.next_attempt_at = wall
            row.failed_at = None
            row.claimed_until = None
        audit(
            principal,
            "POST /v1/admin/webhook-deliveries/{delivery_id}/retry",
            f"delivery:{delivery_id}",
            202,
        )
        if services.dispatcher is not None:
            services.dispatcher.enqueue_deliveries([delivery_id])
        return {"delivery_id": delivery_id, "status": "pending"}


def _attempts(session: Any, ids: list[int]) -> dict[int, list[WebhookAttemptRow]]:
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
