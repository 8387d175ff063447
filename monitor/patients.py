"""What the service holds for one patient: course state, events still in the pipeline, and
current decisions. One lookup shared by the patient API, FHIR out and the CDS order check."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.storage.models import DecisionRow, EventRow, OutboxRow, PatientRow


@dataclass(frozen=True, slots=True)
class PatientRecord:
    row: PatientRow | None
    pending_events: int  # stored, not yet folded (their outbox rows are open)
    known: bool  # a patient row, or at least one event: what makes a 404 otherwise

    def state(self) -> dict[str, Any]:
        """The course state; `status: none` before the first fold (events stored, none folded)."""
        return {"status": "none", **(json.loads(self.row.state) if self.row else {})}


def load_patient(session: Session, patient_id: str) -> PatientRecord:
    row = session.get(PatientRow, patient_id)
    pending = session.execute(
        select(func.count(col(OutboxRow.id))).where(
            col(OutboxRow.patient_id) == patient_id,
            col(OutboxRow.processed_at).is_(None),
        )
    ).scalar_one()
    known = (
        row is not None
        or session.execute(
            select(col(EventRow.id)).where(col(EventRow.patient_id) == patient_id).limit(1)
        ).first()
        is not None
    )
    return PatientRecord(row=row, pending_events=int(pending), known=known)


def current_decisions(session: Session, patient_id: str) -> list[dict[str, Any]]:
    """The patient's current (not superseded) decisions, as the contract's JSON."""
    bodies = session.execute(
        select(col(DecisionRow.body)).where(
            col(DecisionRow.patient_id) == patient_id,
            col(DecisionRow.superseded_at).is_(None),
        )
    ).scalars()
    return [json.loads(body) for body in bodies]
