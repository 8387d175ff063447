"""The HTTP API of CONTRACT.md (FastAPI). Handlers are thin: validate, call a service, audit."""

import datetime as dt
import json
import logging
import pathlib
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from sqlalchemy import text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from monitor.admin.quarantine import set_quarantine
from monitor.alerts.router import add_feed_routes
from monitor.api.guard import BodyTooLargeError, RequestGuard, RequestLog, route_template
from monitor.api.json_body import InvalidJsonError, StrictJsonRoute, parse_json
from monitor.auth.roles import Role
from monitor.auth.tokens import Principal, find_token, list_tokens, revoke_tokens, token_view
from monitor.ingest.service import EventConflictError, store_events
from monitor.interop.cds.router import add_cds_routes
from monitor.interop.fhir.router import add_fhir_ingest_routes
from monitor.interop.fhir.summary_router import add_fhir_summary_routes
from monitor.operations.metrics import (
    EVENTS_ACCEPTED,
    EVENTS_DUPLICATE,
    EVENTS_REJECTED,
    REGISTRY,
    DatabaseCollector,
)
from monitor.patients.clearance import clearance
from monitor.patients.service import PatientRecord, load_patient, quarantined_events
from monitor.reports.router import add_report_routes
from monitor.services import Services
from monitor.storage.models import MAX_ROW_ID, DeadLetterRow, DecisionRow, OutboxRow
from monitor.webhooks.router import add_webhook_routes
from policies.decisions import utc_text, utc_text_or_none
from policies.events import FREE_TEXT, NO_CONTROL, Event, EventValidationError, parse_event

log = logging.getLogger("monitor.api")
PATIENT_ID = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", max_length=64)]
JSON_TYPES = ("application/json",)


class QuarantineRequest(BaseModel):
    """Which event to set aside, and why (shown on the patient page)."""

    model_config = ConfigDict(extra="forbid")

    event_id: Annotated[str, Field(min_length=1, max_length=128, pattern=NO_CONTROL)]
    reason: Annotated[str, Field(min_length=1, max_length=512, pattern=FREE_TEXT)]


class EventBatch(BaseModel):
    """`{"events": [...]}`: up to 1,000 events, stored all or nothing."""

    events: list[Event]


def _problem(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail, **extra})


