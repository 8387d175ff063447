"""Invites (roles nurse and infusion, within their units) and the patient's report, which only
an invite's secret may send, about its own patient.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials

from monitor.api.deps import (
    AUTH_RESPONSES,
    BaseUrl,
    Clock,
    ClockDep,
    PatientIdPath,
    RowIdPath,
    ServicesDep,
    bearer,
    require,
)
from monitor.api.json_body import StrictJsonRouter
from monitor.auth.tokens import Principal
from monitor.ingest.service import dispatch, store_in
from monitor.intake.invites import (
    LINK_UNKNOWN,
    create_invite,
    find_invite,
    invite_state,
    invite_url,
    list_invites,
    mark_used,
    qr_svg,
    revoke_invite,
)
from monitor.intake.report import PatientReportForm, report_event
from monitor.intake.schemas import InviteCreated, InviteList, InviteView, ReportReceived
from monitor.operations.metrics import EVENTS_ACCEPTED
from monitor.patients.service import load_patient
from monitor.services import Services
from monitor.storage.models import PatientInviteRow
from policies.decisions import utc_text

router = StrictJsonRouter(tags=["patient reports"], responses=AUTH_RESPONSES)
Inviter = Annotated[Principal, Depends(require("nurse", "infusion"))]
INVITES = "/v1/patients/{patient_id}/invites"
REPORTS = "/v1/patient-reports"
REPORT_ACTION = f"POST {REPORTS}"
# what the report page shows the patient as it is (kind words, no jargon)
LINK_EXPIRED = "This link has expired; ask your care team for a new one."
LINK_REVOKED = "This link is no longer valid; ask your care team for a new one."

# A patient report must never act as a clinician's grading (POLICY V9): where the pack would
# take it as one (version 1), the intake is closed rather than let a report stop a drug.
NOT_ADVISORY = (
    "patient reports are taken only under a pack where they advise and clinicians decide "
    "(POLICY V9: default@2, label@2, or a site file with patient_reports_advise_only = true); "
    "this service decides with {pack}, which would treat a report as a clinician's grading"
)
REPORTS_CLOSED = (
    "Your care team cannot take reports through this link at the moment. Please call them "
    "to tell them how you are."
)


def _patient_unit(
    services: Services, principal: Principal, patient_id: str, action: str, now: Any
) -> str | None:
    """The patient's unit, when the patient is known and in the caller's scope; else a 404
    (audited), the same answer either way, as on the patient page's routes."""
    with services.sessions() as session:
        record = load_patient(session, patient_id)
    unit = record.state().get("unit") if record.known else None
    if not record.known or not principal.sees_unit(unit):
        services.audit.record(principal, action, f"patient:{patient_id}", 404, now)
        raise HTTPException(404, f"no events for patient {patient_id!r}")
    return unit if isinstance(unit, str) else None


@router.post(
    INVITES,
    status_code=201,
    summary="Invite the patient to report symptoms: a link (and its QR code) shown once",
    response_model=InviteCreated,
    responses={404: {"description": "no such patient in the caller's units"}},
)
def post_invite(
    patient_id: PatientIdPath,
    principal: Inviter,
    services: ServicesDep,
    clock: ClockDep,
    base_url: BaseUrl,
) -> dict[str, Any]:
    now = clock.now()
    action = f"POST {INVITES}"
    unit = _patient_unit(services, principal, patient_id, action, now)
    if not services.pack.patient_reports_advise_only:
        services.audit.record(principal, action, f"patient:{patient_id}", 409, now)
        raise HTTPException(409, NOT_ADVISORY.format(pack=services.pack.label))
    days = services.settings.intake_link_days
    new = create_invite(services.sessions, patient_id, unit, principal.name, now, days)
    services.audit.record(principal, action, f"patient:{patient_id} invite:{new.row.id}", 201, now)
    url = invite_url(base_url, new.secret)
    return {
        "id": new.row.id,
        "url": url,
        "expires_at": utc_text(new.row.expires_at),
        "qr_svg": qr_svg(url),
    }


