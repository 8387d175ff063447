"""Running `process_patient` as a job: which errors are transient, backoff, dead letters.

Shared by the Celery task (production) and the in-process worker (embedded default), so both
retry the same errors the same way and dead-letter with the same reasons.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlmodel import col

from monitor.alerts.service import add_alerts, monitoring_stopped
from monitor.operations.backoff import exponential_backoff
from monitor.operations.clock import wall_now
from monitor.operations.logsafe import SafeMessageError, describe_chain
from monitor.operations.metrics import DEAD_LETTERED, TASKS_FAILED
from monitor.processing.service import (
    QUIET_ACTIONS,
    ProcessOutcome,
    StoredEventError,
    process_patient,
)
from monitor.services import Services
from monitor.storage.models import DeadLetterRow, OutboxRow, PatientRow
from monitor.webhooks.delivery import fan_out
from policies.engine import FoldError
from policies.events import is_patient_id

log = logging.getLogger("monitor.jobs")

TASK_NAME = "monitor.process_patient"

# Errors that go away by themselves: the database restarting, a dropped connection, a lock
# timeout, a full pool. Anything else is a defect or bad data: retrying would loop.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    DisconnectionError,
    PoolTimeoutError,
)


class PoisonMessageError(SafeMessageError, ValueError):
    """A message no retry can fix (e.g. a malformed patient id)."""


class TransientFailureError(SafeMessageError):
    """What a retried task reports to Celery instead of the error itself (whose message may
    quote data): the error described by `describe_chain`."""


class DeadLetteredError(SafeMessageError):
    """What a task that gave up raises to Celery, once the dead letter is written."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, TRANSIENT_ERRORS)


def backoff_seconds(services: Services, attempt: int) -> float:
    """Exponential backoff with jitter, capped: 1, 2, 4, ... s (attempt counts from 0)."""
    settings = services.settings
    return exponential_backoff(
        settings.task_retry_backoff_s, settings.task_retry_backoff_max_s, attempt, (0.5, 1.0)
    )


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
        if not is_patient_id(patient_id):
            shown = f"a {type(patient_id).__name__} of {len(str(patient_id))} characters"
            raise PoisonMessageError(f"not a patient id: {shown}")
        outcome = process_patient(
            services.sessions,
            services.pack,
            patient_id,
            services.settings.now(),
            quiet=frozenset() if services.settings.alert_info_decisions else QUIET_ACTIONS,
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
    re-drive does not loop on them (an admin retry re-opens them). A patient's monitoring never
    stops silently: in the same transaction, an urgent alert to admin and physician (and its
    webhook deliveries). The error is described without patient data. Returns the row id."""
    reason = (
        "poison_message"
        if isinstance(exc, PoisonMessageError)
        else "retries_exhausted"
        if is_transient(exc)
        else "processing_error"
    )
    is_patient = is_patient_id(patient_id)
    shown_id = patient_id if isinstance(patient_id, str) else repr(patient_id)
    event_id = failed_event(exc)
    error = describe_chain(exc)
    now = services.settings.now()
    delivery_ids: list[int] = []
    try:
        with services.sessions.begin() as session:
            row = DeadLetterRow(
                task=TASK_NAME,
                patient_id=shown_id[:256],
                reason=reason,
                error=error[:4000],
                attempts=attempts,
                created_at=now,
                event_id=event_id,
            )
            session.add(row)
            session.flush()
            assert row.id is not None
            dead_id = row.id
            if is_patient:
                assert isinstance(patient_id, str)
                session.execute(
                    update(OutboxRow)
                    .where(
                        col(OutboxRow.patient_id) == patient_id,
                        col(OutboxRow.processed_at).is_(None),
                        col(OutboxRow.dead_letter_id).is_(None),
                    )
                    .values(dead_letter_id=dead_id)
                )
                patient = session.get(PatientRow, patient_id)
                unit = json.loads(patient.state).get("unit") if patient is not None else None
                why = f"{reason.replace('_', ' ')} ({error[:300]})"
                if event_id is not None:
                    why += f" at event {event_id}"
                raised = add_alerts(
                    session, [monitoring_stopped(patient_id, unit, dead_id, why, now)]
                )
                delivery_ids = fan_out(session, raised, wall_now())
    except TRANSIENT_ERRORS as failure:
        # The database is down: the outbox rows stay open, so the re-drive retries later.
        log.error(
            "dead letter could not be stored",
            extra={"reason": reason, "error_type": type(failure).__name__},
        )
        return None
    DEAD_LETTERED.inc()
    log.error(
        "work dead-lettered",
        exc_info=exc,  # the traceback, sanitised by the log formatter (monitor.operations.logsafe)
        extra={
            "reason": reason,
            "dead_letter_id": dead_id,
            "error_type": type(exc).__name__,
            "event_id": event_id,
        },
    )
    if delivery_ids and services.dispatcher is not None:
        services.dispatcher.enqueue_deliveries(delivery_ids)  # after the commit
    return dead_id


def failed_event(exc: BaseException) -> str | None:
    """The event a failed fold names (FoldError, StoredEventError), if any."""
    return exc.event_id if isinstance(exc, FoldError | StoredEventError) else None
