"""The nurse feed over HTTP: list, live stream (SSE), acknowledge (CONTRACT.md, role `nurse`).

No `from __future__ import annotations` here: FastAPI reads the handlers' annotations at run
time, and some name types local to `add_feed_routes`.
"""

import datetime as dt
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from monitor.alerts.service import (
    AckBeforeAlertError,
    AlertAudience,
    AlertFilter,
    AlertKind,
    AlertNotFoundError,
    acknowledge,
    last_alert_id,
    list_alerts,
)
from monitor.auth.tokens import Principal, still_valid
from monitor.services import Services
from monitor.storage.models import MAX_ROW_ID, DecisionRow, EventRow
from policies.decisions import Severity, utc_text
from policies.events import (
    EVENT_ADAPTER,
    NO_CONTROL,
    Administration,
    Assessment,
    ClinicalTime,
    Enrollment,
)

Unit = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_CONTROL)]
MAX_PAGE = 500
STREAM_BATCH = 100


class AckRequest(BaseModel):
    """Who acknowledges (default: the token's name), when (default: now), an optional note."""

    model_config = ConfigDict(extra="forbid")

    by: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")] | None = (
        None
    )
    at: ClinicalTime | None = Field(
        default=None,
        description="when it was acknowledged, RFC 3339 with offset; not before the alert was "
        "raised, not in the future",
    )
    note: Annotated[str, Field(max_length=2000, pattern=r"^[^\x00]*$")] | None = None


class FeedQuery(BaseModel):
    """The feed's filters (repeat a parameter for "any of")."""

    severity: list[Severity] = []
    audience: list[AlertAudience] = []
    unit: list[Unit] = []
    kind: list[AlertKind] = []
    acknowledged: bool | None = None

    def where(self) -> AlertFilter:
        return AlertFilter(
            severities=self.severity,
            audiences=self.audience,
            units=self.unit,
            kinds=self.kind,
            acknowledged=self.acknowledged,
        )


