"""Prometheus metrics: counters of this process, and gauges read from the database at scrape.

Counters count what this process did (the API counts accepted events; a worker process counts
processed ones and serves them on `MONITOR_WORKER_METRICS_PORT`). The database gauges (open
outbox, queue lag, dead letters) are the same whichever process is scraped.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import exists, func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from monitor.services import Services
from monitor.storage.models import (
    AlertAckRow,
    AlertRow,
    DeadLetterRow,
    OutboxRow,
    PatientRow,
    WebhookDeliveryRow,
)

log = logging.getLogger("monitor.metrics")

EVENTS_ACCEPTED = Counter("monitor_events_accepted_total", "Events accepted (stored) by ingest")
EVENTS_DUPLICATE = Counter("monitor_events_duplicate_total", "Events re-sent unchanged")
EVENTS_REJECTED = Counter("monitor_events_rejected_total", "Events rejected (422/409)")
EVENTS_PROCESSED = Counter(
    "monitor_events_processed_total", "Accepted events folded into decisions (outbox rows done)"
)
TASKS_FAILED = Counter("monitor_tasks_failed_total", "process_patient runs that raised")
DEAD_LETTERED = Counter("monitor_dead_lettered_total", "Work items dead-lettered")
WEBHOOK_ATTEMPTS = Counter(
    "monitor_webhook_attempts_total", "Webhook delivery attempts, by outcome", ["outcome"]
)
ALERTS_RAISED = Counter(
    "monitor_alerts_raised_total", "Alerts raised by the scheduler, by kind", ["kind"]
)
PROCESSING_LATENCY = Histogram(
    "monitor_processing_latency_seconds",
    "From an event's acceptance to its decisions being stored",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


BURDEN_WINDOW = dt.timedelta(days=28)
MONITORED_STATUSES = ("active", "held", "discontinued", "completed")


class DatabaseCollector(Collector):
    """Gauges computed from the database at each scrape."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self._services.settings.now()
        try:
            with self._services.sessions() as session:
                open_count, oldest = session.execute(
                    select(
                        func.count(col(OutboxRow.id)), func.min(col(OutboxRow.created_at))
                    ).where(
                        col(OutboxRow.processed_at).is_(None),
                        col(OutboxRow.dead_letter_id).is_(None),
                    )
                ).one()
                dead = session.execute(
                    select(func.count(col(DeadLetterRow.id))).where(
                        col(DeadLetterRow.retried_at).is_(None)
                    )
                ).scalar_one()
                unacked_urgent = session.execute(
                    select(func.count(col(AlertRow.id))).where(
                        col(AlertRow.severity) == "urgent",
                        ~exists().where(col(AlertAckRow.alert_id) == col(AlertRow.id)),
                    )
                ).scalar_one()
                since = now - BURDEN_WINDOW
                by_severity = dict(
                    session.execute(
                        select(col(AlertRow.severity), func.count(col(AlertRow.id)))
                        .where(col(AlertRow.created_at) >= since)
                        .group_by(col(AlertRow.severity))
                    ).all()
                )
                monitored = session.execute(
                    select(func.count())
                    .select_from(PatientRow)
                    .where(col(PatientRow.status).in_(MONITORED_STATUSES))
                ).scalar_one()
                failed_deliveries = session.execute(
                    select(func.count(col(WebhookDeliveryRow.id))).where(
                        col(WebhookDeliveryRow.status) == "failed"
                    )
                ).scalar_one()
        except SQLAlchemyError as exc:
            # The scrape still serves the process's counters (a 500 would hide them just when
            # they matter); the database's gauges are left out and this one says why.
            log.warning("metrics: database unreachable", extra={"error_type": type(exc).__name__})
            yield GaugeMetricFamily(
                "monitor_database_up", "The database answered this scrape's queries", value=0
            )
            return
        yield GaugeMetricFamily(
            "monitor_database_up", "The database answered this scrape's queries", value=1
        )
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        lag = (now - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "monitor_outbox_open", "Accepted events not yet processed", value=open_count
        )
        yield GaugeMetricFamily(
            "monitor_queue_lag_seconds", "Age of the oldest unprocessed event", value=max(lag, 0)
        )
        yield GaugeMetricFamily(
            "monitor_dead_letters_open", "Dead letters not yet retried", value=dead
        )
        yield GaugeMetricFamily(
            "monitor_alerts_urgent_unacknowledged",
            "Urgent alerts nobody has acknowledged",
            value=unacked_urgent,
        )
        burden = GaugeMetricFamily(
            "monitor_alert_burden_per_patient_week",
            "Alerts raised in the last 28 days per patient-week of the patients monitored now "
            "(a course on record), by severity",
            labels=["severity"],
        )
        weeks = monitored * BURDEN_WINDOW.days / 7
        for severity in ("urgent", "warning", "info"):
            count = by_severity.get(severity, 0)
            burden.add_metric([severity], count / weeks if weeks else 0.0)
        yield burden
        yield GaugeMetricFamily(
            "monitor_webhook_deliveries_failed",
            "Webhook deliveries that failed for good (admin may retry them)",
            value=failed_deliveries,
        )


__all__ = ["REGISTRY"]
