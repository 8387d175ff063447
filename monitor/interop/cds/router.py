"""CDS Hooks 2.0 over HTTP: discovery, the bortezomib order check, and card feedback.

- `GET /cds-services`: discovery, public (it names the services, nothing about patients).
- `POST /cds-services/{id}`: `bortezomib-order-check` (hook `order-sign`, also answers
  `order-select`) and `bortezomib-order-select` (hook `order-select`): one card per draft
  bortezomib MedicationRequest (see `monitor.interop.cds.cards`), each recorded for feedback.
- `POST /cds-services/{id}/feedback`: `accepted` / `overridden` outcomes of those cards.

Callers authenticate with the CDS Hooks JWT (`monitor.interop.cds.jwt_auth`; audited as `cds:<iss>`)
or with a bearer token of role `cds`.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationrequest import MedicationRequest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from monitor.api.guard import BodyTooLargeError, route_template
from monitor.api.json_body import InvalidJsonError, parse_json
from monitor.auth.tokens import Principal
from monitor.interop.cds.cards import (
    OVERRIDE_REASONS,
    OVERRIDE_SYSTEM,
    CourseView,
    DraftOrder,
    order_card,
)
from monitor.interop.cds.jwt_auth import JwtRejectedError, JwtVerifier, looks_like_jwt, remember_jti
from monitor.interop.fhir.inbound import patient_id_of
from monitor.interop.fhir.medication import order_is_bortezomib, read_regimen
from monitor.interop.fhir.problems import FhirProblems
from monitor.patients.clearance import clearance
from monitor.patients.service import current_decisions, load_patient
from monitor.services import Services
from monitor.storage.models import (
    CdsCardRow,
    CdsFeedbackRow,
)
from policies.events import ClinicalTime

log = logging.getLogger("monitor.cds")
PATIENT_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
MAX_FEEDBACK = 100


@dataclass(frozen=True, slots=True)
class CdsService:
    id: str
    hook: str  # what discovery advertises
    accepts: tuple[str, ...]  # the hooks it answers
    title: str
    description: str


CHECK = "Checks a draft bortezomib order against the patient's neuropathy course"
SERVICES: dict[str, CdsService] = {
    s.id: s
    for s in (
        CdsService(
            "bortezomib-order-check",
            "order-sign",
            ("order-sign", "order-select"),
            "Bortezomib order check (neuropathy)",
            CHECK + " before it is signed: cancel it when bortezomib is held or "
            "discontinued, lower it to the recommended dose, schedule and route when it "
            "exceeds them, and say when a neuropathy reassessment is due.",
        ),
        CdsService(
            "bortezomib-order-select",
            "order-select",
            ("order-select",),
            "Bortezomib order check at selection (neuropathy)",
            CHECK + " as it is selected (the same check as bortezomib-order-check, for the "
            "selected orders only).",
        ),
    )
}
SERVICE_ID = Annotated[str, Path(pattern=r"^[a-z0-9-]{1,64}$")]


class CdsOrderContext(BaseModel):
    """`context` of order-sign and order-select (`selections` is order-select's)."""

    model_config = ConfigDict(extra="allow")

    user_id: str = Field(alias="userId", min_length=1, max_length=256)
    patient_id: str = Field(alias="patientId", pattern=PATIENT_PATTERN)
    encounter_id: str | None = Field(default=None, alias="encounterId", max_length=256)
    draft_orders: dict[str, Any] = Field(alias="draftOrders")
    selections: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = None


class CdsHookRequest(BaseModel):
    """A CDS Hooks call. `fhirAuthorization` is accepted and ignored (the service reads
    nothing from the client's FHIR server), and never echoed in an error."""

    model_config = ConfigDict(extra="allow")

    hook: str = Field(min_length=1, max_length=64)
    hook_instance: str = Field(alias="hookInstance", min_length=1, max_length=128)
    fhir_server: str | None = Field(default=None, alias="fhirServer")
    fhir_authorization: Any = Field(default=None, alias="fhirAuthorization")
    context: CdsOrderContext
    prefetch: dict[str, Any] | None = None


class CdsCoding(BaseModel):
    system: str | None = Field(default=None, max_length=256)
    code: str = Field(min_length=1, max_length=64)
    display: str | None = Field(default=None, max_length=256)


class CdsOverrideReason(BaseModel):
    reason: CdsCoding | None = None
    user_comment: str | None = Field(default=None, alias="userComment", max_length=2000)


class CdsAcceptedSuggestion(BaseModel):
    id: str = Field(min_length=1, max_length=64)


class CdsFeedback(BaseModel):
    card: str = Field(min_length=1, max_length=64)
    outcome: Literal["accepted", "overridden"]
    accepted_suggestions: list[CdsAcceptedSuggestion] | None = Field(
        default=None, alias="acceptedSuggestions"
    )
    override_reason: CdsOverrideReason | None = Field(default=None, alias="overrideReason")
    # the service's one bound on times (1900-2200 UTC), kept in UTC (the spec's form)
    outcome_timestamp: ClinicalTime = Field(alias="outcomeTimestamp")

    @field_validator("outcome_timestamp")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        return value.astimezone(dt.UTC)


class CdsFeedbackRequest(BaseModel):
    feedback: list[CdsFeedback] = Field(min_length=1, max_length=MAX_FEEDBACK)


def _invalid(errors: list[tuple[str, str]], status: int = 422, detail: str = "") -> JSONResponse:
    """The app's error shape: `{"detail", "errors": [{"field", "message"}]}`."""
    return JSONResponse(
        status_code=status,
        content={
            "detail": detail or "invalid request",
            "errors": [{"field": f, "message": m} for f, m in errors],
        },
    )


def add_cds_routes(
    app: FastAPI, services: Services, require: Callable[..., Callable[..., Principal]]
) -> None:
    """Register the CDS Hooks endpoints (discovery public; the rest: JWT or role `cds`)."""
    settings = services.settings
    verifier = JwtVerifier(settings.cds_clients)
    bearer = HTTPBearer(auto_error=False)
    bearer_cds = require("cds")

    def now() -> dt.datetime:
        return settings.now()

    def base_url(request: Request) -> str:
        return settings.public_base_url or str(request.base_url).rstrip("/")

    def authenticate(feedback: bool) -> Callable[..., Principal]:
        def dependency(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ) -> Principal:
            if (
                credentials is None
                or credentials.scheme.lower() != "bearer"
                or not looks_like_jwt(credentials.credentials)
            ):
                return bearer_cds(request, credentials)
            service = f"{base_url(request)}/cds-services/{request.path_params['service_id']}"
            # the spec: aud is the endpoint called; for feedback, the service's own is taken too
            audiences = [f"{service}/feedback", service] if feedback else [service]
            try:
                verified = verifier.verify(credentials.credentials, audiences)
                remember_jti(services.sessions, verified, dt.datetime.now(dt.UTC))
            except JwtRejectedError as exc:
                log.warning("cds jwt refused", extra={"reason": str(exc)})
                services.audit.record_refusal(
                    f"POST {route_template(request.scope)}", 401, settings.now()
                )
                raise HTTPException(
                    401,
                    f"the CDS Hooks JWT is refused: {exc}",
                    headers={"WWW-Authenticate": "Bearer"},
                ) from None
            return Principal(name=f"cds:{verified.issuer}"[:64], role="cds")

        return dependency

    @app.get("/cds-services", summary="CDS Hooks discovery (public)")
    def discovery() -> dict[str, Any]:
        return {
            "services": [
                {
                    "hook": s.hook,
                    "title": s.title,
                    "description": s.description,
                    "id": s.id,
                    "usageRequirements": "Sign each call with a CDS Hooks JWT (ES384 or RS384) "
                    "of a configured issuer, or send a bearer token of role cds. Draft orders "
                    "in mg/m2, weekly or twice weekly, IV or SC (SNOMED CT).",
                }
                for s in SERVICES.values()
            ]
        }

    hook_schema = _component(CdsHookRequest)
    feedback_schema = _component(CdsFeedbackRequest)

    @app.post(
        "/cds-services/{service_id}",
        summary="CDS Hooks: the bortezomib order check (order-sign, order-select)",
        response_model=None,
        openapi_extra=_request_body(CdsHookRequest),
        responses={
            200: {"description": '`{"cards": [...]}`: one card per draft bortezomib order'},
            400: {"description": "the body is not JSON"},
            404: {"description": "no such CDS service"},
            413: {"description": "the body is too large"},
            422: {"description": "the request names the field(s) it gets wrong"},
        },
    )
    async def call_service(
        request: Request,
        service_id: SERVICE_ID,
        principal: Annotated[Principal, Depends(authenticate(feedback=False))],
    ) -> JSONResponse:
        # the body is read only once the caller is known: nothing about it leaks to strangers
        action = "POST /cds-services/{service_id}"
        payload = await _read_json(request)
        base = base_url(request)
        return await run_in_threadpool(hook_call, service_id, payload, principal, base, action)

    def hook_call(
        service_id: str, payload: Any, principal: Principal, base: str, action: str
    ) -> JSONResponse:
        service = SERVICES.get(service_id)
        if service is None:
            services.audit.record(principal, action, f"cds:{service_id}", 404, now())
            raise HTTPException(404, f"no CDS service {service_id!r}: see GET /cds-services")
        if isinstance(payload, JSONResponse):  # not JSON, or too large
            services.audit.record(
                principal,
                action,
                f"cds:{service_id}",
                payload.status_code,
                now(),
            )
            return payload
        body, problems = _validated(CdsHookRequest, payload)
        orders: list[DraftOrder] = []
        if body is not None:
            problems = _request_problems(service, body)
            if not problems:
                orders, problems = _draft_orders(body, services)
        if body is None or problems:
            patient = body.context.patient_id if body is not None else None
            resource = f"patient:{patient}" if patient else f"cds:{service_id}"
            services.audit.record(principal, action, resource, 422, now())
            return _invalid(problems)
        patient_id = body.context.patient_id
        cards = []
        if orders:
            course = _course(services, patient_id)
            patient_url = f"{base}/patients/{patient_id}"
            cards = [
                order_card(course, order, now(), patient_url, lambda: str(uuid.uuid4()))
                for order in orders
            ]
            with services.sessions.begin() as session:
                for card in cards:
                    session.add(
                        CdsCardRow(
                            uuid=card.uuid,
                            service_id=service.id,
                            hook=body.hook,
                            hook_instance=body.hook_instance,
                            patient_id=patient_id,
                            unit=_text(course.state.get("unit")),
                            order_ref=card.order_ref[:128] if card.order_ref else None,
                            indicator=card.indicator,
                            rule=card.rule[:8],
                            policy=card.policy[:64],
                            decision_id=card.decision_id,
                            suggestions=json.dumps(list(card.suggestion_ids)),
                            principal=principal.name,
                            created_at=now(),
                        )
                    )
        services.audit.record(principal, action, f"patient:{patient_id}", 200, now())
        return JSONResponse({"cards": [card.body for card in cards]})

    @app.post(
        "/cds-services/{service_id}/feedback",
        summary="CDS Hooks feedback: what became of a card (accepted / overridden)",
        response_model=None,
        openapi_extra=_request_body(CdsFeedbackRequest),
        responses={
            200: {"description": '`{"recorded": n, "duplicates": n}`'},
            400: {"description": "the body is not JSON"},
            404: {"description": "no such service, or a card it did not issue"},
            413: {"description": "the body is too large"},
            422: {"description": "the request names the field(s) it gets wrong"},
        },
    )
    async def feedback(
        request: Request,
        service_id: SERVICE_ID,
        principal: Annotated[Principal, Depends(authenticate(feedback=True))],
    ) -> JSONResponse:
        payload = await _read_json(request)
        return await run_in_threadpool(feedback_call, service_id, payload, principal)

    def feedback_call(service_id: str, payload: Any, principal: Principal) -> JSONResponse:
        action = "POST /cds-services/{service_id}/feedback"
        received = now()
        if service_id not in SERVICES:
            services.audit.record(principal, action, f"cds:{service_id}", 404, received)
            raise HTTPException(404, f"no CDS service {service_id!r}: see GET /cds-services")
        if isinstance(payload, JSONResponse):
            services.audit.record(principal, action, "cds-feedback", payload.status_code, received)
            return payload
        body, problems = _validated(CdsFeedbackRequest, payload)
        if body is None:
            services.audit.record(principal, action, "cds-feedback", 422, received)
            return _invalid(problems)
        resource = f"cds-feedback:{len(body.feedback)}"
        with services.sessions.begin() as session:
            uuids = {item.card for item in body.feedback}
            cards = {
                row.uuid: row
                for row in session.execute(
                    select(CdsCardRow).where(
                        col(CdsCardRow.uuid).in_(uuids), col(CdsCardRow.service_id) == service_id
                    )
                ).scalars()
            }
            unknown = [
                (f"body.feedback.{i}.card", f"{item.card!r} is not a card {service_id} issued")
                for i, item in enumerate(body.feedback)
                if item.card not in cards
            ]
            if unknown:
                status, response = 404, _invalid(unknown, 404, "unknown card")
            else:
                problems = _feedback_problems(body.feedback, cards)
                if problems:
                    status, response = 422, _invalid(problems)
                else:
                    recorded = _store_feedback(session, body.feedback, cards, principal, received)
                    status = 200
                    response = JSONResponse(
                        {"recorded": recorded, "duplicates": len(body.feedback) - recorded}
                    )
        services.audit.record(principal, action, resource, status, received)
        return response

    # the request bodies' models in the OpenAPI components (the routes read bodies themselves)
    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        schema = original_openapi()
        schema.setdefault("components", {}).setdefault("schemas", {}).update(
            {**hook_schema, **feedback_schema}
        )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # the documented way to extend it


REF = "#/components/schemas/{model}"
ModelT = TypeVar("ModelT", bound=BaseModel)


def _component(model: type[BaseModel]) -> dict[str, Any]:
    """The model and the models it uses, as OpenAPI components."""
    schema = model.model_json_schema(by_alias=True, ref_template=REF)
    defs: dict[str, Any] = schema.pop("$defs", {})
    return {model.__name__: schema, **defs}


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


async def _read_json(request: Request) -> Any:
    """The body as JSON, or the 400/413 response saying why not. Strings must be valid
    Unicode (an unpaired surrogate could not be stored)."""
    try:
        raw = await request.body()  # bounded as it streams (guard)
    except BodyTooLargeError as exc:
        return JSONResponse(status_code=413, content={"detail": str(exc.detail)})
    try:
        payload = parse_json(raw)
    except InvalidJsonError as exc:
        return JSONResponse(
            status_code=400, content={"detail": f"the body is not valid JSON: {exc}"}
        )
    return payload


def _validated(model: type[ModelT], payload: Any) -> tuple[ModelT | None, list[tuple[str, str]]]:
    """The payload as the model, or each problem as (`body.<field path>`, message)."""
    try:
        return model.model_validate(payload), []
    except ValidationError as exc:
        return None, [
            (".".join(["body", *(str(p) for p in err["loc"])]), str(err["msg"]))
            for err in exc.errors()
        ]


def _request_problems(service: CdsService, body: CdsHookRequest) -> list[tuple[str, str]]:
    problems = []
    if body.hook not in service.accepts:
        problems.append(
            ("body.hook", f"{body.hook!r} is not a hook {service.id} answers: "
             + ", ".join(service.accepts))
        )  # fmt: skip
    if body.hook == "order-select" and not body.context.selections:
        problems.append(
            ("body.context.selections", "is required for order-select: the ids of the newly "
             "selected orders (e.g. MedicationRequest/123)")
        )  # fmt: skip
    drafts = body.context.draft_orders
    if drafts.get("resourceType") != "Bundle":
        problems.append(("body.context.draftOrders.resourceType", "must be 'Bundle'"))
    if not isinstance(drafts.get("entry", []), list):
        problems.append(("body.context.draftOrders.entry", "must be a list of entries"))
    return problems


def _draft_orders(
    body: CdsHookRequest, services: Services
) -> tuple[list[DraftOrder], list[tuple[str, str]]]:
    """The draft bortezomib MedicationRequests the hook is about (order-select: the selected
    ones), each validated with fhir.resources and its regimen read. Other resources are not
    this service's business and are not parsed."""
    context = body.context
    selections = set(context.selections or []) if body.hook == "order-select" else None
    orders: list[DraftOrder] = []
    problems: list[tuple[str, str]] = []
    medications = _draft_medications(context.draft_orders.get("entry") or [])
    for index, entry in enumerate(context.draft_orders.get("entry") or []):
        where = f"body.context.draftOrders.entry.{index}.resource"
        raw = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(raw, dict) or raw.get("resourceType") != "MedicationRequest":
            continue
        reference = f"MedicationRequest/{raw['id']}" if isinstance(raw.get("id"), str) else None
        if selections is not None and reference not in selections:
            continue
        try:
            request = MedicationRequest.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join([where, *(str(p) for p in err["loc"])])
                problems.append((field, str(err["msg"])))
            continue
        except (KeyError, TypeError, ValueError) as exc:  # fhir.resources: an unknown type
            problems.append((where, f"is not a valid MedicationRequest: {exc}"))
            continue
        if not order_is_bortezomib(request, services.settings, medications):
            continue
        subject = request.subject.reference if request.subject is not None else None
        if subject and patient_id_of(subject) != context.patient_id:
            problems.append(
                (f"{where}.subject", f"{subject!r} is not the context's patient "
                 f"Patient/{context.patient_id}")
            )  # fmt: skip
            continue
        try:
            regimen = read_regimen(request, services.settings, "MedicationRequest")
            orders.append(DraftOrder(reference, request, regimen))
        except FhirProblems as exc:
            orders.append(DraftOrder(reference, request, None, tuple(str(p) for p in exc.problems)))
    return orders, problems


def _draft_medications(entries: list[Any]) -> dict[str, Medication]:
    """Medications in draftOrders, by `Medication/{id}` and fullUrl: an order may point at one."""
    found: dict[str, Medication] = {}
    for entry in entries:
        raw = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(raw, dict) or raw.get("resourceType") != "Medication":
            continue
        try:
            medication = Medication.model_validate(raw)
        except ValidationError:
            continue  # an unreadable Medication: the order pointing at it is not recognised
        if medication.id:
            found[f"Medication/{medication.id}"] = medication
        if isinstance(entry.get("fullUrl"), str):
            found[entry["fullUrl"]] = medication
    return found


def _course(services: Services, patient_id: str) -> CourseView:
    """What the monitor knows of the patient: state, clearance, current decisions."""
    with services.sessions() as session:
        record = load_patient(session, patient_id)
        decisions = current_decisions(session, patient_id)
    state = record.state()
    known, pending = record.known, record.pending_events
    return CourseView(
        patient_id=patient_id,
        known=known,
        state=state,
        clearance=clearance(state, pending, services.settings.now(), record.monitoring_error),
        pending_events=pending,
        decisions=decisions,
        policy=services.pack.label,
        tolerance_mg_m2=services.pack.dose_tolerance_mg_m2,
    )


def _feedback_problems(
    items: list[CdsFeedback], cards: dict[str, CdsCardRow]
) -> list[tuple[str, str]]:
    problems = []
    for index, item in enumerate(items):
        where = f"body.feedback.{index}"
        offered = set(json.loads(cards[item.card].suggestions))
        if item.outcome == "accepted":
            if not item.accepted_suggestions:
                problems.append(
                    (f"{where}.acceptedSuggestions", "is required for an accepted outcome")
                )
            for number, accepted in enumerate(item.accepted_suggestions or []):
                if accepted.id not in offered:
                    problems.append(
                        (f"{where}.acceptedSuggestions.{number}.id",
                         f"{accepted.id!r} is not a suggestion of card {item.card}")
                    )  # fmt: skip
        elif item.accepted_suggestions:
            problems.append(
                (f"{where}.acceptedSuggestions", "is only for an accepted outcome")
            )  # fmt: skip
    return problems


def _store_feedback(
    session: Any,
    items: list[CdsFeedback],
    cards: dict[str, CdsCardRow],
    principal: Principal,
    received: dt.datetime,
) -> int:
    """Store each outcome; one already stored (same card, outcome, time and content) again is
    a duplicate, not a second outcome. Returns how many were new."""
    recorded = 0
    for item in items:
        card = cards[item.card]
        reason = item.override_reason.reason if item.override_reason else None
        display = None
        if reason is not None:
            display = reason.display or (
                OVERRIDE_REASONS.get(reason.code) if reason.system == OVERRIDE_SYSTEM else None
            )
        row = CdsFeedbackRow(
            card_id=card.id or 0,
            outcome=item.outcome,
            accepted_suggestions=json.dumps(sorted(s.id for s in item.accepted_suggestions or [])),
            override_system=reason.system if reason else None,
            override_code=reason.code if reason else None,
            override_display=display,
            override_comment=item.override_reason.user_comment if item.override_reason else None,
            outcome_at=item.outcome_timestamp,
            received_at=received,
            principal=principal.name,
        )
        same = session.execute(
            select(CdsFeedbackRow).where(
                col(CdsFeedbackRow.card_id) == row.card_id,
                col(CdsFeedbackRow.outcome) == row.outcome,
                col(CdsFeedbackRow.outcome_at) == row.outcome_at,
            )
        ).scalars()
        if any(_same_feedback(existing, row) for existing in same):
            continue
        session.add(row)
        session.flush()
        recorded += 1
    return recorded


def _same_feedback(a: CdsFeedbackRow, b: CdsFeedbackRow) -> bool:
    fields = ("accepted_suggestions", "override_system", "override_code", "override_comment")
    return all(getattr(a, name) == getattr(b, name) for name in fields)


def _text(value: Any) -> str | None:
    return value[:64] if isinstance(value, str) and value else None


__all__ = ["SERVICES", "add_cds_routes"]
