"""The alert feed over HTTP: list, live stream (SSE), acknowledge (CONTRACT.md). Each care
role (nurse, physician, pharmacy, infusion) sees its own audiences by default and acknowledges
only those; a token bound to units sees only their alerts.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

import datetime as dt
import math
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated, Any

import anyio
from fastapi import Depends, Header, HTTPException, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from monitor.alerts.patient_reports import with_patient_reports
from monitor.alerts.push import WAKEUP
from monitor.alerts.schemas import AcknowledgedAlert, AckRequest, AlertPage, FeedQuery, Unit
from monitor.alerts.service import (
    AckBeforeAlertError,
    AlertAudience,
    AlertFilter,
    AlertKind,
    AlertNotFoundError,
    NotYourAlertError,
    acknowledge,
    last_alert_id,
    list_alerts,
)
from monitor.api.deps import AUTH_RESPONSES, CareTeam, ClockDep, RowIdPath, ServicesDep
from monitor.api.json_body import StrictJsonRouter
from monitor.auth.roles import audiences_of
from monitor.auth.tokens import Principal, still_valid
from monitor.services import Services
from monitor.storage.models import MAX_ROW_ID
from policies.decisions import Severity, utc_text

router = StrictJsonRouter(tags=["alerts"], responses=AUTH_RESPONSES)
MAX_PAGE = 500
STREAM_BATCH = 100


def feed_query(
    severity: Annotated[list[Severity] | None, Query()] = None,
    audience: Annotated[list[AlertAudience] | None, Query()] = None,
    unit: Annotated[list[Unit] | None, Query()] = None,
    kind: Annotated[list[AlertKind] | None, Query()] = None,
    acknowledged: bool | None = None,
) -> FeedQuery:
    return FeedQuery(
        severity=severity or [],
        audience=audience or [],
        unit=unit or [],
        kind=kind or [],
        acknowledged=acknowledged,
    )


Feed = Annotated[FeedQuery, Depends(feed_query)]


def scoped(feed: FeedQuery, principal: Principal) -> AlertFilter:
    """The feed's filters within the caller's reach: without `audience`, the audiences its
    role answers for (admin: all); only its units when the token is bound to units."""
    where = feed.where()
    own = audiences_of(principal.role)
    return replace(
        where,
        audiences=where.audiences or (own if own is not None else ()),
        scope=None if principal.units is None else sorted(principal.units),
    )


@router.get(
    "/v1/alerts",
    summary="The nurse feed: alerts, newest first or after a cursor",
    response_model=AlertPage,
)
def get_alerts(
    principal: CareTeam,
    feed: Feed,
    services: ServicesDep,
    clock: ClockDep,
    cursor: Annotated[
        int | None,
        Query(ge=1, le=MAX_ROW_ID, description="next_cursor of the previous page"),
    ] = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_ROW_ID, description="alerts after this id, oldest first"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> dict[str, Any]:
    if cursor is not None and after is not None:
        raise HTTPException(422, "give cursor (older pages) or after (newer alerts), not both")
    with services.sessions() as session:
        alerts = list_alerts(
            session, scoped(feed, principal), before=cursor, after=after, limit=limit
        )
        alerts = with_patient_reports(session, alerts)
        last = last_alert_id(session)
    services.audit.record(principal, "GET /v1/alerts", "alerts", 200, clock.now())
    full = len(alerts) == limit
    return {
        "alerts": alerts,
        # newest first: the next (older) page starts below the last id shown
        "next_cursor": alerts[-1]["id"] if full and after is None else None,
        # after a cursor: ask again with after=<this> for what comes next
        "next_after": (alerts[-1]["id"] if alerts else after) if after is not None else None,
        "last_id": last,
    }


def resume_point(
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_ROW_ID, description="start after this id (default: live only)"),
    ] = None,
) -> int | None:
    """Where a stream starts: after `Last-Event-ID` (a reconnect), or `?after=`."""
    if last_event_id is not None and last_event_id.strip():
        value = last_event_id.strip()
        # ASCII digits only (headers are Latin-1: "²" is a digit to isdigit(), not to int()),
        # and no more than ?after= allows (a larger id overflows the query: a broken stream)
        digits = value.isascii() and value.isdigit() and len(value) <= 10
        if not digits or int(value) > MAX_ROW_ID:
            raise HTTPException(422, f"Last-Event-ID: {value[:40]!r} is not an alert id")
        return int(value)
    return after


@router.get(
    "/v1/alerts/stream",
    response_class=EventSourceResponse,
    summary="The nurse feed live (Server-Sent Events), resumable with Last-Event-ID",
    openapi_extra={"x-event-data": "AlertView"},  # `alert` events: data is an alert
)
async def stream_alerts(
    principal: CareTeam,
    feed: Feed,
    resume: Annotated[int | None, Depends(resume_point)],
    services: ServicesDep,
    clock: ClockDep,
) -> AsyncIterator[ServerSentEvent]:
    # (a generator's body runs once streaming has begun: everything that can refuse the
    # request, the resume point included, is a dependency, checked before the 200)
    await run_in_threadpool(
        services.audit.record, principal, "GET /v1/alerts/stream", "alerts", 200, clock.now()
    )
    where = scoped(feed, principal)
    position = resume if resume is not None else await run_in_threadpool(_last_id, services)
    yield ServerSentEvent(comment="bipn-monitor alert stream", retry=3000)
    ends = anyio.current_time() + services.settings.stream_max_s
    token_checked = -math.inf
    while True:
        # the token may be revoked, or expire, while the stream is open: it ends then (the
        # client's reconnect is refused with a 401). Checked at most once per poll interval,
        # not at every wake-up (at 100 alerts/s that was a query per alert per stream).
        if principal.token_id is not None and (
            anyio.current_time() - token_checked >= services.settings.stream_poll_s
        ):
            token_checked = anyio.current_time()
            if not await run_in_threadpool(
                still_valid, services.sessions, principal.token_id, clock.now()
            ):
                yield ServerSentEvent(comment="the token is no longer valid: stream closed")
                return
        if principal.expires_at is not None and clock.wall() >= principal.expires_at:
            yield ServerSentEvent(comment="the sign-in has expired: stream closed")
            return
        seen = WAKEUP.generation  # before the look: a notice during it is not lost
        alerts = await run_in_threadpool(_after, services, where, position)
        for alert in alerts:
            position = alert["id"]
            yield ServerSentEvent(data=alert, event="alert", id=str(position))
        if anyio.current_time() >= ends:
            return  # the client reconnects with Last-Event-ID (and its token is re-checked)
        if len(alerts) < STREAM_BATCH:
            # woken by a notice of new alerts (monitor.alerts.push), or polls
            await WAKEUP.wait(services.settings.stream_poll_s, since=seen)


def _last_id(services: Services) -> int:
    with services.sessions() as session:
        return last_alert_id(session)


def _after(services: Services, where: AlertFilter, position: int) -> list[dict[str, Any]]:
    with services.sessions() as session:
        alerts = list_alerts(session, where, after=position, limit=STREAM_BATCH)
        return with_patient_reports(session, alerts)


@router.post(
    "/v1/alerts/{alert_id}/ack",
    summary="Acknowledge an alert (twice is harmless)",
    response_model=AcknowledgedAlert,
)
def ack_alert(
    alert_id: RowIdPath,
    principal: CareTeam,
    services: ServicesDep,
    clock: ClockDep,
    body: AckRequest | None = None,
) -> dict[str, Any]:
    request = body or AckRequest()
    current = clock.now()
    action, resource = "POST /v1/alerts/{alert_id}/ack", f"alert:{alert_id}"
    if request.at is not None and request.at > current + dt.timedelta(minutes=5):
        raise HTTPException(
            422,
            f"at: {utc_text(request.at)} is in the future (now {utc_text(current)})",
        )
    try:
        with services.sessions.begin() as session:
            alert, recorded = acknowledge(
                session,
                alert_id,
                by=request.by or principal.name,
                token_name=principal.name,
                at=request.at or current,
                note=request.note,
                now=current,
                audiences=audiences_of(principal.role),
                units=principal.units,
            )
    except AckBeforeAlertError as exc:
        services.audit.record(principal, action, resource, 422, current)
        raise HTTPException(
            422,
            f"at: {utc_text(exc.at)} is before the alert was raised "
            f"({utc_text(exc.raised_at)}): an alert cannot be acknowledged before it exists",
        ) from None
    except NotYourAlertError as exc:
        services.audit.record(principal, action, resource, 403, current)
        raise HTTPException(
            403,
            f"alert {alert_id} is addressed to {', '.join(exc.audience)}; role "
            f"{principal.role!r} acknowledges alerts for {', '.join(exc.allowed) or 'no one'}",
        ) from None
    except AlertNotFoundError:
        services.audit.record(principal, action, resource, 404, current)
        raise HTTPException(404, f"no alert {alert_id}") from None
    services.audit.record(principal, action, resource, 200, current)
    with services.sessions() as session:
        [alert] = with_patient_reports(session, [alert])
    return {**alert, "already_acknowledged": not recorded}
