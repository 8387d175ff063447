"""What the service holds for one patient: course state, events still in the pipeline, and
current decisions. One lookup shared by the patient API, FHIR out and the CDS order check."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from monitor.storage.models import DeadLetterRow, DecisionRow, EventRow, OutboxRow, PatientRow
from policies.decisions import utc_text


@dataclass(frozen=True, slots=True)
class PatientRecord:
    row: PatientRow | None
    pending_events: int  # stored, not yet folded (their outbox rows are open, not parked)
    known: bool  # a patient row, or at least one event: what makes a 404 otherwise
    monitoring_error: dict[str, Any] | None = None  # the open dead letter, when folding failed
    quarantined: tuple[dict[str, Any], ...] = ()  # events an admin set aside

    def state(self) -> dict[str, Any]:
        """The course state; `status: none` before the first fold (events stored, none folded)."""
        return {"status": "none", **(json.loads(self.row.state) if self.row else {})}

    def monitoring(self) -> dict[str, Any]:
        """What the patient API shows of the pipeline: is this patient's monitoring running?"""
        return {
            "monitoring": self.monitoring_error or {"status": "running"},
            "quarantined_events": list(self.quarantined),
        }


def load_patient(session: Session, patient_id: str) -> PatientRecord:
    row = session.get(PatientRow, patient_id)
    pending = session.execute(
        select(func.count(col(OutboxRow.id))).where(
            col(OutboxRow.patient_id) == patient_id,
            col(OutboxRow.processed_at).is_(None),
            col(OutboxRow.dead_letter_id).is_(None),
        )
    ).scalar_one()
    known = (
        row is not None
        or session.execute(
            select(col(EventRow.id)).where(col(EventRow.patient_id) == patient_id).limit(1)
        ).first()
        is not None
    )
    dead = session.execute(
        select(DeadLetterRow)
        .where(col(DeadLetterRow.patient_id) == patient_id, col(DeadLetterRow.retried_at).is_(None))
        .order_by(col(DeadLetterRow.id).desc())
        .limit(1)
    ).scalar_one_or_none()
    return PatientRecord(
        row=row,
        pending_events=int(pending),
        known=known,
        monitoring_error=None if dead is None else _stopped(dead),
        quarantined=tuple(quarantined_events(session, patient_id)),
    )


def quarantined_events(session: Session, patient_id: str | None = None) -> list[dict[str, Any]]:
    """The events an admin set aside (of one patient, or all), in timeline order."""
    query = select(EventRow).where(col(EventRow.quarantined_at).is_not(None))
    if patient_id is not None:
        query = query.where(col(EventRow.patient_id) == patient_id)
    rows = session.execute(query.order_by(col(EventRow.occurred_at), col(EventRow.id))).scalars()
    return [_quarantine_view(event) for event in rows]


def _stopped(dead: DeadLetterRow) -> dict[str, Any]:
    return {
        "status": "stopped",
        "since": utc_text(dead.created_at),
        "dead_letter_id": dead.id,
        "reason": dead.reason,
        "error": dead.error,
        "event_id": dead.event_id,
    }


def _quarantine_view(event: EventRow) -> dict[str, Any]:
    assert event.quarantined_at is not None
    return {
        "event_id": event.event_id,
        "patient_id": event.patient_id,
        "type": event.type,
        "occurred_at": utc_text(event.occurred_at),
        "quarantined_at": utc_text(event.quarantined_at),
        "quarantined_by": event.quarantined_by,
        "reason": event.quarantine_reason,
    }


def current_decisions(session: Session, patient_id: str) -> list[dict[str, Any]]:
    """The patient's current (not superseded) decisions, as the contract's JSON."""
    bodies = session.execute(
        select(col(DecisionRow.body)).where(
            col(DecisionRow.patient_id) == patient_id,
            col(DecisionRow.superseded_at).is_(None),
        )
    ).scalars()
    return [json.loads(body) for body in bodies]


def decision_rows(
    session: Session, patient_id: str, *, include_superseded: bool
) -> list[dict[str, Any]]:
    """The patient's decisions in time order, as the contract's JSON; superseded ones (when
    asked for) say since when."""
    query = select(DecisionRow).where(col(DecisionRow.patient_id) == patient_id)
    if not include_superseded:
        query = query.where(col(DecisionRow.superseded_at).is_(None))
    rows = sorted(session.execute(query).scalars(), key=lambda r: (r.at, r.decision_id))
    return [decision_body(row) for row in rows]


def find_decision(session: Session, patient_id: str, decision_id: str) -> dict[str, Any] | None:
    row = session.execute(
        select(DecisionRow).where(
            col(DecisionRow.decision_id) == decision_id,
            col(DecisionRow.patient_id) == patient_id,
        )
    ).scalar_one_or_none()
    return decision_body(row) if row is not None else None


def decision_body(row: DecisionRow) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(row.body)
    if row.superseded_at is not None:
        body["superseded_at"] = utc_text(row.superseded_at)
        body["superseded_reason"] = row.superseded_reason or "later_events"
        if row.superseded_by is not None:
            body["superseded_by"] = row.superseded_by
    if row.in_force_from is not None:
        body["in_force_from"] = utc_text(row.in_force_from)
    return body


def history_rows(session: Session, patient_id: str) -> tuple[list[tuple[str, str]], list[str]]:
    """What the charts are drawn from: the events the folds see (quarantined ones are left
    out: the patient page lists them) and the current decisions' bodies, in time order."""
    bodies = [
        (event_id, body)
        for event_id, body in session.execute(
            select(col(EventRow.event_id), col(EventRow.body))
            .where(
                col(EventRow.patient_id) == patient_id,
                col(EventRow.quarantined_at).is_(None),
            )
            .order_by(col(EventRow.occurred_at), col(EventRow.id))
        ).all()
    ]
    decisions = list(
        session.execute(
            select(col(DecisionRow.body))
            .where(
                col(DecisionRow.patient_id) == patient_id,
                col(DecisionRow.superseded_at).is_(None),
            )
            .order_by(col(DecisionRow.at))
        ).scalars()
    )
    return bodies, decisions


def due_reassessments(
    session: Session, before: dt.datetime, units: frozenset[str] | None
) -> list[dict[str, Any]]:
    """Patients whose pending reassessment is due before `before`, or overdue and not made up,
    soonest first; only these units' patients when `units` is given."""
    rows = session.execute(
        select(PatientRow).where(
            or_(
                col(PatientRow.reassessment_due_at) <= before,
                col(PatientRow.state).contains('"reassessment_overdue_since": "'),
            )
        )
    ).scalars()
    found = []
    for row in rows:
        state = json.loads(row.state)
        unit = state.get("unit")
        if units is not None and unit not in units:
            continue
        overdue = state.get("reassessment_overdue_since")
        due = state.get("next_reassessment_due")
        found.append(
            {
                "patient_id": row.patient_id,
                "unit": unit,
                "status": row.status,
                "due_at": overdue or due,
                "overdue": overdue is not None,
            }
        )
    return sorted(found, key=lambda r: (not r["overdue"], r["due_at"] or "", r["patient_id"]))
