"""Periodic jobs (APScheduler), each safe to run twice and run by one replica at a time (the
database lease, `monitor.processing.lease`):

- re-drive the outbox: accepted events not processed within the grace period are sent again;
- fire due timers: patients whose next timer (`patient.next_timer_at`) has come are processed,
  which raises `reassessment_overdue` / `escalation_unanswered` exactly as `replay --until`;
- remind: an alert to the nurse feed the day before each pending reassessment is due;
- escalate: urgent alerts unacknowledged for `escalate_after_s` go to the next audience;
- re-drive webhook deliveries whose task was lost;
- checkpoint the audit chain: its signed head, outside the table (`monitor.auth.audit`).

Timers live in the database, never as Celery ETAs. Runs are logged with counts only.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import ColumnElement, exists, or_, update
from sqlmodel import Session, col, select

from monitor.alerts import service as alerts
from monitor.operations.clock import wall_now
from monitor.operations.metrics import ALERTS_RAISED
from monitor.processing.jobs import TRANSIENT_ERRORS
from monitor.processing.lease import SchedulerLease
from monitor.services import Services
from monitor.settings import Settings
from monitor.storage.database import is_postgresql
from monitor.storage.models import AlertRow, DeadLetterRow, OutboxRow, PatientRow
from monitor.webhooks.delivery import due_for_redrive, fan_out

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


def send_reminders(services: Services) -> int:
    """Reminder alerts for reassessments due within `reminder_before_s` (once each)."""
    return _raise_alerts(services, "reminder", alerts.due_reminders)


def escalate_alerts(services: Services) -> int:
    """Escalation alerts for urgent alerts nobody acknowledged in time (once each)."""
    return _raise_alerts(services, "escalation", alerts.escalate_unacknowledged)


def _raise_alerts(
    services: Services,
    kind: str,
    find: Callable[[Session, Settings, dt.datetime], list[AlertRow]],
) -> int:
    with services.sessions.begin() as session:
        raised = find(session, services.settings, services.settings.now())
        delivery_ids = fan_out(session, raised, wall_now())
    if delivery_ids and services.dispatcher is not None:
        services.dispatcher.enqueue_deliveries(delivery_ids)
    if raised:
        ALERTS_RAISED.labels(kind=kind).inc(len(raised))
        log.info("alerts raised", extra={"kind": kind, "alerts": len(raised)})
    return len(raised)


def redrive_deliveries(services: Services) -> int:
    """Send again webhook deliveries whose task was lost (overdue by the grace period)."""
    assert services.dispatcher is not None
    ids = due_for_redrive(services)
    if not ids:
        return 0
    sent = services.dispatcher.enqueue_deliveries(ids)
    log.info("webhook deliveries re-driven", extra={"deliveries": len(ids), "sent": sent})
    return sent


def checkpoint_audit(services: Services) -> int:
    """A signed checkpoint of the audit chain's head, every `audit_checkpoint_interval_s`,
    kept outside the table (`monitor.auth.audit`): 1 when one was written."""
    written = services.audit.periodic_checkpoint(
        services.settings.now(), services.settings.audit_checkpoint_interval_s
    )
    return 1 if written is not None else 0


JOBS: tuple[Callable[[Services], int], ...] = (
    redrive_outbox,
    fire_due_timers,
    send_reminders,
    escalate_alerts,
    redrive_deliveries,
    checkpoint_audit,
)


def run_jobs(services: Services, lease: SchedulerLease) -> dict[str, int] | None:
    """One tick: if this replica holds the lease, run every job; None when another acts.

    A job that fails (the database is down) is logged and the others still run; the next
    tick tries again, as every job picks up whatever is still due."""
    if not _hold(lease):
        return None
    counts: dict[str, int] = {}
    for job in JOBS:
        try:
            counts[job.__name__] = job(services)
        except TRANSIENT_ERRORS as exc:
            log.warning(
                "scheduler job failed; next tick retries",
                extra={"job": job.__name__, "error_type": type(exc).__name__},
            )
    return counts


def _hold(lease: SchedulerLease) -> bool:
    try:
        return lease.hold()
    except TRANSIENT_ERRORS as exc:
        log.warning("scheduler lease unreachable", extra={"error_type": type(exc).__name__})
        return False


def add_jobs(scheduler: BaseScheduler, services: Services, lease: SchedulerLease) -> None:
    """One interval job, the tick (`run_jobs`): lease first, then each job in turn."""
    scheduler.add_job(
        run_jobs,
        "interval",
        seconds=services.settings.scheduler_interval_s,
        args=[services, lease],
        id="scheduler_tick",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3600,
    )


def make_lease(services: Services) -> SchedulerLease:
    return SchedulerLease(services.sessions, services.settings.scheduler_lease_s)


def start_background(services: Services) -> tuple[BackgroundScheduler, SchedulerLease]:
    """The embedded mode's scheduler thread; runs a tick at once (after a restart)."""
    lease = make_lease(services)
    scheduler = BackgroundScheduler(timezone=dt.UTC)
    add_jobs(scheduler, services, lease)
    scheduler.start()
    for job in scheduler.get_jobs():
        job.modify(next_run_time=wall_now())
    return scheduler, lease
