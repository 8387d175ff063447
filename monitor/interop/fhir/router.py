"""FHIR R4 over HTTP.

- `POST /fhir/r4` (role `ingest`): a Bundle (transaction, batch, collection) or one resource,
  stored exactly as `POST /v1/events` stores events (same validation, idempotency from the
  resources' identifiers, durable with its outbox row before the answer).
- `GET /fhir/r4/Patient/{id}/$monitor-summary` (roles `nurse`, `infusion`): the patient's
  current decisions, pending reassessment, watches and alerts as a `Bundle`
  (`monitor.interop.fhir.summary` says what goes where); an unknown patient is a 404
  `OperationOutcome`.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

from typing import Annotated

from fastapi import Depends
from fastapi.responses import JSONResponse, Response
from fhir.resources.R4B.operationoutcome import OperationOutcome, OperationOutcomeIssue
from starlette.concurrency import run_in_threadpool

from monitor.api.deps import (
    AUTH_RESPONSES,
    BaseUrl,
    CareTeam,
    ClockDep,
    Ingest,
    JsonBody,
    PatientIdPath,
    ServicesDep,
    json_body,
)
from monitor.api.json_body import StrictJsonRouter
from monitor.interop.fhir.problems import IssueCode
from monitor.interop.fhir.service import FHIR_JSON, accept_fhir, load_summary, outcome_response
from monitor.interop.fhir.summary import build_monitor_summary

router = StrictJsonRouter(tags=["fhir"], responses=AUTH_RESPONSES)
ACCEPTED_TYPES = (FHIR_JSON, "application/json")
SUMMARY_PATH = "/fhir/r4/Patient/{patient_id}/$monitor-summary"
FHIR_OBJECT = {FHIR_JSON: {"schema": {"type": "object", "description": "a FHIR R4 resource"}}}
BODY_CODES: dict[int, IssueCode] = {415: "not-supported", 413: "too-costly", 400: "structure"}
FhirBody = Annotated[
    JsonBody, Depends(json_body(*ACCEPTED_TYPES, name=f"{FHIR_JSON} (or application/json)"))
]


@router.post(
    "/fhir/r4",
    summary="FHIR R4 in: a Bundle (transaction, batch, collection) or one resource",
    response_class=Response,  # answered as FHIR JSON (`fhir_response`), documented below
    openapi_extra={"requestBody": {"required": True, "content": FHIR_OBJECT}},
    responses={
        200: {
            "description": "a transaction-response or batch-response Bundle",
            "content": FHIR_OBJECT,
        },
        201: {"description": "a lone resource, stored as an event", "content": FHIR_OBJECT},
        400: {"description": "the body is not JSON (OperationOutcome)"},
        409: {"description": "an event id reused with another body (OperationOutcome)"},
        413: {"description": "body too large"},
        415: {"description": "not FHIR JSON"},
        422: {"description": "unmappable resources (OperationOutcome naming each)"},
    },
)
async def post_fhir(principal: Ingest, services: ServicesDep, body: FhirBody) -> JSONResponse:
    if body.problem is not None:
        code = BODY_CODES[body.problem.status]
        return outcome_response(body.problem.status, code, body.problem.detail)
    return await run_in_threadpool(accept_fhir, services, body.value, principal)


@router.get(
    SUMMARY_PATH,
    summary="FHIR Bundle: current decisions (DetectedIssue), pending reassessment (Task), "
    "watch and escalation (Flag), alerts (Communication)",
    response_class=Response,
    responses={
        200: {"content": FHIR_OBJECT, "description": "a Bundle of type collection"},
        404: {"content": FHIR_OBJECT, "description": "an OperationOutcome: no such patient"},
    },
)
def monitor_summary(
    patient_id: PatientIdPath,
    principal: CareTeam,
    services: ServicesDep,
    clock: ClockDep,
    base_url: BaseUrl,
) -> Response:
    now = clock.now()
    with services.sessions() as session:
        loaded = load_summary(session, patient_id)
    if loaded is not None and not principal.sees_unit(loaded[0].get("unit")):
        loaded = None  # outside the token's units: not found, as an unknown patient
    status = 200 if loaded is not None else 404
    services.audit.record(principal, f"GET {SUMMARY_PATH}", f"patient:{patient_id}", status, now)
    if loaded is None:
        outcome = OperationOutcome(
            issue=[
                OperationOutcomeIssue(
                    severity="error",
                    code="not-found",
                    diagnostics=f"no events for patient {patient_id!r}",
                )
            ]
        )
        return Response(outcome.model_dump_json(), status_code=404, media_type=FHIR_JSON)
    state, decisions, triggers, alerts = loaded
    bundle = build_monitor_summary(
        patient_id=patient_id,
        state=state,
        decisions=decisions,
        trigger_events=triggers,
        alerts=alerts,
        base_url=base_url,
        now=now,
    )
    return Response(bundle.model_dump_json(), media_type=FHIR_JSON)
