"""Operators' actions on work that failed (no HTTP): dead letters listed and retried."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from monitor.storage.models import DeadLetterRow, OutboxRow


def list_dead_letters(session: Session, *, include_retried: bool) -> list[dict[str, Any]]:
    query = select(DeadLetterRow).order_by(col(DeadLetterRow.id))
    if not include_retried:
        query = query.where(col(DeadLetterRow.retried_at).is_(None))
    return [row.model_dump(mode="json") for row in session.execute(query).scalars()]


class DeadLetterNotFoundError(LookupError):
    pass


def retry_dead_letter(session: Session, *, dead_letter_id: int, now: dt.datetime) -> str | None:
    """Re-open the outbox rows the dead letter parked (the re-drive and the next task see them
    again). Returns the patient to enqueue after the commit, if the dead letter names one."""
    row = session.get(DeadLetterRow, dead_letter_id)
    if row is None:
        raise DeadLetterNotFoundError(dead_letter_id)
    row.retried_at = now
    session.execute(
        update(OutboxRow)
        .where(col(OutboxRow.dead_letter_id) == dead_letter_id)
        .values(dead_letter_id=None)
    )
    return row.patient_id
