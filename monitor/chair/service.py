"""The chair list and what is recorded at the chair. No HTTP here.

A dose is recorded under the patient's lock, after clearance is judged again in the same
transaction: two nurses recording at once cannot both pass, and a dose is refused while the
patient's latest events are still being processed (they may change the answer)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from sqlmodel import Session, col, select

from monitor.ingest.service import IngestResult, store_in
from monitor.patients.service import load_patient
from monitor.processing.service import lock_patient
from monitor.report_windows.service import weekly_statuses
from monitor.services import Services
from monitor.storage.models import PatientRow
from policies.clearance import clearance
from policies.events import Event, parse_event

ON_TREATMENT = ("active", "held")


class NotInUnitError(LookupError):
    """No such patient in this unit (or outside the caller's units): a 404."""


class ChairRefusedError(Exception):
    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.reasons = reasons


def _regimen(state: dict[str, Any]) -> dict[str, Any]:
    dose, bsa = state.get("dose_mg_m2"), state.get("bsa_m2")
    return {
        "dose_mg_m2": dose,
        "dose_mg": round(dose * bsa, 2) if dose is not None and bsa is not None else None,
        "schedule": state.get("schedule"),
        "route": state.get("route"),
    }


def _reassessment(state: dict[str, Any]) -> dict[str, Any] | None:
    overdue = state.get("reassessment_overdue_since")
    due = state.get("next_reassessment_due")
    if overdue is None and due is None:
        return None
    return {"due_at": overdue or due, "overdue": overdue is not None}


def chair_list(session: Session, unit: str, at: dt.datetime) -> list[dict[str, Any]]:
    """The unit's patients on treatment (active or held), by id, each with its clearance at
    `at`, the current regimen, the last dose and the interval, the reassessment, and the
    weekly patient report (`monitor.report_windows`)."""
    marker = f'"unit": {json.dumps(unit)}'  # the stored state is json.dumps'd: the same text
    rows = session.execute(
        select(col(PatientRow.patient_id))
        .where(col(PatientRow.state).contains(marker), col(PatientRow.status).in_(ON_TREATMENT))
        .order_by(col(PatientRow.patient_id))
    ).scalars()
    patients = []
    states = {}
    for patient_id in list(rows):
        record = load_patient(session, patient_id)
        state = record.state()
        if state.get("unit") != unit:
            continue
        states[patient_id] = state
        patients.append(
            {
                "patient_id": patient_id,
                "status": state["status"],
                "clearance": clearance(state, record.pending_events, at, record.monitoring_error),
                "regimen": _regimen(state),
                "last_dose_at": state.get("last_dose_at"),
                "next_dose_not_before": state.get("next_dose_not_before"),
                "reassessment": _reassessment(state),
            }
        )
    weekly = weekly_statuses(session, states, at)
    return [{**p, "weekly_report": weekly[p["patient_id"]]} for p in patients]


def _locked_state(session: Session, unit: str, patient_id: str) -> tuple[dict[str, Any], Any]:
    """The patient's record under its lock (`SELECT ... FOR UPDATE`; SQLite holds the write
    lock, the one the worker's fold takes), when the patient's course is in this unit."""
    lock_patient(session, patient_id)
    record = load_patient(session, patient_id)
    state = record.state()
    if not record.known or state.get("unit") != unit:
        raise NotInUnitError(patient_id)
    return state, record


def record_administration(
    services: Services,
    unit: str,
    patient_id: str,
    form: dict[str, Any],
    now: dt.datetime,
) -> tuple[Event, IngestResult]:
    """Store a dose given at the chair, if clearance allows it at the time it was given (so
    never a second dose inside the minimum interval, whatever the pack). Raises
    `ChairRefusedError` (nothing stored), `NotInUnitError`, `EventValidationError`."""
    given_at: dt.datetime = form.get("given_at") or now
    body = {
        "event_id": f"chair-{uuid.uuid4().hex}",
        "type": "administration",
        "patient_id": patient_id,
        "occurred_at": given_at.isoformat(),
        **{k: v for k, v in form.items() if k != "given_at" and v is not None},
    }
    event = parse_event(body)
    with services.sessions.begin() as session:
        state, record = _locked_state(session, unit, patient_id)
        # the interval too: the pack's, or the label's 72 h (`policies.clearance`)
        answer = clearance(state, record.pending_events, given_at, record.monitoring_error)
        if not answer["cleared"]:
            raise ChairRefusedError(
                "the dose is not cleared: nothing was recorded", list(answer["reasons"])
            )
        result = store_in(session, [event], now)
    return event, result


def record_assessment(
    services: Services,
    unit: str,
    patient_id: str,
    form: dict[str, Any],
    source: str,
    now: dt.datetime,
) -> tuple[Event, IngestResult]:
    """Store a grading made at the chair (`source`: nurse or clinician)."""
    assessed_at: dt.datetime = form.get("assessed_at") or now
    body: dict[str, Any] = {
        "event_id": f"chair-{uuid.uuid4().hex}",
        "type": "assessment",
        "patient_id": patient_id,
        "occurred_at": assessed_at.isoformat(),
        "grades": form["grades"],
        "source": source,
    }
    if form.get("cycle") is not None:
        body["cycle"] = form["cycle"]
    event = parse_event(body)
    with services.sessions.begin() as session:
        _locked_state(session, unit, patient_id)
        result = store_in(session, [event], now)
    return event, result