def _shown(value: Any) -> str:
    """A rejected value in an error message: its repr, cut short (never a whole body)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="bipn-monitor",
        version="0.1.0",
        description="Bortezomib-induced peripheral neuropathy monitor (CONTRACT.md).",
    )
    app.router.route_class = StrictJsonRoute  # before any route: every JSON body is strict
    bearer = HTTPBearer(auto_error=False)
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(DatabaseCollector(services))

    def now() -> dt.datetime:
        return services.settings.now()

    def require(*roles: Role) -> Callable[..., Principal]:
        allowed = tuple(dict.fromkeys((*roles, "admin")))  # require("admin"): listed once

        def dependency(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ) -> Principal:
            # authenticated by the guard before the application ran (monitor.api.guard)
            principal: Principal | None = getattr(request.state, "principal", None)
            if principal is None:  # a CDS Hooks JWT on a route that does not take one
                raise HTTPException(
                    401, "the token is unknown or revoked", headers={"WWW-Authenticate": "Bearer"}
                )
            if principal.role not in allowed:
                action = f"{request.method} {route_template(request.scope)}"
                services.audit.record(principal, action, "denied", 403, now())
                raise HTTPException(
                    403,
                    f"role {principal.role!r} may not {action}; allowed: {', '.join(allowed)}",
                )
            return principal

        return dependency

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "field": ".".join(str(p) for p in err["loc"] if p not in ("path", "query")),
                # a secret (or a URL holding credentials) is not echoed back
                "message": err["msg"]
                if {"secret", "url"} & {str(p) for p in err["loc"]}
                else f"{_shown(err.get('input'))}: {err['msg']}",
            }
            for err in exc.errors()
        ]
        return _problem(422, "invalid request", errors=problems)

    # the guard within the request log: every answer, the guard's 401/413/422 too, is logged
    app.add_middleware(RequestGuard, services=services)
    app.add_middleware(RequestLog)

    # --- ingest ---------------------------------------------------------------------------

    batch_schema = TypeAdapter(Event | EventBatch).json_schema(
        ref_template="#/components/schemas/{model}"
    )

    @app.post(
        "/v1/events",
        status_code=202,
        summary="Accept one event or a batch (durable before 202)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"anyOf": batch_schema["anyOf"]}}},
            }
        },
        responses={
            409: {"description": "an event_id reused with another body"},
            413: {"description": "body too large"},
            415: {"description": "not JSON"},
            422: {"description": "invalid events, every problem listed"},
        },
    )
    async def post_events(
        request: Request, principal: Annotated[Principal, Depends(require("ingest"))]
    ) -> JSONResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in JSON_TYPES:
            return _problem(415, f"Content-Type must be application/json, not {content_type!r}")
        try:
            raw = await request.body()  # bounded as it streams (guard)
        except BodyTooLargeError as exc:
            return _problem(413, str(exc.detail))
        try:
            payload = parse_json(raw)
        except InvalidJsonError as exc:
            return _problem(400, f"the body is not valid JSON: {exc}")
        # validation, the database and the enqueue block: keep them off the event loop
        return await run_in_threadpool(accept_events, payload, principal)

    def accept_events(payload: Any, principal: Principal) -> JSONResponse:
        items, problems = _events_of(payload, services.settings.max_batch_events)
        if problems is not None:
            # the whole request is rejected: its valid events too (a batch-level problem: 1)
            EVENTS_REJECTED.inc(max(len(items) + sum(p["index"] is not None for p in problems), 1))
            services.audit.record(principal, "POST /v1/events", "events", 422, now())
            return _problem(422, "invalid events: nothing was stored", errors=problems)
        try:
            result = store_events(services.sessions, items, now())
        except EventConflictError as exc:
            EVENTS_REJECTED.inc(len(items))
            services.audit.record(principal, "POST /v1/events", "events", 409, now())
            return _problem(
                409,
                "event_id already used with a different body: nothing was stored",
                conflicts=exc.event_ids,
            )
        accepted = sum(1 for _, status in result.statuses if status == "accepted")
        EVENTS_ACCEPTED.inc(accepted)
        EVENTS_DUPLICATE.inc(len(result.statuses) - accepted)
        services.audit.record(principal, "POST /v1/events", f"{len(items)} events", 202, now())
        if result.patients and services.dispatcher is not None:
            services.dispatcher.enqueue(result.patients)  # after the commit (outbox)
        return JSONResponse(
            status_code=202,
            content={
                "accepted": accepted,
                "duplicates": len(result.statuses) - accepted,
                "results": [{"event_id": i, "status": s} for i, s in result.statuses],
            },
        )

    # --- patients -------------------------------------------------------------------------

    def _patient(patient_id: str, principal: Principal, what: str) -> PatientRecord:
        with services.sessions() as session:
            record = load_patient(session, patient_id)
        status = 200 if record.known else 404
        services.audit.record(principal, what, f"patient:{patient_id}", status, now())
        if not record.known:
            raise HTTPException(404, f"no events for patient {patient_id!r}")
        return record

    @app.get("/v1/patients/{patient_id}", summary="Course state")
    def get_patient(
        patient_id: PATIENT_ID,
        principal: Annotated[Principal, Depends(require("nurse", "infusion"))],
    ) -> dict[str, Any]:
        record = _patient(patient_id, principal, "GET /v1/patients/{patient_id}")
        return {
            "patient_id": patient_id,
            **record.state(),  # status none: events stored, none folded yet
            "pending_events": record.pending_events,
            # UTC `Z` form, as every other time the API serves
            "evaluated_at": utc_text_or_none(record.row.evaluated_at if record.row else None),
            **record.monitoring(),
        }

    @app.get("/v1/patients/{patient_id}/decisions", summary="Current decisions")
    def get_decisions(
        patient_id: PATIENT_ID,
        principal: Annotated[Principal, Depends(require("nurse", "infusion"))],
        include: Annotated[str | None, Query(pattern="^superseded$")] = None,
    ) -> dict[str, Any]:
        _patient(patient_id, principal, "GET /v1/patients/{patient_id}/decisions")
        query = select(DecisionRow).where(col(DecisionRow.patient_id) == patient_id)
        if include != "superseded":
            query = query.where(col(DecisionRow.superseded_at).is_(None))
        with services.sessions() as session:
            rows = list(session.execute(query).scalars())
        rows.sort(key=lambda r: (r.at, r.decision_id))
        decisions = []
        for row in rows:
            body = json.loads(row.body)
            if row.superseded_at is not None:
                body["superseded_at"] = utc_text(row.superseded_at)
            decisions.append(body)
        return {"patient_id": patient_id, "decisions": decisions}

    @app.get(
        "/v1/patients/{patient_id}/decisions/{decision_id}",
        summary="One decision, current or superseded (where an alert links to)",
    )
    def get_decision(
        patient_id: PATIENT_ID,
        decision_id: Annotated[str, Path(pattern=r"^d-[0-9a-f]{24}$")],
        principal: Annotated[Principal, Depends(require("nurse", "infusion"))],
    ) -> dict[str, Any]:
        with services.sessions() as session:
            row = session.execute(
                select(DecisionRow).where(
                    col(DecisionRow.decision_id) == decision_id,
                    col(DecisionRow.patient_id) == patient_id,
                )
            ).scalar_one_or_none()
        status = 200 if row is not None else 404
        services.audit.record(
            principal,
            "GET /v1/patients/{patient_id}/decisions/{decision_id}",
            f"patient:{patient_id}",
            status,
            now(),
        )
        if row is None:
            raise HTTPException(404, f"no decision {decision_id} for patient {patient_id!r}")
        body: dict[str, Any] = json.loads(row.body)
        if row.superseded_at is not None:
            body["superseded_at"] = utc_text(row.superseded_at)
        return body

    @app.get("/v1/patients/{patient_id}/clearance", summary="May the dose be given today?")
    def get_clearance(
        patient_id: PATIENT_ID,
        principal: Annotated[Principal, Depends(require("infusion"))],
    ) -> dict[str, Any]:
        record = _patient(patient_id, principal, "GET /v1/patients/{patient_id}/clearance")
        return clearance(record.state(), record.pending_events, now(), record.monitoring_error)

    # --- admin ----------------------------------------------------------------------------

    @app.get("/v1/admin/dead-letters", summary="Work that failed for good")
    def list_dead_letters(
        principal: Annotated[Principal, Depends(require("admin"))],
        include_retried: bool = False,
    ) -> dict[str, Any]:
        query = select(DeadLetterRow).order_by(col(DeadLetterRow.id))
        if not include_retried:
            query = query.where(col(DeadLetterRow.retried_at).is_(None))
        with services.sessions() as session:
            rows = list(session.execute(query).scalars())
        services.audit.record(principal, "GET /v1/admin/dead-letters", "dead_letters", 200, now())
        return {"dead_letters": [row.model_dump(mode="json") for row in rows]}

    @app.post("/v1/admin/dead-letters/{dead_letter_id}/retry", status_code=202)
    def retry_dead_letter(
        dead_letter_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)],
        principal: Annotated[Principal, Depends(require("admin"))],
    ) -> dict[str, Any]:
        with services.sessions.begin() as session:
            row = session.get(DeadLetterRow, dead_letter_id)
            if row is None:
                raise HTTPException(404, f"no dead letter {dead_letter_id}")
            row.retried_at = now()
            session.execute(
                update(OutboxRow)
                .where(col(OutboxRow.dead_letter_id) == dead_letter_id)
                .values(dead_letter_id=None)
            )
            patient_id = row.patient_id
        services.audit.record(
            principal,
            "POST /v1/admin/dead-letters/{dead_letter_id}/retry",
            f"dead_letter:{dead_letter_id}",
            202,
            now(),
        )
        if patient_id and services.dispatcher is not None:
            services.dispatcher.enqueue([patient_id])
        return {"dead_letter_id": dead_letter_id, "status": "requeued"}

    def quarantine(
        event_id: str, principal: Principal, *, quarantined: bool, reason: str | None
    ) -> dict[str, Any]:
        action = f"{'POST' if quarantined else 'DELETE'} /v1/admin/quarantined-events"
        result = set_quarantine(
            services.sessions,
            event_id,
            quarantined=quarantined,
            by=principal.name,
            reason=reason,
            now=now(),
        )
        status = 200 if result is not None else 404
        services.audit.record(principal, action, f"event:{event_id}"[:256], status, now())
        if result is None:
            raise HTTPException(404, f"no event {event_id!r}")
        if result.changed and services.dispatcher is not None:
            services.dispatcher.enqueue([result.patient_id])  # after the commit
        return result.view()

    @app.post(
        "/v1/admin/quarantined-events",
        summary="Set one event aside: kept and shown, left out of every fold (the rest of its "
        "patient's events are folded again at once)",
    )
    def quarantine_event(
        body: QuarantineRequest, principal: Annotated[Principal, Depends(require("admin"))]
    ) -> dict[str, Any]:
        return quarantine(body.event_id, principal, quarantined=True, reason=body.reason)

    @app.delete(
        "/v1/admin/quarantined-events",
        summary="Release a quarantined event (its patient is folded again with it)",
    )
    def release_event(
        event_id: Annotated[str, Query(min_length=1, max_length=128, pattern=NO_CONTROL)],
        principal: Annotated[Principal, Depends(require("admin"))],
    ) -> dict[str, Any]:
        return quarantine(event_id, principal, quarantined=False, reason=None)

    @app.get("/v1/admin/quarantined-events", summary="Events set aside, every patient")
    def list_quarantined(
        principal: Annotated[Principal, Depends(require("admin"))],
    ) -> dict[str, Any]:
        with services.sessions() as session:
            found = quarantined_events(session)
        services.audit.record(
            principal, "GET /v1/admin/quarantined-events", "quarantined_events", 200, now()
        )
        return {"quarantined_events": found}

    @app.get("/v1/admin/tokens", summary="API tokens (never the tokens or their hashes)")
    def list_api_tokens(
        principal: Annotated[Principal, Depends(require("admin"))],
        all: Annotated[bool, Query(description="revoked and expired ones too")] = False,
    ) -> dict[str, Any]:
        tokens = list_tokens(services.sessions, now(), include_inactive=all)
        services.audit.record(principal, "GET /v1/admin/tokens", "tokens", 200, now())
        return {"tokens": tokens}

    @app.post(
        "/v1/admin/tokens/{token_id}/revoke",
        summary="Revoke a token: refused from now on, its open alert streams end",
    )
    def revoke_api_token(
        token_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)],
        principal: Annotated[Principal, Depends(require("admin"))],
    ) -> dict[str, Any]:
        revoked = revoke_tokens(services.sessions, now(), token_id=token_id)
        existing = revoked[0] if revoked else None
        if existing is None:
            row = find_token(services.sessions, token_id)
            existing = token_view(row, now()) if row is not None else None
        status = 200 if existing is not None else 404
        action = "POST /v1/admin/tokens/{token_id}/revoke"
        services.audit.record(principal, action, f"token:{token_id}", status, now())
        if existing is None:
            raise HTTPException(404, f"no token {token_id}")
        return {**existing, "already_revoked": not revoked}

    add_feed_routes(app, services, require)
    add_webhook_routes(app, services, require)
    add_report_routes(app, services, require)
    add_fhir_ingest_routes(app, services, require)
    add_fhir_summary_routes(app, services, require)
    add_cds_routes(app, services, require)

    # --- the web page (static files; the data comes from the API with the user's token) --

    @app.get("/", include_in_schema=False)
    def feed_page() -> FileResponse:
        return _page("index.html")

    @app.get("/patients/{patient_id}", include_in_schema=False)
    def patient_page(patient_id: PATIENT_ID) -> FileResponse:
        return _page("patient.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    # --- operations -----------------------------------------------------------------------

    @app.get("/healthz", summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: database and queue reachable")
    def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            with services.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except SQLAlchemyError as exc:  # reported, not raised: this endpoint is the report
            checks["database"] = f"unreachable: {type(exc).__name__}"
        dispatcher = services.dispatcher
        checks["queue"] = "ok" if dispatcher is not None and dispatcher.ping() else "unreachable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(status_code=200 if ready else 503, content={"ready": ready, **checks})

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def metrics() -> Response:
        body = generate_latest(REGISTRY) + generate_latest(scrape)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        schema = original_openapi()
        schema.setdefault("components", {}).setdefault("schemas", {}).update(
            batch_schema.get("$defs", {})
        )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # the documented way to extend it
    return app


WEB_DIR = pathlib.Path(__file__).with_name("web") / "static"
# The page loads only its own script and style, talks only to this API, and cannot be framed.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _page(name: str) -> FileResponse:
    return FileResponse(WEB_DIR / name, media_type="text/html", headers=PAGE_HEADERS)


def _events_of(payload: Any, max_batch: int) -> tuple[list[Event], list[dict[str, Any]] | None]:
    """One event or `{"events": [...]}`, validated; every problem of every event listed."""
    if isinstance(payload, dict) and "events" in payload and "type" not in payload:
        extra = sorted(set(payload) - {"events"})
        raw = payload["events"]
        if extra:
            return [], [
                {
                    "index": None,
                    "problems": [
                        {"field": k, "message": "unknown field of a batch"} for k in extra
                    ],
                }
            ]
        if not isinstance(raw, list) or not 1 <= len(raw) <= max_batch:
            return [], [
                {
                    "index": None,
                    "problems": [
                        {
                            "field": "events",
                            "message": f"must be a list of 1 to {max_batch} events",
                        }
                    ],
                }
            ]
    else:
        raw = [payload]
    events: list[Event] = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        try:
            # a decoded JSON string must not be parsed again as JSON text: a double-encoded
            # body ("{\"event_id\": ...}") is a string, not an event
            events.append(parse_event(json.dumps(item) if isinstance(item, str) else item))
        except EventValidationError as exc:
            problems.append(
                {
                    "index": index,
                    "event_id": item.get("event_id") if isinstance(item, dict) else None,
                    "problems": [{"field": p.field, "message": p.message} for p in exc.problems],
                }
            )
    return events, (problems or None)
