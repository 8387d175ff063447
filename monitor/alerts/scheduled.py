"""The alerts that time raises (run by `monitor.scheduler`): a reminder the day before a
reassessment is due, an escalation of an urgent alert nobody acknowledged."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlmodel import Session

from monitor.alerts import service as alerts
from monitor.operations.clock import wall_now
from monitor.operations.metrics import ALERTS_RAISED
from monitor.services import Services
from monitor.settings import Settings
from monitor.storage.models import AlertRow
from monitor.webhooks.delivery import fan_out

log = logging.getLogger("monitor.scheduler")


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
