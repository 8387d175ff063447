"""The weekly report windows' job (run by `monitor.scheduler`): open this week's window of
every patient asked to report, mark the windows a patient report has come into, and write a
`report_due` webhook for each window that opened unreported (the hospital's messaging sends
the reminder). One transaction: the rows and their deliveries commit together."""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlmodel import col

from monitor.operations.clock import wall_now
from monitor.report_windows.service import mark_reported, open_windows
from monitor.services import Services
from monitor.storage.models import ReportWindowRow
from monitor.webhooks.delivery import fan_out_report_due

log = logging.getLogger("monitor.scheduler")


def open_report_windows(services: Services) -> int:
    """Open due windows, mark reported ones, notify the new unreported current ones; returns
    how many windows were opened. Windows are clinical time (the service clock); deliveries'
    retry times the wall clock."""
    now = services.settings.now()
    with services.sessions.begin() as session:
        opened = open_windows(session, now)
        marked = mark_reported(session, now)
        # earlier windows opened late (the scheduler was down) are counted, not reminded
        due = [w for w in opened if w.reported_at is None and w.window_end > now]
        if due:
            session.execute(
                update(ReportWindowRow)
                .where(col(ReportWindowRow.id).in_([w.id for w in due]))
                .values(notified_at=now)
            )
        delivery_ids = fan_out_report_due(session, due, wall_now())
    if delivery_ids and services.dispatcher is not None:
        services.dispatcher.enqueue_deliveries(delivery_ids)
    if opened or marked:
        log.info(
            "report windows",
            extra={
                "opened": len(opened),
                "reported": marked,
                "due": len(due),
                "deliveries": len(delivery_ids),
            },
        )
    return len(opened)