@router.get(
    INVITES,
    summary="The patient's invites and their state (never their links)",
    response_model=InviteList,
)
def get_invites(
    patient_id: PatientIdPath, principal: Inviter, services: ServicesDep, clock: ClockDep
) -> dict[str, Any]:
    now = clock.now()
    action = f"GET {INVITES}"
    _patient_unit(services, principal, patient_id, action, now)
    invites = list_invites(services.sessions, patient_id, now)
    services.audit.record(principal, action, f"patient:{patient_id}", 200, now)
    return {"patient_id": patient_id, "invites": invites}


@router.delete(
    f"{INVITES}/{{invite_id}}",
    summary="Revoke an invite: its link stops working at once",
    response_model=InviteView,
    responses={404: {"description": "no such invite of this patient in the caller's units"}},
)
def delete_invite(
    patient_id: PatientIdPath,
    invite_id: RowIdPath,
    principal: Inviter,
    services: ServicesDep,
    clock: ClockDep,
) -> dict[str, Any]:
    now = clock.now()
    action = f"DELETE {INVITES}/{{invite_id}}"
    _patient_unit(services, principal, patient_id, action, now)
    revoked = revoke_invite(services.sessions, patient_id, invite_id, now)
    resource = f"patient:{patient_id} invite:{invite_id}"
    services.audit.record(principal, action, resource, 200 if revoked else 404, now)
    if revoked is None:
        raise HTTPException(404, f"no invite {invite_id} of patient {patient_id!r}")
    return revoked


def invite_holder(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    services: ServicesDep,
    clock: ClockDep,
) -> PatientInviteRow:
    """The invite whose secret is the bearer, while active (the guard lets only such a secret
    through unchecked, and only to this route). A staff token is refused: a report is the
    patient's own word."""
    now = clock.now()
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is not None:
        services.audit.record(principal, REPORT_ACTION, "denied", 403, now)
        raise HTTPException(
            403, f"role {principal.role!r} may not {REPORT_ACTION}: it takes a patient's invite"
        )
    secret = credentials.credentials if credentials is not None else ""
    row = find_invite(services.sessions, secret) if secret else None
    if row is None or row.id is None:
        services.audit.record_refusal(REPORT_ACTION, 401, now)
        raise HTTPException(401, LINK_UNKNOWN, headers={"WWW-Authenticate": "Bearer"})
    state = invite_state(row, now)
    if state != "active":
        services.audit.record_invite(row.id, REPORT_ACTION, f"patient:{row.patient_id}", 401, now)
        detail = LINK_EXPIRED if state == "expired" else LINK_REVOKED
        raise HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})
    return row


@router.post(
    REPORTS,
    status_code=201,
    summary="A patient's symptom report, sent with their invite link (stored as an assessment)",
    response_model=ReportReceived,
    responses={401: {"description": "the invite link is unknown, expired or revoked"}},
)
def post_patient_report(
    invite: Annotated[PatientInviteRow, Depends(invite_holder)],
    form: PatientReportForm,
    services: ServicesDep,
    clock: ClockDep,
) -> dict[str, Any]:
    return _store_report(services, clock, invite, form)


def _store_report(
    services: Services, clock: Clock, invite: PatientInviteRow, form: PatientReportForm
) -> dict[str, Any]:
    """Stored with its outbox row (the worker folds it) before the 201, as `POST /v1/events`."""
    assert invite.id is not None
    now = clock.now()
    if not services.pack.patient_reports_advise_only:  # the pack changed since the invite
        services.audit.record_invite(invite.id, REPORT_ACTION, f"patient:{invite.patient_id}",
                                     409, now)  # fmt: skip
        raise HTTPException(409, REPORTS_CLOSED)
    event = report_event(form, invite.patient_id, now)
    with services.sessions.begin() as session:
        result = store_in(session, [event], now)
        mark_used(session, invite.id, now)
    EVENTS_ACCEPTED.inc()
    services.audit.record_invite(invite.id, REPORT_ACTION, f"patient:{invite.patient_id}", 201, now)
    dispatch(services, result)
    return {
        "event_id": event.event_id,
        "received_at": utc_text(now),
        "care_team_phone": services.settings.care_team_phone,
    }
