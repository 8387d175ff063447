"""A patient's course (the care roles: nurse, physician, pharmacy, infusion): state, decisions,
history, and the infusion chair's clearance (role `infusion`). Every read is audited, found or
not; a token bound to units sees only the patients whose course is in one of them.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

import datetime as dt
from typing import Annotated, Any

from fastapi import HTTPException, Path, Query

from monitor.api.deps import (
    AUTH_RESPONSES,
    CareTeam,
    Clock,
    ClockDep,
    Infusion,
    PatientIdPath,
    ServicesDep,
)
from monitor.api.json_body import StrictJsonRouter
from monitor.auth.tokens import Principal
from monitor.patients.history import history
from monitor.patients.schemas import (
    ClearanceView,
    DecisionsView,
    DecisionView,
    DueReassessments,
    HistoryView,
    PatientView,
)
from monitor.patients.service import (
    PatientRecord,
    decision_rows,
    due_reassessments,
    find_decision,
    history_rows,
    load_patient,
)
from monitor.services import Services
from policies.clearance import clearance
from policies.decisions import utc_text, utc_text_or_none

router = StrictJsonRouter(tags=["patients"], responses=AUTH_RESPONSES)
DecisionIdPath = Annotated[str, Path(pattern=r"^d-[0-9a-f]{24}$")]


def _known_patient(
    services: Services,
    clock: Clock,
    principal: Principal,
    patient_id: str,
    what: str,
) -> PatientRecord:
    """The patient's record, the read audited; a 404 when no event of the patient is known, or
    when the caller's token is bound to units and the patient's course is in none of them (the
    same answer: whether the patient exists does not leak)."""
    with services.sessions() as session:
        record = load_patient(session, patient_id)
    if record.known and not principal.sees_unit(record.state().get("unit")):
        record = PatientRecord(row=None, pending_events=0, known=False)
    status = 200 if record.known else 404
    services.audit.record(principal, what, f"patient:{patient_id}", status, clock.now())
    if not record.known:
        raise HTTPException(404, f"no events for patient {patient_id!r}")
    return record


@router.get("/v1/patients/{patient_id}", summary="Course state", response_model=PatientView)
def get_patient(
    patient_id: PatientIdPath,
    principal: CareTeam,
    services: ServicesDep,
    clock: ClockDep,
) -> dict[str, Any]:
    record = _known_patient(services, clock, principal, patient_id, "GET /v1/patients/{patient_id}")
    return {
        "patient_id": patient_id,
        **record.state(),  # status none: events stored, none folded yet
        "pending_events": record.pending_events,
        # UTC `Z` form, as every other time the API serves
        "evaluated_at": utc_text_or_none(record.row.evaluated_at if record.row else None),
        **record.monitoring(),
    }


@router.get(
    "/v1/patients/{patient_id}/decisions",
    summary="Current decisions",
    response_model=DecisionsView,
)
def get_decisions(
    patient_id: PatientIdPath,
    principal: CareTeam,
    services: ServicesDep,
    clock: ClockDep,
    include: Annotated[str | None, Query(pattern="^superseded$")] = None,
) -> dict[str, Any]:
    what = "GET /v1/patients/{patient_id}/decisions"
    _known_patient(services, clock, principal, patient_id, what)
    with services.sessions() as session:
        decisions = decision_rows(session, patient_id, include_superseded=include == "superseded")
    return {"patient_id": patient_id, "decisions": decisions}


@router.get(
    "/v1/patients/{patient_id}/decisions/{decision_id}",
    summary="One decision, current or superseded (where an alert links to)",
    response_model=DecisionView,
)
def get_decision(
    patient_id: PatientIdPath,
    decision_id: DecisionIdPath,
    principal: CareTeam,
    services: ServicesDep,
    clock: ClockDep,
) -> dict[str, Any]:
    if principal.units is not None:
        what = "GET /v1/patients/{patient_id}/decisions/{decision_id}"
        _known_patient(services, clock, principal, patient_id, what)
    with services.sessions() as session:
        body = find_decision(session, patient_id, decision_id)
    services.audit.record(
        principal,
        "GET /v1/patients/{patient_id}/decisions/{decision_id}",
        f"patient:{patient_id}",
        200 if body is not None else 404,
        clock.now(),
    )
    if body is None:
        raise HTTPException(404, f"no decision {decision_id} for patient {patient_id!r}")
    return body


@router.get(
    "/v1/patients/{patient_id}/clearance",
    summary="May the dose be given today?",
    response_model=ClearanceView,
)
def get_clearance(
    patient_id: PatientIdPath,
    principal: Infusion,
    services: ServicesDep,
    clock: ClockDep,
) -> dict[str, Any]:
    what = "GET /v1/patients/{patient_id}/clearance"
    record = _known_patient(services, clock, principal, patient_id, what)
    return clearance(record.state(), record.pending_events, clock.now(), record.monitoring_error)


@router.get(
    "/v1/patients/{patient_id}/history",
    summary="Grades per domain over time (patient reports marked), doses given, dose decisions, "
    "immunotherapy episodes and response measures (for charts)",
    response_model=HistoryView,
)
def get_history(
    patient_id: PatientIdPath,
    principal: CareTeam,
    services: ServicesDep,
    clock: ClockDep,
) -> dict[str, Any]:
    if principal.units is not None:
        _known_patient(
            services, clock, principal, patient_id, "GET /v1/patients/{patient_id}/history"
        )
    with services.sessions() as session:
        bodies, decisions = history_rows(session, patient_id)
    services.audit.record(
        principal,
        "GET /v1/patients/{patient_id}/history",
        f"patient:{patient_id}",
        200 if bodies else 404,
        clock.now(),
    )
    if not bodies:
        raise HTTPException(404, f"no events for patient {patient_id!r}")
    return history(patient_id, bodies, decisions, clock.now())


@router.get(
    "/v1/reassessments",
    summary="The reassessments due: overdue ones first, then by due time",
    response_model=DueReassessments,
)
def get_due_reassessments(
    principal: CareTeam,
    services: ServicesDep,
    clock: ClockDep,
    within_days: Annotated[
        int, Query(ge=0, le=90, description="due within this many days from now (default 7)")
    ] = 7,
) -> dict[str, Any]:
    before = clock.now() + dt.timedelta(days=within_days)
    with services.sessions() as session:
        due = due_reassessments(session, before, principal.units)
    services.audit.record(principal, "GET /v1/reassessments", "reassessments", 200, clock.now())
    return {"due_before": utc_text(before), "reassessments": due}
