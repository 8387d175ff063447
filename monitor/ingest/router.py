"""`POST /v1/events` (role `ingest`): events in, durable before the 202.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends
from fastapi.responses import JSONResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from monitor.api.deps import AUTH_RESPONSES, ClockDep, Ingest, JsonBody, ServicesDep, json_body
from monitor.api.errors import problem
from monitor.api.json_body import StrictJsonRouter
from monitor.auth.tokens import Principal
from monitor.ingest.schemas import (
    BATCH_SCHEMA,
    EventsAccepted,
    EventsRefused,
    EventStatus,
    events_of,
)
from monitor.ingest.service import EventConflictError, IngestResult, accept_events, dispatch
from monitor.operations.metrics import EVENTS_REJECTED
from monitor.services import Services

router = StrictJsonRouter(tags=["events"], responses=AUTH_RESPONSES)
OPENAPI_COMPONENTS = BATCH_SCHEMA.get("$defs", {})
ACTION = "POST /v1/events"


@router.post(
    "/v1/events",
    status_code=202,
    response_model=EventsAccepted,
    summary="Accept one event or a batch (durable before 202)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"anyOf": BATCH_SCHEMA["anyOf"]}}},
        }
    },
    responses={
        400: {"description": "the body is not JSON"},
        409: {"description": "an event_id reused with another body"},
        413: {"description": "body too large"},
        415: {"description": "not JSON"},
        422: {"model": EventsRefused, "description": "invalid events, every problem listed"},
    },
)
async def post_events(
    principal: Ingest,
    services: ServicesDep,
    clock: ClockDep,
    body: Annotated[JsonBody, Depends(json_body("application/json"))],
) -> JSONResponse:
    if body.problem is not None:
        return problem(body.problem.status, body.problem.detail)
    # validation, the database and the enqueue block: keep them off the event loop
    return await run_in_threadpool(_accept, services, clock.now, body.value, principal)


def _accept(
    services: Services, now: Callable[[], dt.datetime], payload: Any, principal: Principal
) -> JSONResponse:
    items, problems = events_of(payload, services.settings.max_batch_events)
    if problems is not None:
        # the whole request is rejected: its valid events too (a batch-level problem: 1)
        EVENTS_REJECTED.inc(max(len(items) + sum(p["index"] is not None for p in problems), 1))
        services.audit.record(principal, ACTION, "events", 422, now())
        return problem(422, "invalid events: nothing was stored", errors=problems)
    at = now()

    def audit_stored(session: Session, _result: IngestResult) -> None:
        # the 202's audit row commits with the events (one commit, not two): stored and
        # audited, or neither
        record = services.audit.record_in
        record(session.connection(), principal, ACTION, f"{len(items)} events", 202, at)

    try:
        result = accept_events(services, items, at, audit_stored)
    except EventConflictError as exc:
        EVENTS_REJECTED.inc(len(items))
        services.audit.record(principal, ACTION, "events", 409, now())
        return problem(
            409,
            "event_id already used with a different body: nothing was stored",
            conflicts=exc.event_ids,
        )
    accepted = sum(1 for _, status in result.statuses if status == "accepted")
    dispatch(services, result)  # after the commit: the answer does not wait for the worker
    answer = EventsAccepted(
        accepted=accepted,
        duplicates=len(result.statuses) - accepted,
        results=[EventStatus(event_id=i, status=s) for i, s in result.statuses],
    )
    return JSONResponse(status_code=202, content=answer.model_dump(mode="json"))
