"""Webhook deliveries whose task was lost, sent again (run by `monitor.scheduler`)."""

from __future__ import annotations

import logging

from monitor.services import Services
from monitor.webhooks.delivery import due_for_redrive

log = logging.getLogger("monitor.scheduler")


def redrive_deliveries(services: Services) -> int:
    """Send again webhook deliveries whose task was lost (overdue by the grace period)."""
    assert services.dispatcher is not None
    ids = due_for_redrive(services)
    if not ids:
        return 0
    sent = services.dispatcher.enqueue_deliveries(ids)
    log.info("webhook deliveries re-driven", extra={"deliveries": len(ids), "sent": sent})
    return sent
