"""CDS Hooks 2.0 over HTTP: discovery, the bortezomib order check, and card feedback.

- `GET /cds-services`: discovery, public (it names the services, nothing about patients).
- `POST /cds-services/{id}`: `bortezomib-order-check` (hook `order-sign`, also answers
  `order-select`) and `bortezomib-order-select` (hook `order-select`): one card per draft
  bortezomib MedicationRequest (see `monitor.interop.cds.cards`), each recorded for feedback.
- `POST /cds-services/{id}/feedback`: `accepted` / `overridden` outcomes of those cards.

Callers authenticate with the CDS Hooks JWT (`monitor.interop.cds.jwt_auth`; audited as
`cds:<iss>`) or with a bearer token of role `cds`.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

import logging
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from monitor.api.deps import (
    AUTH_RESPONSES,
    PUBLIC,
    BaseUrl,
    Clock,
    ClockDep,
    JsonBody,
    ServicesDep,
    bearer,
    json_body,
    principal_of,
    require,
)
from monitor.api.errors import field_problems, problem
from monitor.api.guard import route_template
from monitor.api.json_body import StrictJsonRouter
from monitor.auth.tokens import Principal
from monitor.interop.cds import feedback as card_feedback
from monitor.interop.cds.cards import DraftOrder, order_card
from monitor.interop.cds.jwt_auth import JwtRejectedError, JwtVerifier, looks_like_jwt, remember_jti
from monitor.interop.cds.schemas import (
    SERVICES,
    Cards,
    CdsFeedbackRequest,
    CdsHookRequest,
    Discovery,
    FeedbackRecorded,
    components,
    request_body,
    validated,
)
from monitor.interop.cds.service import course_of, draft_orders, record_cards, request_problems
from monitor.services import Services

log = logging.getLogger("monitor.cds")
router = StrictJsonRouter(tags=["cds-hooks"])
OPENAPI_COMPONENTS = components(CdsHookRequest, CdsFeedbackRequest)
CdsBody = Annotated[JsonBody, Depends(json_body())]
ServiceIdPath = Annotated[str, Path(pattern=r"^[a-z0-9-]{1,64}$")]
USAGE = (
    "Sign each call with a CDS Hooks JWT (ES384 or RS384) of a configured issuer, or send a "
    "bearer token of role cds. Draft orders in mg/m2, weekly or twice weekly, IV or SC "
    "(SNOMED CT)."
)
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    400: {"description": "the body is not JSON"},
    404: {"description": "no such CDS service"},
    413: {"description": "the body is too large"},
    422: {"description": "the request names the field(s) it gets wrong"},
}


def get_verifier(request: Request) -> JwtVerifier:
    """The app's verifier (built with the app: a bad client key stops the start-up; it caches
    the clients' JWK Sets)."""
    verifier: JwtVerifier = request.app.state.cds_verifier
    return verifier


def _cds_caller(*, feedback: bool) -> Callable[..., Principal]:
    """The caller of a CDS service: a CDS Hooks JWT whose `aud` is the endpoint called (for
    feedback the service's own is taken too), or a bearer token of role `cds`."""
    bearer_cds = require("cds")

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        services: ServicesDep,
        clock: ClockDep,
        base_url: BaseUrl,
        verifier: Annotated[JwtVerifier, Depends(get_verifier)],
    ) -> Principal:
        if (
            credentials is None
            or credentials.scheme.lower() != "bearer"
            or not looks_like_jwt(credentials.credentials)
        ):
            return bearer_cds.check(request, principal_of(request), services, clock)
        service = f"{base_url}/cds-services/{request.path_params['service_id']}"
        audiences = [f"{service}/feedback", service] if feedback else [service]
        try:
            verified = verifier.verify(credentials.credentials, audiences)
            # replay protection runs on the real time: the JWT's exp is checked against it
            remember_jti(services.sessions, verified, clock.wall())
        except JwtRejectedError as exc:
            log.warning("cds jwt refused", extra={"reason": str(exc)})
            services.audit.record_refusal(f"POST {route_template(request.scope)}", 401, clock.now())
            raise HTTPException(
                401,
                f"the CDS Hooks JWT is refused: {exc}",
                headers={"WWW-Authenticate": "Bearer"},
            ) from None
        return Principal(name=f"cds:{verified.issuer}"[:64], role="cds")

    return dependency


HookCaller = Annotated[Principal, Depends(_cds_caller(feedback=False))]
FeedbackCaller = Annotated[Principal, Depends(_cds_caller(feedback=True))]


@router.get(
    "/cds-services",
    summary="CDS Hooks discovery (public)",
    response_model=Discovery,
    openapi_extra=PUBLIC,
)
def discovery() -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": s.hook,
                "title": s.title,
                "description": s.description,
                "id": s.id,
                "usageRequirements": USAGE,
            }
            for s in SERVICES.values()
        ]
    }


