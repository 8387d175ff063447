"""Accepting events: event + outbox row in one transaction; idempotent by `event_id`."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select

from monitor.operations.metrics import EVENTS_ACCEPTED, EVENTS_DUPLICATE
from monitor.services import Services
from monitor.storage.database import is_postgresql
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


Then = Callable[[Session, IngestResult], None]


def store_events(
    sessions: sessionmaker[Session],
    events: Sequence[Event],
    now: dt.datetime,
    then: Then | None = None,
) -> IngestResult:
    """Store new events with their outbox rows, atomically; report duplicates; reject conflicts.
    `then`: called with the session and the result, last in the same transaction (the API's
    audit row commits with the events, one commit instead of two); not after a conflict.

    Two requests racing on one id: the unique constraint makes one of them fail; it retries
    once (`then` too: the first attempt was rolled back) and then sees the other's row
    (duplicate or conflict).
    """
    try:
        return _store(sessions, events, now, then)
    except IntegrityError:
        return _store(sessions, events, now, then)


def _store(
    sessions: sessionmaker[Session],
    events: Sequence[Event],
    now: dt.datetime,
    then: Then | None = None,
) -> IngestResult:
    with sessions.begin() as session:
        result = store_in(session, events, now)
        if then is not None:
            then(session, result)
        return result


def store_in(session: Session, events: Sequence[Event], now: dt.datetime) -> IngestResult:
    """`store_events` inside the caller's transaction (the chair checks clearance and stores
    the dose under one lock)."""
    # One body per event, in request order: keyed by id, a second body for the same id would
    # overwrite the first (stored under the first's "accepted", the conflict unseen).
    bodies = [canonical_body(e) for e in events]
    stored = _stored_hashes(session, list(dict.fromkeys(e.event_id for e in events)))
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
    if new:
        _insert(session, new, now)
    patients = list(dict.fromkeys(e.patient_id for e, _, _ in new))
    return IngestResult(statuses=statuses, patients=patients)


_EVENT = EventRow.__table__  # type: ignore[attr-defined]
_OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]
# PostgreSQL: statements whose text is the same for 1 event or 1,000 (arrays, not one
# placeholder per value), so neither SQLAlchemy nor psycopg re-renders or re-parses them per
# batch, and psycopg can prepare them
_STORED_POSTGRESQL = text(
    "SELECT event_id, body_hash FROM event WHERE event_id = ANY(CAST(:ids AS text[]))"
)
# the events in request order (ids ascending with it), then an outbox row for each
_INSERT_POSTGRESQL = text(
    "WITH new AS ("
    " INSERT INTO event (event_id, patient_id, type, occurred_at, received_at, body, body_hash)"
    " SELECT e.event_id, e.patient_id, e.type, e.occurred_at, :now, e.body, e.body_hash"
    " FROM unnest(CAST(:event_ids AS text[]), CAST(:patient_ids AS text[]),"
    " CAST(:types AS text[]), CAST(:occurred AS timestamptz[]), CAST(:bodies AS text[]),"
    " CAST(:hashes AS text[])) WITH ORDINALITY"
    " AS e(event_id, patient_id, type, occurred_at, body, body_hash, n)"
    " ORDER BY e.n"
    " RETURNING id, patient_id)"
    " INSERT INTO outbox (event_pk, patient_id, created_at, enqueue_count)"
    " SELECT id, patient_id, :now, 0 FROM new ORDER BY id"
)
_INSERT_EVENTS = insert(_EVENT).returning(_EVENT.c.id, sort_by_parameter_order=True)
_INSERT_OUTBOX = insert(_OUTBOX)


def _stored_hashes(session: Session, event_ids: list[str]) -> dict[str, str]:
    """The body hash of each of these ids already stored."""
    if is_postgresql(session):
        found = session.execute(_STORED_POSTGRESQL, {"ids": event_ids})
    else:
        found = session.execute(
            select(col(EventRow.event_id), col(EventRow.body_hash)).where(
                col(EventRow.event_id).in_(event_ids)
            )
        )
    return {str(event_id): str(digest) for event_id, digest in found}


def _insert(session: Session, new: list[tuple[Event, str, str]], now: dt.datetime) -> None:
    """The new events and their outbox rows, in core statements (no ORM objects, no flush).
    A concurrent insert of one of the ids fails on the unique constraint (IntegrityError): the
    caller retries, or its transaction is rolled back."""
    if is_postgresql(session):
        session.execute(
            _INSERT_POSTGRESQL,
            {
                "now": now.astimezone(dt.UTC),
                "event_ids": [e.event_id for e, _, _ in new],
                "patient_ids": [e.patient_id for e, _, _ in new],
                "types": [e.type for e, _, _ in new],
                "occurred": [e.occurred_at.astimezone(dt.UTC) for e, _, _ in new],
                "bodies": [body for _, body, _ in new],
                "hashes": [digest for _, _, digest in new],
            },
        )
        return
    ids = session.execute(
        _INSERT_EVENTS,
        [
            {
                "event_id": e.event_id,
                "patient_id": e.patient_id,
                "type": e.type,
                "occurred_at": e.occurred_at,
                "received_at": now,
                "body": body,
                "body_hash": digest,
            }
            for e, body, digest in new
        ],
    ).scalars()
    session.execute(
        _INSERT_OUTBOX,
        [
            {"event_pk": pk, "patient_id": e.patient_id, "created_at": now, "enqueue_count": 0}
            for pk, (e, _, _) in zip(ids, new, strict=True)
        ],
    )


def accept_events(
    services: Services, events: Sequence[Event], now: dt.datetime, then: Then | None = None
) -> IngestResult:
    """Store and count: the one path in for events, the JSON API and FHIR in alike. Raises
    `EventConflictError`, nothing stored. The caller then calls `dispatch` (after its own
    bookkeeping: in the embedded mode the worker competes for the database at once). `then`:
    as for `store_events`."""
    result = store_events(services.sessions, events, now, then)
    accepted = sum(1 for _, status in result.statuses if status == "accepted")
    EVENTS_ACCEPTED.inc(accepted)
    EVENTS_DUPLICATE.inc(len(result.statuses) - accepted)
    return result


def dispatch(services: Services, result: IngestResult) -> None:
    """Hand the patients with new work to the dispatcher, after the commit (the outbox
    re-drives anything not handed over)."""
    if result.patients and services.dispatcher is not None:
        services.dispatcher.enqueue(result.patients)
