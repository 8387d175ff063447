"""The chair list (roles infusion and nurse) and the chair's two forms: a dose given
(infusion), a grading (nurse, infusion). Unit-scoped tokens reach their units only (404).

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

import datetime as dt
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query
from fastapi.responses import JSONResponse

from monitor.api.deps import (
    AUTH_RESPONSES,
    ClockDep,
    Infusion,
    PatientIdPath,
    ServicesDep,
    require,
)
from monitor.api.json_body import StrictJsonRouter
from monitor.auth.tokens import Principal
from monitor.chair.schemas import (
    AdministrationForm,
    AssessmentForm,
    ChairList,
    Recorded,
    Refused,
)
from monitor.chair.service import (
    ChairRefusedError,
    NotInUnitError,
    chair_list,
    record_administration,
    record_assessment,
)
from monitor.ingest.service import dispatch
from policies.decisions import utc_text
from policies.events import NO_CONTROL, EventValidationError

router = StrictJsonRouter(tags=["chair"], responses=AUTH_RESPONSES)
UnitPath = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_CONTROL)]
ChairTeam = Annotated[Principal, Depends(require("nurse", "infusion"))]
NOON = dt.time(12, 0, tzinfo=dt.UTC)


def in_unit_scope(principal: Principal, unit: str) -> None:
    """A unit outside the token's units is answered as unknown (404)."""
    if not principal.sees_unit(unit):
        raise HTTPException(404, f"no unit {unit!r} in this token's scope")


@router.get(
    "/v1/units/{unit}/chair",
    summary="The unit's patients on treatment, with today's clearance and its reasons",
    response_model=ChairList,
)
def get_chair(
    unit: UnitPath,
    principal: ChairTeam,
    services: ServicesDep,
    clock: ClockDep,
    date: Annotated[
        dt.date | None,
        Query(description="the day (default today, UTC); another day is judged at 12:00 UTC"),
    ] = None,
) -> dict[str, Any]:
    now = clock.now()
    today = now.astimezone(dt.UTC).date()
    day = date or today
    at = now if day == today else dt.datetime.combine(day, NOON)
    in_unit_scope(principal, unit)
    with services.sessions() as session:
        patients = chair_list(session, unit, at)
    services.audit.record(principal, "GET /v1/units/{unit}/chair", f"unit:{unit}", 200, now)
    return {"unit": unit, "date": day, "as_of": utc_text(at), "patients": patients}


def _refused(exc: ChairRefusedError) -> JSONResponse:
    return JSONResponse(
        status_code=409, content={"detail": {"message": exc.message, "reasons": exc.reasons}}
    )


def _invalid(exc: EventValidationError) -> HTTPException:
    return HTTPException(422, [{"field": p.field, "message": p.message} for p in exc.problems])


@router.post(
    "/v1/units/{unit}/chair/{patient_id}/administrations",
    status_code=201,
    summary="Record a dose given at the chair (clearance is checked again first)",
    response_model=Recorded,
    responses={409: {"model": Refused, "description": "not cleared: nothing recorded"}},
)
def post_administration(
    unit: UnitPath,
    patient_id: PatientIdPath,
    form: AdministrationForm,
    principal: Infusion,
    services: ServicesDep,
    clock: ClockDep,
) -> Any:
    now = clock.now()
    action = "POST /v1/units/{unit}/chair/{patient_id}/administrations"
    resource = f"patient:{patient_id}"
    in_unit_scope(principal, unit)
    try:
        event, result = record_administration(
            services, unit, patient_id, form.model_dump(exclude_none=True), now
        )
    except NotInUnitError:
        services.audit.record(principal, action, resource, 404, now)
        raise HTTPException(404, f"no patient {patient_id!r} in unit {unit!r}") from None
    except EventValidationError as exc:
        services.audit.record(principal, action, resource, 422, now)
        raise _invalid(exc) from None
    except ChairRefusedError as exc:
        services.audit.record(principal, action, resource, 409, now)
        return _refused(exc)
    services.audit.record(principal, action, resource, 201, now)
    dispatch(services, result)
    return {"event_id": event.event_id, "patient_id": patient_id}


@router.post(
    "/v1/units/{unit}/chair/{patient_id}/assessments",
    status_code=201,
    summary="Record a neuropathy grading made at the chair",
    response_model=Recorded,
)
def post_assessment(
    unit: UnitPath,
    patient_id: PatientIdPath,
    form: AssessmentForm,
    principal: ChairTeam,
    services: ServicesDep,
    clock: ClockDep,
) -> Any:
    now = clock.now()
    action = "POST /v1/units/{unit}/chair/{patient_id}/assessments"
    resource = f"patient:{patient_id}"
    in_unit_scope(principal, unit)
    try:
        event, result = record_assessment(
            services, unit, patient_id, form.model_dump(exclude_none=True), "nurse", now
        )
    except NotInUnitError:
        services.audit.record(principal, action, resource, 404, now)
        raise HTTPException(404, f"no patient {patient_id!r} in unit {unit!r}") from None
    except EventValidationError as exc:
        services.audit.record(principal, action, resource, 422, now)
        raise _invalid(exc) from None
    services.audit.record(principal, action, resource, 201, now)
    dispatch(services, result)
    return {"event_id": event.event_id, "patient_id": patient_id}