def _feed_query(
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


def add_feed_routes(
    app: FastAPI, services: Services, require: Callable[..., Callable[..., Principal]]
) -> None:
    def now() -> dt.datetime:
        return services.settings.now()

    @app.get("/v1/alerts", summary="The nurse feed: alerts, newest first or after a cursor")
    def get_alerts(
        principal: Annotated[Principal, Depends(require("nurse"))],
        feed: Annotated[FeedQuery, Depends(_feed_query)],
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
            alerts = list_alerts(session, feed.where(), before=cursor, after=after, limit=limit)
            last = last_alert_id(session)
        services.audit.record(principal, "GET /v1/alerts", "alerts", 200, now())
        full = len(alerts) == limit
        return {
            "alerts": alerts,
            # newest first: the next (older) page starts below the last id shown
            "next_cursor": alerts[-1]["id"] if full and after is None else None,
            # after a cursor: ask again with after=<this> for what comes next
            "next_after": (alerts[-1]["id"] if alerts else after) if after is not None else None,
            "last_id": last,
        }

    @app.get(
        "/v1/alerts/stream",
        response_class=EventSourceResponse,
        summary="The nurse feed live (Server-Sent Events), resumable with Last-Event-ID",
    )
    async def stream_alerts(
        principal: Annotated[Principal, Depends(require("nurse"))],
        feed: Annotated[FeedQuery, Depends(_feed_query)],
        resume: Annotated[int | None, Depends(_resume_point)],
    ) -> AsyncIterator[ServerSentEvent]:
        # (a generator's body runs once streaming has begun: everything that can refuse the
        # request, the resume point included, is a dependency, checked before the 200)
        await run_in_threadpool(
            services.audit.record, principal, "GET /v1/alerts/stream", "alerts", 200, now()
        )
        where = feed.where()
        position = resume if resume is not None else await run_in_threadpool(_last_id)
        yield ServerSentEvent(comment="bipn-monitor alert stream", retry=3000)
        ends = anyio.current_time() + services.settings.stream_max_s
        while True:
            # the token may be revoked, or expire, while the stream is open: it ends then (the
            # client's reconnect is refused with a 401)
            if principal.token_id is not None and not await run_in_threadpool(
                still_valid, services.sessions, principal.token_id, now()
            ):
                yield ServerSentEvent(comment="the token is no longer valid: stream closed")
                return
            alerts = await run_in_threadpool(_after, where, position)
            for alert in alerts:
                position = alert["id"]
                yield ServerSentEvent(data=alert, event="alert", id=str(position))
            if anyio.current_time() >= ends:
                return  # the client reconnects with Last-Event-ID (and its token is re-checked)
            if len(alerts) < STREAM_BATCH:
                await anyio.sleep(services.settings.stream_poll_s)

    def _last_id() -> int:
        with services.sessions() as session:
            return last_alert_id(session)

    def _after(where: AlertFilter, position: int) -> list[dict[str, Any]]:
        with services.sessions() as session:
            return list_alerts(session, where, after=position, limit=STREAM_BATCH)

    @app.post("/v1/alerts/{alert_id}/ack", summary="Acknowledge an alert (twice is harmless)")
    def ack_alert(
        alert_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)],
        principal: Annotated[Principal, Depends(require("nurse"))],
        body: AckRequest | None = None,
    ) -> dict[str, Any]:
        request = body or AckRequest()
        current = now()
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
                )
        except AckBeforeAlertError as exc:
            services.audit.record(
                principal, "POST /v1/alerts/{alert_id}/ack", f"alert:{alert_id}", 422, current
            )
            raise HTTPException(
                422,
                f"at: {utc_text(exc.at)} is before the alert was raised "
                f"({utc_text(exc.raised_at)}): an alert cannot be acknowledged before it exists",
            ) from None
        except AlertNotFoundError:
            services.audit.record(principal, "POST /v1/alerts/{alert_id}/ack",
                f"alert:{alert_id}", 404, current,
            )  # fmt: skip
            raise HTTPException(404, f"no alert {alert_id}") from None
        services.audit.record(principal, "POST /v1/alerts/{alert_id}/ack",
            f"alert:{alert_id}", 200, current,
        )  # fmt: skip
        return {**alert, "already_acknowledged": not recorded}

    @app.get(
        "/v1/patients/{patient_id}/history",
        summary="Grades per domain over time, doses given and dose decisions (for charts)",
    )
    def get_history(
        patient_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", max_length=64)],
        principal: Annotated[Principal, Depends(require("nurse", "infusion"))],
    ) -> dict[str, Any]:
        with services.sessions() as session:
            # what the folds see: quarantined events are left out (the patient page lists them)
            bodies = list(
                session.execute(
                    select(col(EventRow.event_id), col(EventRow.body))
                    .where(
                        col(EventRow.patient_id) == patient_id,
                        col(EventRow.quarantined_at).is_(None),
                    )
                    .order_by(col(EventRow.occurred_at), col(EventRow.id))
                ).all()
            )
            decisions = list(
                session.execute(
                    select(col(DecisionRow.body))
                    .where(
                        col(DecisionRow.patient_id) == patient_id,
                        col(DecisionRow.superseded_at).is_(None),
                    )
                    .order_by(col(DecisionRow.at))
                ).scalars()
            )
        status = 200 if bodies else 404
        services.audit.record(principal, "GET /v1/patients/{patient_id}/history",
            f"patient:{patient_id}", status, now(),
        )  # fmt: skip
        if not bodies:
            raise HTTPException(404, f"no events for patient {patient_id!r}")
        return _history(patient_id, bodies, decisions)


def _resume_point(
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


DOSE_ACTIONS = ("reduce_dose", "hold", "resume", "discontinue")


def _history(
    patient_id: str, bodies: Sequence[tuple[str, str]], decisions: list[str]
) -> dict[str, Any]:
    grades: list[dict[str, Any]] = []
    doses: list[dict[str, Any]] = []
    unreadable: list[str] = []
    for event_id, body in bodies:
        try:
            event = EVENT_ADAPTER.validate_json(body)
        except ValidationError:  # stored before a bound existed: its dead letter names it
            unreadable.append(event_id)
            continue
        at = utc_text(event.occurred_at)
        if isinstance(event, Assessment):
            grades.append(
                {"at": at, "cycle": event.cycle, **event.grades.model_dump(exclude_none=True)}
            )
        elif isinstance(event, Enrollment | Administration):
            doses.append(
                {
                    "at": at,
                    "dose_mg_m2": event.dose_mg_m2,
                    "source": "enrollment" if isinstance(event, Enrollment) else "given",
                }
            )
    dose_decisions = []
    for body in decisions:
        decision = json.loads(body)
        if decision["action"] in DOSE_ACTIONS:
            dose_decisions.append(
                {
                    "at": decision["at"],
                    "action": decision["action"],
                    "dose_mg_m2": decision.get("dose_mg_m2"),
                    "rule": decision["rule"],
                }
            )
    return {
        "patient_id": patient_id,
        "grades": grades,
        "doses": doses,
        "dose_decisions": dose_decisions,
        "unreadable_events": unreadable,
    }
