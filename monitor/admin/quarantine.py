"""Setting one event aside: the way out of a dead-lettered fold, by `admin`, audited.

A quarantined event stays stored (and is shown on the patient page) but is left out of every
fold of its patient. Quarantining or releasing one re-opens the patient's parked work (the
outbox rows its dead letters parked) and marks the patient for a fresh fold, so the rest of
its events are evaluated again at once; the caller enqueues the patient after the commit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select

from monitor.storage.models import DeadLetterRow, EventRow, OutboxRow, PatientRow
from policies.decisions import utc_text_or_none


@dataclass(frozen=True, slots=True)
class QuarantineResult:
    event_id: str
    patient_id: str
    quarantined: bool  # the event's state now
    changed: bool  # false: it already was in that state
    quarantined_at: str | None
    quarantined_by: str | None
    reason: str | None

    def view(self) -> dict[str, object]:
        return {
            "event_id": self.event_id,
            "patient_id": self.patient_id,
            "quarantined": self.quarantined,
            "changed": self.changed,
            "quarantined_at": self.quarantined_at,
            "quarantined_by": self.quarantined_by,
            "reason": self.reason,
        }


def set_quarantine(
    sessions: sessionmaker[Session],
    event_id: str,
    *,
    quarantined: bool,
    by: str,
    reason: str | None,
    now: dt.datetime,
) -> QuarantineResult | None:
    """Quarantine (or release) one event; None when no such event is stored. Doing it twice
    changes nothing (the first quarantine's time, author and reason stand)."""
    with sessions.begin() as session:
        row = session.execute(
            select(EventRow).where(col(EventRow.event_id) == event_id)
        ).scalar_one_or_none()
        if row is None:
            return None
        changed = (row.quarantined_at is not None) != quarantined
        if changed:
            row.quarantined_at = now if quarantined else None
            row.quarantined_by = by if quarantined else None
            row.quarantine_reason = reason if quarantined else None
            reopen_patient(session, row.patient_id, now)
        return QuarantineResult(
            event_id=row.event_id,
            patient_id=row.patient_id,
            quarantined=quarantined,
            changed=changed,
            quarantined_at=utc_text_or_none(row.quarantined_at),
            quarantined_by=row.quarantined_by,
            reason=row.quarantine_reason,
        )


def reopen_patient(session: Session, patient_id: str, now: dt.datetime) -> None:
    """The patient's open dead letters count as retried, their parked outbox rows are open
    again, and the stored fold is no longer current (the set of events it folds changed)."""
    dead_ids = list(
        session.execute(
            select(col(DeadLetterRow.id)).where(
                col(DeadLetterRow.patient_id) == patient_id, col(DeadLetterRow.retried_at).is_(None)
            )
        ).scalars()
    )
    if dead_ids:
        session.execute(
            update(DeadLetterRow).where(col(DeadLetterRow.id).in_(dead_ids)).values(retried_at=now)
        )
        session.execute(
            update(OutboxRow)
            .where(col(OutboxRow.dead_letter_id).in_(dead_ids))
            .values(dead_letter_id=None)
        )
    session.execute(
        update(PatientRow)
        .where(col(PatientRow.patient_id) == patient_id)
        .values(evaluated_at=None, fold_checkpoint=None)
    )
