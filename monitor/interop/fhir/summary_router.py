"""`GET /fhir/r4/Patient/{id}/$monitor-summary` (roles `nurse`, `infusion`): the patient's
current decisions, pending reassessment, watches and alerts as a FHIR `Bundle`
(`monitor.interop.fhir.summary` says what goes where). An unknown patient is a 404
`OperationOutcome`.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Request
from fastapi.responses import Response
from fhir.resources.R4B.operationoutcome import OperationOutcome, OperationOutcomeIssue
from sqlmodel import Session, col, select

from monitor.alerts.service import alert_view
from monitor.auth.tokens import Principal
from monitor.interop.fhir.summary import build_monitor_summary
from monitor.patients.service import current_decisions, load_patient
from monitor.services import Services
from monitor.storage.models import AlertAckRow, AlertRow, EventRow

FHIR_JSON = "application/fhir+json"
SUMMARY_PATH = "/fhir/r4/Patient/{patient_id}/$monitor-summary"
PATIENT_ID = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", max_length=64)]
IN_CHUNK = 500  # event ids per `IN (...)`: well under any driver's parameter limit


def add_fhir_summary_routes(
    app: FastAPI, services: Services, require: Callable[..., Callable[..., Principal]]
) -> None:
    @app.get(
        SUMMARY_PATH,
        summary="FHIR Bundle: current decisions (DetectedIssue), pending reassessment (Task), "
        "watch and escalation (Flag), alerts (Communication)",
        response_class=Response,
        responses={
            200: {"content": {FHIR_JSON: {}}, "description": "a Bundle of type collection"},
            404: {
                "content": {FHIR_JSON: {}},
                "description": "an OperationOutcome: no such patient",
            },
        },
    )
    def monitor_summary(
        patient_id: PATIENT_ID,
        request: Request,
        principal: Annotated[Principal, Depends(require("nurse", "infusion"))],
    ) -> Response:
        now = services.settings.now()
        with services.sessions() as session:
            loaded = _load(session, patient_id)
        status = 200 if loaded is not None else 404
        services.audit.record(
            principal,
            f"GET {SUMMARY_PATH}",
            f"patient:{patient_id}",
            status,
            now,
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
        base_url = services.settings.public_base_url or str(request.base_url).rstrip("/")
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


Loaded = tuple[
    dict[str, Any], list[dict[str, Any]], dict[str, dict[str, Any]], list[dict[str, Any]]
]


def _load(session: Session, patient_id: str) -> Loaded | None:
    """State, current decisions, their trigger events and every alert (with its ack); None
    for a patient the service has no event of (as `GET /v1/patients/{id}`)."""
    record = load_patient(session, patient_id)
    if not record.known:
        return None
    state: dict[str, Any] = json.loads(record.row.state) if record.row is not None else {}
    decisions = current_decisions(session, patient_id)
    wanted = sorted({d["trigger"] for d in decisions if not d["trigger"].startswith("timer:")})
    triggers: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        for event_id, body in session.execute(
            select(col(EventRow.event_id), col(EventRow.body)).where(
                col(EventRow.patient_id) == patient_id,
                col(EventRow.event_id).in_(wanted[start : start + IN_CHUNK]),
            )
        ).all():
            triggers[event_id] = json.loads(body)
    alerts = [
        alert_view(alert, ack)
        for alert, ack in session.execute(
            select(AlertRow, AlertAckRow)
            .outerjoin(AlertAckRow, col(AlertAckRow.alert_id) == col(AlertRow.id))
            .where(col(AlertRow.patient_id) == patient_id)
            .order_by(col(AlertRow.id))
        ).all()
    ]
    return state, decisions, triggers, alerts


__all__ = ["SUMMARY_PATH", "add_fhir_summary_routes"]
