"""Webhook administration over HTTP (role `admin`): endpoints, their secrets, deliveries,
retries.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

from typing import Annotated, Any, Literal

from fastapi import HTTPException, Query
from fastapi.responses import JSONResponse

from monitor.api.deps import AUTH_RESPONSES, Admin, ClockDep, RowIdPath, ServicesDep
from monitor.api.errors import field_problems
from monitor.api.json_body import StrictJsonRouter
from monitor.storage.models import MAX_ROW_ID
from monitor.webhooks import service
from monitor.webhooks.schemas import (
    DeliveryList,
    DeliveryRequeued,
    EndpointList,
    EndpointView,
    NewSecret,
    RegisteredEndpoint,
    WebhookRegistration,
)

router = StrictJsonRouter(tags=["webhooks"], responses=AUTH_RESPONSES)


@router.post(
    "/v1/admin/webhooks",
    status_code=201,
    summary="Register a webhook endpoint",
    response_model=RegisteredEndpoint,
)
def register_webhook(
    registration: WebhookRegistration, principal: Admin, services: ServicesDep, clock: ClockDep
) -> Any:
    action = "POST /v1/admin/webhooks"
    refused = service.destination_refusal(registration.url, services.settings)
    if refused is not None:
        services.audit.record(principal, action, "webhook", 422, clock.now())
        return field_problems(422, [("url", refused)])
    with services.sessions.begin() as session:
        created = service.register_endpoint(session, registration=registration, now=clock.now())
    services.audit.record(principal, action, f"webhook:{created['id']}", 201, clock.now())
    return JSONResponse(status_code=201, content=created)


@router.get(
    "/v1/admin/webhooks",
    summary="Registered webhook endpoints (no secrets)",
    response_model=EndpointList,
)
def list_webhooks(principal: Admin, services: ServicesDep, clock: ClockDep) -> dict[str, Any]:
    with services.sessions() as session:
        webhooks = service.list_endpoints(session)
    services.audit.record(principal, "GET /v1/admin/webhooks", "webhooks", 200, clock.now())
    return {"webhooks": webhooks}


@router.delete(
    "/v1/admin/webhooks/{webhook_id}", summary="Disable an endpoint", response_model=EndpointView
)
def disable_webhook(
    webhook_id: RowIdPath, principal: Admin, services: ServicesDep, clock: ClockDep
) -> dict[str, Any]:
    with services.sessions.begin() as session:
        view = service.disable_endpoint(session, webhook_id=webhook_id, now=clock.now())
    if view is None:
        raise HTTPException(404, f"no webhook {webhook_id}")
    action = "DELETE /v1/admin/webhooks/{webhook_id}"
    services.audit.record(principal, action, f"webhook:{webhook_id}", 200, clock.now())
    return view


@router.post(
    "/v1/admin/webhooks/{webhook_id}/secrets",
    status_code=201,
    summary="Add a signing secret (rotation): shown once, signs beside the active ones",
    response_model=NewSecret,
)
def add_webhook_secret(
    webhook_id: RowIdPath, principal: Admin, services: ServicesDep, clock: ClockDep
) -> dict[str, Any]:
    action = "POST /v1/admin/webhooks/{webhook_id}/secrets"
    try:
        with services.sessions.begin() as session:
            created = service.add_secret(session, webhook_id=webhook_id, now=clock.now())
    except service.SecretRefusedError as refused:
        services.audit.record(
            principal, action, f"webhook:{webhook_id}", refused.status, clock.now()
        )
        raise HTTPException(refused.status, refused.detail) from None
    resource = f"webhook:{webhook_id}/secret:{created['id']}"
    services.audit.record(principal, action, resource, 201, clock.now())
    return created


@router.delete(
    "/v1/admin/webhooks/{webhook_id}/secrets/{secret_id}",
    summary="Retire a signing secret (the last active one stays)",
    response_model=EndpointView,
)
def retire_webhook_secret(
    webhook_id: RowIdPath,
    secret_id: RowIdPath,
    principal: Admin,
    services: ServicesDep,
    clock: ClockDep,
) -> dict[str, Any]:
    action = "DELETE /v1/admin/webhooks/{webhook_id}/secrets/{secret_id}"
    resource = f"webhook:{webhook_id}/secret:{secret_id}"
    try:
        with services.sessions.begin() as session:
            view = service.retire_secret(
                session, webhook_id=webhook_id, secret_id=secret_id, now=clock.now()
            )
    except service.SecretRefusedError as refused:
        services.audit.record(principal, action, resource, refused.status, clock.now())
        raise HTTPException(refused.status, refused.detail) from None
    services.audit.record(principal, action, resource, 200, clock.now())
    return view


@router.get(
    "/v1/admin/webhook-deliveries",
    summary="Deliveries and their attempts",
    response_model=DeliveryList,
)
def list_deliveries(
    principal: Admin,
    services: ServicesDep,
    clock: ClockDep,
    status: Literal["pending", "delivered", "failed"] | None = None,
    webhook_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    with services.sessions() as session:
        deliveries = service.list_deliveries(
            session, status=status, webhook_id=webhook_id, limit=limit
        )
    action = "GET /v1/admin/webhook-deliveries"
    services.audit.record(principal, action, "deliveries", 200, clock.now())
    return {"deliveries": deliveries}


@router.post(
    "/v1/admin/webhook-deliveries/{delivery_id}/retry",
    status_code=202,
    summary="Send a failed delivery again (a fresh round of attempts)",
    response_model=DeliveryRequeued,
)
def retry_delivery(
    delivery_id: RowIdPath, principal: Admin, services: ServicesDep, clock: ClockDep
) -> dict[str, Any]:
    try:
        with services.sessions.begin() as session:
            service.requeue_delivery(session, delivery_id=delivery_id, wall=clock.wall())
    except service.RetryRefusedError as refused:
        raise HTTPException(refused.status, refused.detail) from None
    services.audit.record(
        principal,
        "POST /v1/admin/webhook-deliveries/{delivery_id}/retry",
        f"delivery:{delivery_id}",
        202,
        clock.now(),
    )
    if services.dispatcher is not None:
        services.dispatcher.enqueue_deliveries([delivery_id])
    return {"delivery_id": delivery_id, "status": "pending"}
