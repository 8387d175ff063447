"""The tick (APScheduler): if this replica holds the lease (`monitor.scheduler.lease`), each
domain's periodic jobs in turn, each safe to run twice:

- processing: re-drive the outbox, fire due timers (`monitor.processing.scheduled`);
- alerts: reminders before a reassessment, escalation of unacknowledged urgent alerts
  (`monitor.alerts.scheduled`);
- weekly reports: open each patient's report window, mark reported ones, `report_due`
  webhooks (`monitor.report_windows.scheduled`);
- webhooks: re-drive deliveries whose task was lost (`monitor.webhooks.scheduled`);
- audit: checkpoint the chain's signed head outside the table (`monitor.auth.scheduled`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler

from monitor.alerts.scheduled import escalate_alerts, send_reminders
from monitor.auth.scheduled import checkpoint_audit
from monitor.operations import tracing
from monitor.operations.clock import wall_now
from monitor.processing.jobs import TRANSIENT_ERRORS
from monitor.processing.scheduled import fire_due_timers, redrive_outbox
from monitor.report_windows.scheduled import open_report_windows
from monitor.scheduler.lease import SchedulerLease
from monitor.services import Services
from monitor.webhooks.scheduled import redrive_deliveries

log = logging.getLogger("monitor.scheduler")


JOBS: tuple[Callable[[Services], int], ...] = (
    redrive_outbox,
    fire_due_timers,
    send_reminders,
    escalate_alerts,
    open_report_windows,
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
            with tracing.new_trace(f"scheduler/{job.__name__}"):  # when tracing: one per job
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
