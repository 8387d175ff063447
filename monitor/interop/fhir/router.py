"""FHIR R4 over HTTP.

- `GET /fhir/r4/metadata` and `GET /fhir/r4/OperationDefinition/monitor-summary` (public):
  what the server does (`monitor.interop.fhir.capability`).
- `GET /fhir/r4/Questionnaire/bipn-patient-report` (public: it holds no patient data): the
  patient report's form (`monitor.interop.fhir.questionnaire`); its QuestionnaireResponse is
  created as the other mapped types are.
- `POST /fhir/r4` (role `ingest`): a Bundle (transaction, batch, collection) or one resource,
  stored exactly as `POST /v1/events` stores events (same validation, idempotency from the
  resources' identifiers, durable with its outbox row before the answer).
- `POST /fhir/r4/{type}` (role `ingest`): FHIR's create, for each type the mapper reads.
- `GET` or `POST /fhir/r4/Patient/{id}/$monitor-summary` (care roles): the patient's
  current decisions, pending reassessment, watches and alerts as a `Bundle`
  (`monitor.interop.fhir.summary` says what goes where); an unknown patient is a 404
  `OperationOutcome`.

Every answer is FHIR JSON: asked for another format (`Accept`, `_format`) it is a 406, and every
error is an `OperationOutcome` (`monitor.api.errors`).

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

import datetime as dt
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fhir.resources.R4B.operationoutcome import OperationOutcome, OperationOutcomeIssue
from fhir.resources.R4B.parameters import Parameters
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from monitor.api.deps import (
    AUTH_RESPONSES,
    PUBLIC,
    BaseUrl,
    BodyProblem,
    CareTeam,
    ClockDep,
    Ingest,
    JsonBody,
    PatientIdPath,
    ServicesDep,
    json_body,
)
from monitor.api.guard import BodyTooLargeError
from monitor.api.json_body import InvalidJsonError, StrictJsonRouter, parse_json
from monitor.auth.tokens import Principal
from monitor.interop.fhir.capability import (
    SUMMARY_OPERATION,
    capability_statement,
    monitor_summary_definition,
)
from monitor.interop.fhir.formats import refused_format
from monitor.interop.fhir.inbound import MAPPED_TYPES
from monitor.interop.fhir.problems import IssueCode
from monitor.interop.fhir.questionnaire import QUESTIONNAIRE_ID, patient_report_questionnaire
from monitor.interop.fhir.service import (
    FHIR_JSON,
    accept_fhir,
    create_resource,
    load_summary,
    outcome_response,
)
from monitor.interop.fhir.summary import build_monitor_summary
from monitor.services import Services


def fhir_format(request: Request) -> None:
    """406 for a request that asks for a format other than JSON (`Accept`, `_format`)."""
    why = refused_format(request.headers.get("accept"), request.query_params.get("_format"))
    if why is not None:
        raise HTTPException(406, why)


router = StrictJsonRouter(
    tags=["fhir"], responses=AUTH_RESPONSES, dependencies=[Depends(fhir_format)]
)
ACCEPTED_TYPES = (FHIR_JSON, "application/json")
SUMMARY_PATH = f"/fhir/r4/Patient/{{patient_id}}/${SUMMARY_OPERATION}"
FHIR_OBJECT = {FHIR_JSON: {"schema": {"type": "object", "description": "a FHIR R4 resource"}}}
BODY_CODES: dict[int, IssueCode] = {415: "not-supported", 413: "too-costly", 400: "structure"}
FhirBody = Annotated[
    JsonBody, Depends(json_body(*ACCEPTED_TYPES, name=f"{FHIR_JSON} (or application/json)"))
]
NOT_ACCEPTABLE: dict[int | str, dict[str, Any]] = {
    406: {"description": "a format other than JSON asked for (OperationOutcome)"}
}


@router.get(
    "/fhir/r4/metadata",
    summary="FHIR CapabilityStatement: the resource types created, transaction and batch, "
    "$monitor-summary (public)",
    response_class=Response,
    openapi_extra=PUBLIC,
    responses={
        200: {"content": FHIR_OBJECT, "description": "a CapabilityStatement"},
        **NOT_ACCEPTABLE,
    },
)
def metadata(clock: ClockDep, base_url: BaseUrl) -> Response:
    statement = capability_statement(base_url, clock.now())
    return Response(statement.model_dump_json(), media_type=FHIR_JSON)


@router.get(
    f"/fhir/r4/OperationDefinition/{SUMMARY_OPERATION}",
    summary="FHIR OperationDefinition of $monitor-summary (public)",
    response_class=Response,
    openapi_extra=PUBLIC,
    responses={
        200: {"content": FHIR_OBJECT, "description": "an OperationDefinition"},
        **NOT_ACCEPTABLE,
    },
)
def summary_definition(clock: ClockDep) -> Response:
    return Response(monitor_summary_definition(clock.now()).model_dump_json(), media_type=FHIR_JSON)


@router.get(
    f"/fhir/r4/Questionnaire/{QUESTIONNAIRE_ID}",
    summary="FHIR Questionnaire of the patient report (public)",
    response_class=Response,
    openapi_extra=PUBLIC,
    responses={
        200: {"content": FHIR_OBJECT, "description": "a Questionnaire"},
        **NOT_ACCEPTABLE,
    },
)
def patient_report_form() -> Response:
    return Response(patient_report_questionnaire().model_dump_json(), media_type=FHIR_JSON)


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
        **NOT_ACCEPTABLE,
    },
)
async def post_fhir(principal: Ingest, services: ServicesDep, body: FhirBody) -> JSONResponse:
    if body.problem is not None:
        code = BODY_CODES[body.problem.status]
        return outcome_response(body.problem.status, code, body.problem.detail)
    return await run_in_threadpool(accept_fhir, services, body.value, principal)


@router.post(
    "/fhir/r4/{resource_type}",
    summary="FHIR create: one resource of a type the service maps (see /fhir/r4/metadata)",
    response_class=Response,
    openapi_extra={"requestBody": {"required": True, "content": FHIR_OBJECT}},
    responses={
        200: {
            "description": "already stored (sent before): the same Location, nothing new",
            "content": FHIR_OBJECT,
        },
        201: {
            "description": "stored as an event: the resource, its id the event's, and its Location",
            "content": FHIR_OBJECT,
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        400: {"description": "not JSON, or not of this type (OperationOutcome)"},
        404: {"description": "a type the service does not create (OperationOutcome)"},
        409: {"description": "an event id reused with another body (OperationOutcome)"},
        413: {"description": "body too large"},
        415: {"description": "not FHIR JSON"},
        422: {"description": "unmappable (OperationOutcome naming each problem)"},
        **NOT_ACCEPTABLE,
    },
)
async def create(
    resource_type: str, principal: Ingest, services: ServicesDep, base_url: BaseUrl, body: FhirBody
) -> JSONResponse:
    if resource_type not in MAPPED_TYPES:
        said = resource_type if len(resource_type) <= 40 else resource_type[:37] + "..."
        why = f"{said!r} is not created here; the service creates {', '.join(MAPPED_TYPES)}"
        return outcome_response(404, "not-supported", why, "resourceType")
    if body.problem is not None:
        code = BODY_CODES[body.problem.status]
        return outcome_response(body.problem.status, code, body.problem.detail)
    return await run_in_threadpool(
        create_resource, services, resource_type, body.value, principal, base_url
    )


async def summary_parameters(request: Request) -> BodyProblem | None:
    """The body of `POST .../$monitor-summary`: none, or a `Parameters` resource (the
    operation takes no input parameter, so it names none)."""
    try:
        raw = await request.body()
    except BodyTooLargeError as exc:
        return BodyProblem(413, str(exc.detail))
    if not raw.strip():
        return None
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_TYPES:
        return BodyProblem(415, f"Content-Type must be {FHIR_JSON}, not {content_type!r}")
    try:
        payload = parse_json(raw)
    except InvalidJsonError as exc:
        return BodyProblem(400, f"the body is not valid JSON: {exc}")
    if not isinstance(payload, dict) or payload.get("resourceType") != "Parameters":
        return BodyProblem(400, "the body is empty or a Parameters resource")
    try:
        parameters = Parameters.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]  # its message, never the value given
        where = ".".join(str(p) for p in first["loc"])
        return BodyProblem(400, f"not a valid Parameters resource: {where}: {first['msg']}")
    if parameters.parameter:
        names = sorted({str(p.name) for p in parameters.parameter})
        return BodyProblem(400, f"{SUMMARY_OPERATION} takes no input parameters; given: {names}")
    return None


SUMMARY_TITLE = (
    "FHIR Bundle: current decisions (DetectedIssue), pending reassessment (Task), "
    "watch and escalation (Flag), alerts (Communication)"
)
SUMMARY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": FHIR_OBJECT, "description": "a Bundle of type collection"},
    404: {"content": FHIR_OBJECT, "description": "an OperationOutcome: no such patient"},
    **NOT_ACCEPTABLE,
}


@router.get(
    SUMMARY_PATH, summary=SUMMARY_TITLE, response_class=Response, responses=SUMMARY_RESPONSES
)
def monitor_summary(
    patient_id: PatientIdPath,
    principal: CareTeam,
    services: ServicesDep,
    clock: ClockDep,
    base_url: BaseUrl,
) -> Response:
    return _summary("GET", patient_id, principal, services, clock.now(), base_url)


@router.post(
    SUMMARY_PATH,
    summary=SUMMARY_TITLE,
    response_class=Response,
    responses=SUMMARY_RESPONSES,
    openapi_extra={"requestBody": {"required": False, "content": FHIR_OBJECT}},
)
def monitor_summary_by_post(
    patient_id: PatientIdPath,
    principal: CareTeam,
    services: ServicesDep,
    clock: ClockDep,
    base_url: BaseUrl,
    problem: Annotated[BodyProblem | None, Depends(summary_parameters)],
) -> Response:
    """The operation by POST (FHIR allows both for an operation that changes nothing)."""
    if problem is not None:
        return outcome_response(problem.status, BODY_CODES[problem.status], problem.detail)
    return _summary("POST", patient_id, principal, services, clock.now(), base_url)


def _summary(
    method: str,
    patient_id: str,
    principal: Principal,
    services: Services,
    now: dt.datetime,
    base_url: str,
) -> Response:
    with services.sessions() as session:
        loaded = load_summary(session, patient_id)
    if loaded is not None and not principal.sees_unit(loaded[0].get("unit")):
        loaded = None  # outside the token's units: not found, as an unknown patient
    status = 200 if loaded is not None else 404
    services.audit.record(
        principal, f"{method} {SUMMARY_PATH}", f"patient:{patient_id}", status, now
    )
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