@router.post(
    "/cds-services/{service_id}",
    summary="CDS Hooks: the bortezomib order check (order-sign, order-select)",
    response_model=Cards,
    openapi_extra=request_body(CdsHookRequest),
    responses=BODY_ERRORS,
)
async def call_service(
    service_id: ServiceIdPath,
    # the body is read only once the caller is known: nothing about it leaks to strangers
    principal: HookCaller,
    body: CdsBody,
    services: ServicesDep,
    clock: ClockDep,
    base_url: BaseUrl,
) -> JSONResponse:
    return await run_in_threadpool(
        _hook_call, services, clock, service_id, body, principal, base_url
    )


def _hook_call(
    services: Services,
    clock: Clock,
    service_id: str,
    payload: JsonBody,
    principal: Principal,
    base: str,
) -> JSONResponse:
    action = "POST /cds-services/{service_id}"
    service = SERVICES.get(service_id)
    if service is None:
        services.audit.record(principal, action, f"cds:{service_id}", 404, clock.now())
        raise HTTPException(404, f"no CDS service {service_id!r}: see GET /cds-services")
    if payload.problem is not None:  # not JSON, or too large
        status = payload.problem.status
        services.audit.record(principal, action, f"cds:{service_id}", status, clock.now())
        return problem(status, payload.problem.detail)
    body, problems = validated(CdsHookRequest, payload.value)
    orders: list[DraftOrder] = []
    if body is not None:
        problems = request_problems(service, body)
        if not problems:
            orders, problems = draft_orders(body, services)
    if body is None or problems:
        patient = body.context.patient_id if body is not None else None
        resource = f"patient:{patient}" if patient else f"cds:{service_id}"
        services.audit.record(principal, action, resource, 422, clock.now())
        return field_problems(422, problems)
    patient_id = body.context.patient_id
    cards = []
    if orders:
        course = course_of(services, patient_id)
        patient_url = f"{base}/patients/{patient_id}"
        cards = [
            order_card(course, order, clock.now(), patient_url, lambda: str(uuid.uuid4()))
            for order in orders
        ]
        with services.sessions.begin() as session:
            record_cards(
                session,
                service=service,
                body=body,
                course=course,
                cards=cards,
                principal=principal,
                now=clock.now(),
            )
    services.audit.record(principal, action, f"patient:{patient_id}", 200, clock.now())
    return JSONResponse({"cards": [card.body for card in cards]})


@router.post(
    "/cds-services/{service_id}/feedback",
    summary="CDS Hooks feedback: what became of a card (accepted / overridden)",
    response_model=FeedbackRecorded,
    openapi_extra=request_body(CdsFeedbackRequest),
    responses={**BODY_ERRORS, 404: {"description": "no such service, or a card it did not issue"}},
)
async def feedback(
    service_id: ServiceIdPath,
    principal: FeedbackCaller,
    body: CdsBody,
    services: ServicesDep,
    clock: ClockDep,
) -> JSONResponse:
    return await run_in_threadpool(_feedback_call, services, clock, service_id, body, principal)


def _feedback_call(
    services: Services, clock: Clock, service_id: str, payload: JsonBody, principal: Principal
) -> JSONResponse:
    action = "POST /cds-services/{service_id}/feedback"
    received = clock.now()
    if service_id not in SERVICES:
        services.audit.record(principal, action, f"cds:{service_id}", 404, received)
        raise HTTPException(404, f"no CDS service {service_id!r}: see GET /cds-services")
    if payload.problem is not None:
        status = payload.problem.status
        services.audit.record(principal, action, "cds-feedback", status, received)
        return problem(status, payload.problem.detail)
    body, problems = validated(CdsFeedbackRequest, payload.value)
    if body is None:
        services.audit.record(principal, action, "cds-feedback", 422, received)
        return field_problems(422, problems)
    resource = f"cds-feedback:{len(body.feedback)}"
    with services.sessions.begin() as session:
        cards = card_feedback.cards_of(session, service_id, {item.card for item in body.feedback})
        unknown = [
            (f"body.feedback.{i}.card", f"{item.card!r} is not a card {service_id} issued")
            for i, item in enumerate(body.feedback)
            if item.card not in cards
        ]
        if unknown:
            status, response = 404, field_problems(404, unknown, "unknown card")
        elif problems := card_feedback.feedback_problems(body.feedback, cards):
            status, response = 422, field_problems(422, problems)
        else:
            recorded = card_feedback.store_feedback(
                session, body.feedback, cards, principal, received
            )
            status = 200
            response = JSONResponse(
                {"recorded": recorded, "duplicates": len(body.feedback) - recorded}
            )
    services.audit.record(principal, action, resource, status, received)
    return response
