"""Accepting events: event + outbox row in one transaction; idempotent by `event_id`."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select

from monitor.operations.metrics import EVENTS_ACCEPTED, EVENTS_DUPLICATE
from monitor.services import Services
from monitor.storage.models import EventRow, OutboxRow
from policies.events import Event, canonical_body

IngestStatus = Literal["accepted", "duplicate"]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """Per event, in request order; `patients` holds the ids that have new work."""

    statuses: list[tuple[str, IngestStatus]]
    patients: list[str]


class EventConflictError(Exception):
    """Event ids already stored with another body; nothing of the batch was stored."""

    def __init__(self, event_ids: list[str]) -> None:
        super().__init__(", ".join(event_ids))
        self.event_ids = event_ids


def body_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def store_events(
    sessions: sessionmaker[Session], events: Sequence[Event], now: dt.datetime
) -> IngestResult:
    """Store new events with their outbox rows, atomically; report duplicates; reject conflicts.

    Two requests racing on one id: the unique constraint makes one of them fail; it retries
    once and then sees the other's row (duplicate or conflict).
    """
    try:
        return _store(sessions, events, now)
    except IntegrityError:
        return _store(sessions, events, now)


def _store(
    sessions: sessionmaker[Session], events: Sequence[Event], now: dt.datetime
) -> IngestResult:
    with sessions.begin() as session:
        return store_in(session, events, now)


def store_in(session: Session, events: Sequence[Event], now: dt.datetime) -> IngestResult:
    """`store_events` inside the caller's transaction (the chair checks clearance and stores
    the dose under one lock)."""
    # One body per event, in request order: keyed by id, a second body for the same id would
    # overwrite the first (stored under the first's "accepted", the conflict unseen).
    bodies = [canonical_body(e) for e in events]
    stored: dict[str, str] = dict(
        session.execute(
            select(col(EventRow.event_id), col(EventRow.body_hash)).where(
                col(EventRow.event_id).in_({e.event_id for e in events})
            )
        ).all()
    )
    conflicts: list[str] = []
    statuses: list[tuple[str, IngestStatus]] = []
    new: list[tuple[Event, str, str]] = []
    seen_in_request: dict[str, str] = {}
    for event, body in zip(events, bodies, strict=True):
        digest = body_hash(body)
        known = stored.get(event.event_id) or seen_in_request.get(event.event_id)
        if known is None:
            seen_in_request[event.event_id] = digest
            statuses.append((event.event_id, "accepted"))
            new.append((event, body, digest))
        elif known == digest:
            statuses.append((event.event_id, "duplicate"))
        elif event.event_id not in conflicts:
            conflicts.append(event.event_id)
    if conflicts:
        raise EventConflictError(conflicts)
    rows = [
        EventRow(
            event_id=e.event_id,
            patient_id=e.patient_id,
            type=e.type,
            occurred_at=e.occurred_at,
            received_at=now,
            body=body,
            body_hash=digest,
        )
        for e, body, digest in new
    ]
    session.add_all(rows)
    session.flush()
    session.add_all(
        OutboxRow(event_pk=row.id, patient_id=row.patient_id, created_at=now)
        for row in rows
        if row.id is not None
    )
    patients = list(dict.fromkeys(e.patient_id for e, _, _ in new))
    return IngestResult(statuses=statuses, patients=patients)


def accept_events(services: Services, events: Sequence[Event], now: dt.datetime) -> IngestResult:
    """Store and count: the one path in for events, the JSON API and FHIR in alike. Raises
    `EventConflictError`, nothing stored. The caller then calls `dispatch` (after its own
    bookkeeping: in the embedded mode the worker competes for the database at once)."""
    result = store_events(services.sessions, events, now)
    accepted = sum(1 for _, status in result.statuses if status == "accepted")
    EVENTS_ACCEPTED.inc(accepted)
    EVENTS_DUPLICATE.inc(len(result.statuses) - accepted)
    return result


def dispatch(services: Services, result: IngestResult) -> None:
    """Hand the patients with new work to the dispatcher, after the commit (the outbox
    re-drives anything not handed over)."""
    if result.patients and services.dispatcher is not None:
        services.dispatcher.enqueue(result.patients)
