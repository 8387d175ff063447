"""Where the adherence audit gets its data: the database (streamed, one patient at a time) or
an exported event file (decisions computed by replay, no alerts).

Both give the audit the same thing per patient: its events up to the period's end and its
current decisions. The stored current decisions equal `replay --until <clock>`, and the fold is
causal (a decision at t depends only on events up to t), so the decisions dated in the period
are the same either way.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, case, select
from sqlmodel import col

from monitor.reports.adherence import (
    AUDITED_ACTIONS,
    AdherenceReport,
    AuditDecision,
    AuditEvent,
    AuditItem,
    Period,
    audit_patient,
)
from monitor.services import Services
from monitor.storage.models import AlertAckRow, AlertRow, DecisionRow, EventRow
from policies.decisions import Decision
from policies.engine import evaluate_patient, unique_events
from policies.events import Administration, Enrollment, Event, TreatmentChange
from policies.packs import PolicyPack

STREAM_ROWS = 5_000
BODY_TYPES = ("administration", "treatment_change", "enrollment")


def report_from_database(
    services: Services, period: Period, on_item: Callable[[AuditItem], None] | None = None
) -> AdherenceReport:
    """The report over the database; memory grows with the drill-down, not the history."""
    pack = services.pack
    report = AdherenceReport(
        period,
        pack.label,
        ack_target_minutes=services.settings.report_ack_target_minutes,
        on_item=on_item,
    )
    grace = dt.timedelta(days=pack.overdue_grace_days)
    # one connection, two cursors (one transaction: a consistent view; SQLite takes its lock
    # per transaction, so a second connection would wait for the first)
    with services.engine.connect() as connection:
        events = _patients_events(connection, period)
        pending: tuple[str, list[AuditEvent]] | None = next(events, None)
        for patient_id, decisions in _patients_decisions(connection):
            while pending is not None and pending[0] < patient_id:
                pending = next(events, None)
            patient_events = pending[1] if pending and pending[0] == patient_id else []
            items, deviations = audit_patient(
                patient_id, patient_events, decisions, period, grace, pack.dose_tolerance_mg_m2
            )
            report.add_patient(patient_id, items, deviations)
        query = (
            select(
                col(AlertRow.severity), col(AlertRow.created_at), col(AlertAckRow.acknowledged_at)
            )
            .outerjoin(AlertAckRow, col(AlertAckRow.alert_id) == col(AlertRow.id))
            .where(col(AlertRow.created_at) >= period.start, col(AlertRow.created_at) <= period.end)
        )
        if period.unit is not None:
            query = query.where(col(AlertRow.unit) == period.unit)
        rows = connection.execution_options(stream_results=True, yield_per=STREAM_ROWS).execute(
            query
        )
        for severity, created_at, acknowledged_at in rows:
            report.add_alert(severity, created_at, acknowledged_at)
    return report


def _by_patient(connection: Connection, column: Any) -> Any:
    """Order by patient id byte-wise: the same order on both streams and in Python (PostgreSQL
    would otherwise sort by its locale's collation)."""
    if connection.dialect.name == "postgresql":
        return column.collate("C")
    return column


def _patients_events(
    connection: Connection, period: Period
) -> Iterator[tuple[str, list[AuditEvent]]]:
    body = case((col(EventRow.type).in_(BODY_TYPES), col(EventRow.body)), else_=None)
    rows = connection.execution_options(stream_results=True, yield_per=STREAM_ROWS).execute(
        select(
            col(EventRow.patient_id),
            col(EventRow.event_id),
            col(EventRow.type),
            col(EventRow.occurred_at),
            body,
        )
        .where(col(EventRow.occurred_at) <= period.end)
        .order_by(_by_patient(connection, col(EventRow.patient_id)))
    )
    for patient_id, group in itertools.groupby(rows, key=lambda row: row[0]):
        yield (
            patient_id,
            [_audit_event(event_id, kind, at, raw) for _, event_id, kind, at, raw in group],
        )


def _audit_event(event_id: str, kind: str, at: dt.datetime, raw: str | None) -> AuditEvent:
    if raw is None:
        return AuditEvent(event_id, kind, at)
    fields = json.loads(raw)
    return AuditEvent(
        event_id,
        kind,
        at,
        dose_mg_m2=fields.get("dose_mg_m2"),
        action=fields.get("action"),
        unit=fields.get("unit"),
    )


def _patients_decisions(
    connection: Connection,
) -> Iterator[tuple[str, list[AuditDecision]]]:
    rows = connection.execution_options(stream_results=True, yield_per=STREAM_ROWS).execute(
        select(
            col(DecisionRow.patient_id),
            col(DecisionRow.decision_id),
            col(DecisionRow.action),
            col(DecisionRow.at),
            col(DecisionRow.due_at),
            col(DecisionRow.body),
        )
        .where(
            col(DecisionRow.superseded_at).is_(None),
            col(DecisionRow.action).in_(AUDITED_ACTIONS),
        )
        .order_by(_by_patient(connection, col(DecisionRow.patient_id)))
    )
    for patient_id, group in itertools.groupby(rows, key=lambda row: row[0]):
        decisions = []
        for _, decision_id, action, at, due_at, body in group:
            fields = json.loads(body)
            decisions.append(
                AuditDecision(
                    decision_id,
                    action,
                    at,
                    fields["trigger"],
                    due_at=due_at,
                    dose_mg_m2=fields.get("dose_mg_m2"),
                    reason=fields.get("reason"),
                )
            )
        yield patient_id, decisions


def report_from_events(
    pack: PolicyPack,
    events: Sequence[Event],
    period: Period,
    on_item: Callable[[AuditItem], None] | None = None,
) -> AdherenceReport:
    """The report over an exported timeline: decisions by replay up to the period's end (the
    same fold the service stores), no alert section (alerts live in the database only)."""
    report = AdherenceReport(period, pack.label, with_alerts=False, on_item=on_item)
    grace = dt.timedelta(days=pack.overdue_grace_days)
    by_patient: dict[str, list[Event]] = defaultdict(list)
    for event in unique_events(events):
        by_patient[event.patient_id].append(event)
    for patient_id in sorted(by_patient):
        patient_events = by_patient.pop(patient_id)
        outcome = evaluate_patient(pack, patient_id, patient_events, period.end)
        decisions = [audit_decision(d) for d in outcome.decisions if d.action in AUDITED_ACTIONS]
        audit_events = [audit_event(e) for e in patient_events]
        items, deviations = audit_patient(
            patient_id, audit_events, decisions, period, grace, pack.dose_tolerance_mg_m2
        )
        report.add_patient(patient_id, items, deviations)
    return report


def audit_decision(decision: Decision) -> AuditDecision:
    return AuditDecision(
        decision.decision_id,
        decision.action,
        decision.at.astimezone(dt.UTC),
        decision.trigger,
        due_at=decision.due_at.astimezone(dt.UTC) if decision.due_at else None,
        dose_mg_m2=decision.dose_mg_m2,
        reason=decision.reason,
    )


def audit_event(event: Event) -> AuditEvent:
    at = event.occurred_at.astimezone(dt.UTC)
    if isinstance(event, Administration):
        return AuditEvent(event.event_id, event.type, at, dose_mg_m2=event.dose_mg_m2)
    if isinstance(event, TreatmentChange):
        return AuditEvent(
            event.event_id, event.type, at, dose_mg_m2=event.dose_mg_m2, action=event.action
        )
    if isinstance(event, Enrollment):
        return AuditEvent(event.event_id, event.type, at, unit=event.unit)
    return AuditEvent(event.event_id, event.type, at)
