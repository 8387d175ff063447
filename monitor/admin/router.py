"""Operators' controls over HTTP (role `admin`): dead letters, quarantined events, API tokens.
Every action is audited, refused or not.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

from typing import Annotated, Any

from fastapi import HTTPException, Query

from monitor.admin import service
from monitor.admin.quarantine import set_quarantine
from monitor.admin.schemas import (
    DeadLetterList,
    DeadLetterRequeued,
    QuarantinedList,
    QuarantineRequest,
    QuarantineView,
    RevokedToken,
    TokenList,
)
from monitor.api.deps import AUTH_RESPONSES, Admin, Clock, ClockDep, RowIdPath, ServicesDep
from monitor.api.json_body import StrictJsonRouter
from monitor.auth.tokens import Principal, find_token, list_tokens, revoke_tokens, token_view
from monitor.patients.service import quarantined_events
from monitor.services import Services
from policies.events import NO_CONTROL

router = StrictJsonRouter(tags=["admin"], responses=AUTH_RESPONSES)

# --- dead letters -----------------------------------------------------------------------------


@router.get(
    "/v1/admin/dead-letters", summary="Work that failed for good", response_model=DeadLetterList
)
def list_dead_letters(
    principal: Admin,
    services: ServicesDep,
    clock: ClockDep,
    include_retried: bool = False,
) -> dict[str, Any]:
    with services.sessions() as session:
        rows = service.list_dead_letters(session, include_retried=include_retried)
    services.audit.record(principal, "GET /v1/admin/dead-letters", "dead_letters", 200, clock.now())
    return {"dead_letters": rows}


@router.post(
    "/v1/admin/dead-letters/{dead_letter_id}/retry",
    status_code=202,
    response_model=DeadLetterRequeued,
)
def retry_dead_letter(
    dead_letter_id: RowIdPath, principal: Admin, services: ServicesDep, clock: ClockDep
) -> dict[str, Any]:
    try:
        with services.sessions.begin() as session:
            patient_id = service.retry_dead_letter(
                session, dead_letter_id=dead_letter_id, now=clock.now()
            )
    except service.DeadLetterNotFoundError:
        raise HTTPException(404, f"no dead letter {dead_letter_id}") from None
    services.audit.record(
        principal,
        "POST /v1/admin/dead-letters/{dead_letter_id}/retry",
        f"dead_letter:{dead_letter_id}",
        202,
        clock.now(),
    )
    if patient_id and services.dispatcher is not None:
        services.dispatcher.enqueue([patient_id])
    return {"dead_letter_id": dead_letter_id, "status": "requeued"}


# --- quarantined events -----------------------------------------------------------------------


def _quarantine(
    services: Services,
    clock: Clock,
    event_id: str,
    principal: Principal,
    *,
    quarantined: bool,
    reason: str | None,
) -> dict[str, Any]:
    action = f"{'POST' if quarantined else 'DELETE'} /v1/admin/quarantined-events"
    result = set_quarantine(
        services.sessions,
        event_id,
        quarantined=quarantined,
        by=principal.name,
        reason=reason,
        now=clock.now(),
    )
    status = 200 if result is not None else 404
    services.audit.record(principal, action, f"event:{event_id}"[:256], status, clock.now())
    if result is None:
        raise HTTPException(404, f"no event {event_id!r}")
    if result.changed and services.dispatcher is not None:
        services.dispatcher.enqueue([result.patient_id])  # after the commit
    return result.view()


@router.post(
    "/v1/admin/quarantined-events",
    summary="Set one event aside: kept and shown, left out of every fold (the rest of its "
    "patient's events are folded again at once)",
    response_model=QuarantineView,
)
def quarantine_event(
    body: QuarantineRequest, principal: Admin, services: ServicesDep, clock: ClockDep
) -> dict[str, Any]:
    return _quarantine(
        services, clock, body.event_id, principal, quarantined=True, reason=body.reason
    )


@router.delete(
    "/v1/admin/quarantined-events",
    summary="Release a quarantined event (its patient is folded again with it)",
    response_model=QuarantineView,
)
def release_event(
    event_id: Annotated[str, Query(min_length=1, max_length=128, pattern=NO_CONTROL)],
    principal: Admin,
    services: ServicesDep,
    clock: ClockDep,
) -> dict[str, Any]:
    return _quarantine(services, clock, event_id, principal, quarantined=False, reason=None)


@router.get(
    "/v1/admin/quarantined-events",
    summary="Events set aside, every patient",
    response_model=QuarantinedList,
)
def list_quarantined(principal: Admin, services: ServicesDep, clock: ClockDep) -> dict[str, Any]:
    with services.sessions() as session:
        found = quarantined_events(session)
    services.audit.record(
        principal, "GET /v1/admin/quarantined-events", "quarantined_events", 200, clock.now()
    )
    return {"quarantined_events": found}


# --- API tokens -------------------------------------------------------------------------------


@router.get(
    "/v1/admin/tokens",
    summary="API tokens (never the tokens or their hashes)",
    response_model=TokenList,
)
def list_api_tokens(
    principal: Admin,
    services: ServicesDep,
    clock: ClockDep,
    all: Annotated[bool, Query(description="revoked and expired ones too")] = False,
) -> dict[str, Any]:
    tokens = list_tokens(services.sessions, clock.now(), include_inactive=all)
    services.audit.record(principal, "GET /v1/admin/tokens", "tokens", 200, clock.now())
    return {"tokens": tokens}


@router.post(
    "/v1/admin/tokens/{token_id}/revoke",
    summary="Revoke a token: refused from now on, its open alert streams end",
    response_model=RevokedToken,
)
def revoke_api_token(
    token_id: RowIdPath, principal: Admin, services: ServicesDep, clock: ClockDep
) -> dict[str, Any]:
    revoked = revoke_tokens(services.sessions, clock.now(), token_id=token_id)
    existing = revoked[0] if revoked else None
    if existing is None:
        row = find_token(services.sessions, token_id)
        existing = token_view(row, clock.now()) if row is not None else None
    status = 200 if existing is not None else 404
    action = "POST /v1/admin/tokens/{token_id}/revoke"
    services.audit.record(principal, action, f"token:{token_id}", status, clock.now())
    if existing is None:
        raise HTTPException(404, f"no token {token_id}")
    return {**existing, "already_revoked": not revoked}
