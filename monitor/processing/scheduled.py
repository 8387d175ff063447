"""The processing's periodic jobs (run by `monitor.scheduler`): the outbox re-driven, due
timers fired, and all open work sent after an embedded restart.

- re-drive the outbox: accepted events not processed within the grace period are sent again;
- fire due timers: patients whose next timer (`patient.next_timer_at`) has come are processed,
  which raises `reassessment_overdue` / `escalation_unanswered` exactly as `replay --until`.

Timers live in the database, never as Celery ETAs. Runs are logged with counts only.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import ColumnElement, exists, or_, update
from sqlmodel import col, select

from monitor.operations.clock import wall_now
from monitor.services import Services
from monitor.storage.database import is_postgresql
from monitor.storage.models import DeadLetterRow, OutboxRow, PatientRow

log = logging.getLogger("monitor.scheduler")
BATCH = 1_000


def _still_open() -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """Outbox rows not yet folded and not parked by a dead letter."""
    return col(OutboxRow.processed_at).is_(None), col(OutboxRow.dead_letter_id).is_(None)


def enqueue_all_open(services: Services) -> int:
    """After a (re)start of the embedded mode nothing else can be working on open outbox rows:
    send them all now, whatever their age."""
    assert services.dispatcher is not None
    with services.sessions() as session:
        patients = list(
            session.execute(
                select(col(OutboxRow.patient_id)).where(*_still_open()).distinct()
            ).scalars()
        )
    if not patients:
        return 0
    sent = services.dispatcher.enqueue(patients)
    log.info("open work re-sent after start", extra={"patients": len(patients)})
    return sent


def redrive_outbox(services: Services) -> int:
    """Enqueue patients whose accepted events are still unprocessed after the grace period.

    The grace period runs on the wall clock from when this job first saw a row open (it stamps
    `enqueued_at` then), not from `created_at`: that is the service clock, which `fixed_now`
    freezes (tests, demos), and then no row would ever look stale.
    """
    assert services.dispatcher is not None
    wall = wall_now()
    stale = wall - dt.timedelta(seconds=services.settings.outbox_redrive_after_s)
    still_open = _still_open()
    with services.sessions.begin() as session:
        session.execute(
            update(OutboxRow)
            .where(*still_open, col(OutboxRow.enqueued_at).is_(None))
            .values(enqueued_at=wall)
        )
        patients = list(
            session.execute(
                select(col(OutboxRow.patient_id))
                .where(*still_open, col(OutboxRow.enqueued_at) <= stale)
                .distinct()
                .limit(BATCH)
            ).scalars()
        )
        if patients:
            session.execute(
                update(OutboxRow)
                .where(col(OutboxRow.patient_id).in_(patients), *still_open)
                .values(enqueued_at=wall, enqueue_count=col(OutboxRow.enqueue_count) + 1)
            )
    sent = services.dispatcher.enqueue(patients) if patients else 0
    if patients:
        log.info("outbox re-driven", extra={"patients": len(patients), "sent": sent})
    return sent


def fire_due_timers(services: Services) -> int:
    """Enqueue patients whose next timer (overdue, unanswered escalation) has come.

    Due is judged on the service clock; a lost task is fired again after the re-drive grace
    period on the wall clock (as in `redrive_outbox`). On PostgreSQL the rows are taken with
    SKIP LOCKED: two schedulers at once split the patients instead of both sending them."""
    assert services.dispatcher is not None
    now = services.settings.now()
    wall = wall_now()
    stale = wall - dt.timedelta(seconds=services.settings.outbox_redrive_after_s)
    with services.sessions.begin() as session:
        query = (
            select(col(PatientRow.patient_id))
            .where(
                col(PatientRow.next_timer_at) <= now,
                or_(
                    col(PatientRow.timer_enqueued_at).is_(None),
                    col(PatientRow.timer_enqueued_at) <= stale,
                ),
                # a patient whose fold is dead-lettered waits for the admin (retry, quarantine)
                ~exists().where(
                    col(DeadLetterRow.patient_id) == col(PatientRow.patient_id),
                    col(DeadLetterRow.retried_at).is_(None),
                ),
            )
            .limit(BATCH)
        )
        if is_postgresql(session):
            query = query.with_for_update(skip_locked=True)
        patients = list(session.execute(query).scalars())
        if patients:
            session.execute(
                update(PatientRow)
                .where(col(PatientRow.patient_id).in_(patients))
                .values(timer_enqueued_at=wall)
            )
    sent = services.dispatcher.enqueue(patients) if patients else 0
    if patients:
        log.info("due timers fired", extra={"patients": len(patients), "sent": sent})
    return sent
