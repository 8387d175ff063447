"""Running `process_patient` as a job: which errors are transient, backoff, dead letters.

Shared by the Celery task (production) and the in-process worker (embedded default), so both
retry the same errors the same way and dead-letter with the same reasons.
"""

from __future__ import annotations

import logging
import random
import re

from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlmodel import col

from monitor.metrics import DEAD_LETTERED, TASKS_FAILED
from monitor.processing import ProcessOutcome, process_patient
from monitor.services import Services
from monitor.storage.models import DeadLetterRow, OutboxRow

log = logging.getLogger("monitor.jobs")

TASK_NAME = "monitor.process_patient"
PATIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# Errors that go away by themselves: the database restarting, a dropped connection, a lock
# timeout, a full pool. Anything else is a defect or bad data: retrying would loop.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    DisconnectionError,
    PoolTimeoutError,
)


class PoisonMessageError(ValueError):
    """A message no retry can fix (e.g. a malformed patient id)."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, TRANSIENT_ERRORS)


def backoff_seconds(services: Services, attempt: int) -> float:
    """Exponential backoff with jitter, capped: 1, 2, 4, ... s (attempt counts from 0)."""
    settings = services.settings
    ceiling = min(settings.task_retry_backoff_max_s, settings.task_retry_backoff_s * 2**attempt)
    return float(ceiling * random.uniform(0.5, 1.0))


def retry_delay(services: Services, exc: BaseException, retries_done: int) -> float | None:
    """Seconds to wait before retrying after `exc`, or None when the work must be
    dead-lettered (not transient, or the retry bound is reached)."""
    if not is_transient(exc) or retries_done >= services.settings.task_max_retries:
        return None
    delay = backoff_seconds(services, retries_done)
    log.warning(
        "transient error, retrying",
        extra={
            "attempt": retries_done + 1,
            "delay_s": round(delay, 2),
            "error_type": type(exc).__name__,
        },
    )
    return delay


def run_process_patient(services: Services, patient_id: object) -> ProcessOutcome:
    try:
        if not isinstance(patient_id, str) or not PATIENT_ID.match(patient_id):
            raise PoisonMessageError(f"not a patient id: {str(patient_id)[:80]!r}")
        outcome = process_patient(
            services.sessions, services.pack, patient_id, services.settings.now()
        )
    except Exception:
        TASKS_FAILED.inc()  # each failed run, retried or not
        raise
    if outcome.delivery_ids and services.dispatcher is not None:
        services.dispatcher.enqueue_deliveries(list(outcome.delivery_ids))  # after the commit
    return outcome


def dead_letter(
    services: Services, patient_id: object, exc: BaseException, attempts: int
) -> int | None:
    """Record why the work failed for good, and park the patient's open outbox rows so the
    re-drive does not loop on them (an admin retry re-opens them). Returns the row id."""
    reason = (
        "poison_message"
        if isinstance(exc, PoisonMessageError)
        else "retries_exhausted"
        if is_transient(exc)
        else "processing_error"
    )
    shown_id = patient_id if isinstance(patient_id, str) else repr(patient_id)
    now = services.settings.now()
    try:
        with services.sessions.begin() as session:
            row = DeadLetterRow(
                task=TASK_NAME,
                patient_id=shown_id[:256],
                reason=reason,
                error=f"{type(exc).__name__}: {exc}"[:4000],
                attempts=attempts,
                created_at=now,
            )
            session.add(row)
            session.flush()
            if isinstance(patient_id, str):
                session.execute(
                    update(OutboxRow)
                    .where(
                        col(OutboxRow.patient_id) == patient_id,
                        col(OutboxRow.processed_at).is_(None),
                        col(OutboxRow.dead_letter_id).is_(None),
                    )
                    .values(dead_letter_id=row.id)
                )
            dead_id = row.id
    except TRANSIENT_ERRORS:
        # The database is down: the outbox rows stay open, so the re-drive retries later.
        log.exception("dead letter could not be stored", extra={"reason": reason})
        return None
    DEAD_LETTERED.inc()
    log.error(
        "work dead-lettered",
        extra={"reason": reason, "dead_letter_id": dead_id, "error_type": type(exc).__name__},
    )
    return dead_id
