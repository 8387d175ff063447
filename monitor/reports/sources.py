"""Where the adherence audit gets its data: the database (streamed, one patient at a time) or
an exported event file (decisions computed by replay, no alerts).

Both give the audit the same thing per patient: its events up to the period's end and its
current decisions (and, after a change of policy pack, the old pack's decisions for the time they
were in force: each is audited under its own pack). The stored current decisions equal
`replay --until <clock>`, and the fold is
causal (a decision at t depends only on events up to t), so the decisions dated in the period
are the same either way.

On PostgreSQL (psycopg) one statement gives each patient's events and decisions as one row
(arrays), the few JSON fields the audit reads taken out of the bodies by the server, streamed
by a binary COPY: the server scans, extracts and sorts in parallel workers, and the client
decodes one row per patient instead of one per event (the 100,000-patient benchmark,
tests/perf/bench_report.py). Elsewhere (SQLite) two streams, events and decisions ordered by
patient, are merge-joined. Both give the audit the same values in the same patient order.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from sqlalchemy import Connection, DateTime, case, or_, select, type_coerce
from sqlalchemy.exc import DBAPIError
from sqlmodel import col

from monitor.reports.adherence import (
    AUDITED_ACTIONS,
    AdherenceReport,
    AuditDecision,
    AuditEvent,
    AuditItem,
    PackRules,
    Period,
    audit_patient,
    monitored_seconds,
)
from monitor.reports.patient_reports import tally_patient
from monitor.services import Services
from monitor.storage.models import (
    AlertAckRow,
    AlertRow,
    CdsCardRow,
    CdsFeedbackRow,
    DecisionRow,
    EventRow,
)
from policies.decisions import Decision
from policies.engine import evaluate_patient, unique_events
from policies.events import (
    Administration,
    Assessment,
    Enrollment,
    Event,
    Immunotherapy,
    TreatmentChange,
)
from policies.packs import PackError, PolicyPack, builtin_pack

STREAM_ROWS = 5_000
BODY_TYPES = ("administration", "treatment_change", "enrollment", "assessment", "immunotherapy")
# the decisions the `patient_reports` section reads besides the audited ones
SECTION_ACTIONS = ("review_required", "immunotherapy_response", "watch_closed")
READ_ACTIONS = (*AUDITED_ACTIONS, *SECTION_ACTIONS)


def pack_rules(in_use: PolicyPack) -> PackRules:
    """Each decision's pack's grace and dose tolerance, by its label: the pack in use for its
    own label, a built-in pack for its (`default@1`, ...), else the pack in use (a site pack
    no longer configured; its label still names it in the report)."""

    @functools.cache
    def rules(label: str | None) -> tuple[dt.timedelta, float]:
        pack = in_use
        if label is not None and label != in_use.label:
            try:
                pack = builtin_pack(label)
            except PackError:
                pack = in_use
        return dt.timedelta(days=pack.overdue_grace_days), pack.dose_tolerance_mg_m2

    return rules


def report_from_database(
    services: Services,
    period: Period,
    on_item: Callable[[AuditItem], None] | None = None,
    *,
    drill_down: bool = True,
) -> AdherenceReport:
    """The report over the database, streamed one patient at a time.

    One connection, one transaction (SQLite takes its lock per transaction, so a second
    connection would wait for the first)."""
    pack = services.pack
    report = AdherenceReport(
        period,
        pack.label,
        ack_target_minutes=services.settings.report_ack_target_minutes,
        with_cds=True,
        on_item=on_item,
        drill_down=drill_down,
    )
    grace = dt.timedelta(days=pack.overdue_grace_days)
    rules = pack_rules(pack)
    with services.engine.connect() as connection:
        utc = _utc_session(connection)
        patients = (
            _patients_copied(connection, period) if utc else _patients_merged(connection, period)
        )
        for patient_id, patient_events, decisions in patients:
            items, deviations = audit_patient(
                patient_id,
                patient_events,
                decisions,
                period,
                grace,
                pack.dose_tolerance_mg_m2,
                rules,
            )
            monitored = monitored_seconds(patient_events, period)
            tally = tally_patient(patient_events, decisions, period)
            report.add_patient(patient_id, items, deviations, monitored, tally)
        created: Any = col(AlertRow.created_at)
        acknowledged: Any = col(AlertAckRow.acknowledged_at)
        if utc:  # psycopg already gives aware UTC datetimes: no conversion per value
            created = type_coerce(created, DateTime(timezone=True))
            acknowledged = type_coerce(acknowledged, DateTime(timezone=True))
        query = (
            select(col(AlertRow.severity), created, acknowledged)
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
        _add_cds_cards(connection, report, period)
        _add_review_acks(connection, report)
    return report


def _add_review_acks(connection: Connection, report: AdherenceReport) -> None:
    """The acknowledgements of the reviews' alerts (`new`, `review_required`): the report keeps
    those of the patient reports' reviews in the period (their time to acknowledgement)."""
    acks = connection.execution_options(stream_results=True, yield_per=STREAM_ROWS).execute(
        select(col(AlertRow.decision_id), col(AlertAckRow.acknowledged_at))
        .join(AlertAckRow, col(AlertAckRow.alert_id) == col(AlertRow.id))
        .where(col(AlertRow.kind) == "new", col(AlertRow.action) == "review_required")
    )
    for decision_id, acknowledged_at in acks:
        report.add_review_ack(decision_id, acknowledged_at)


def _add_cds_cards(connection: Connection, report: AdherenceReport, period: Period) -> None:
    """The CDS Hooks cards issued in the period (of the unit's courses, with a unit), each with
    its latest feedback (by outcome time, then arrival)."""
    in_period = [
        col(CdsCardRow.created_at) >= period.start,
        col(CdsCardRow.created_at) <= period.end,
    ]
    if period.unit is not None:
        in_period.append(col(CdsCardRow.unit) == period.unit)
    latest: dict[int | None, tuple[str | None, str | None]] = {}
    feedback = connection.execute(
        select(
            col(CdsFeedbackRow.card_id),
            col(CdsFeedbackRow.outcome),
            col(CdsFeedbackRow.override_code),
        )
        .join(CdsCardRow, col(CdsCardRow.id) == col(CdsFeedbackRow.card_id))
        .where(*in_period)
        .order_by(col(CdsFeedbackRow.outcome_at), col(CdsFeedbackRow.id))
    )
    for card_id, outcome, reason in feedback:
        latest[card_id] = (outcome, reason)
    cards = connection.execution_options(stream_results=True, yield_per=STREAM_ROWS).execute(
        select(col(CdsCardRow.id), col(CdsCardRow.indicator)).where(*in_period)
    )
    for card, indicator in cards:
        last_outcome, last_reason = latest.get(card, (None, None))
        report.add_cds_card(indicator, last_outcome, last_reason)


PatientRows = Iterator[tuple[str, list[AuditEvent], list[AuditDecision]]]


def _utc_session(connection: Connection) -> bool:
    """On PostgreSQL over psycopg: this transaction's time zone set to UTC (psycopg then gives
    datetimes in `dt.UTC` itself, as the UTC columns do) and JIT off (compiling the report's
    expressions costs more than it saves). False on other databases."""
    if connection.dialect.name != "postgresql" or connection.dialect.driver != "psycopg":
        return False
    connection.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
    connection.exec_driver_sql("SET LOCAL jit = off")
    driver = connection.connection.driver_connection
    return isinstance(driver, psycopg.Connection) and driver.info.timezone is dt.UTC


def _patients_merged(connection: Connection, period: Period) -> PatientRows:
    """Patients with current audited decisions, in byte order of their id: two streams (events,
    decisions) on one connection, merge-joined by patient id."""
    events = _patients_events(connection, period)
    pending: tuple[str, list[AuditEvent]] | None = next(events, None)
    for patient_id, decisions in _patients_decisions(connection):
        while pending is not None and pending[0] < patient_id:
            pending = next(events, None)
        patient_events = pending[1] if pending and pending[0] == patient_id else []
        yield patient_id, patient_events, decisions


# Bodies with a \u escape go to the client whole (read with json.loads as elsewhere): the
# server's JSON functions refuse some escapes (\u0000, unpaired surrogates) that Python reads.
_PLAIN_E = r"strpos(e.body, E'\\u') = 0"
# So do bodies that give a dose in mg or a body surface area (`dose_mg`, `bsa_m2`, or the
# `height_cm` Mosteller's needs): `_audit_event` reads those fields (and computes the BSA).
_RAW_E = f"""(NOT {_PLAIN_E} OR strpos(e.body, '"dose_mg"') > 0
          OR strpos(e.body, '"bsa_m2"') > 0 OR strpos(e.body, '"height_cm"') > 0)"""
_PLAIN_D = r"strpos(d.body, E'\\u') = 0"
_PATIENTS_COPY = f"""
COPY (
  SELECT patient_id, array_agg(k), array_agg(id), array_agg(kind), array_agg(at),
    array_agg(due_at), array_agg(f1), array_agg(f2), array_agg(f3), array_agg(raw),
    array_agg(pol), array_agg(ff), array_agg(su), array_agg(f4)
  FROM (
    SELECT e.patient_id COLLATE "C" AS patient_id, 0 AS k, e.event_id AS id, e.type AS kind,
      e.occurred_at AS at, NULL::timestamptz AS due_at,
      CASE WHEN e.type IN ('administration', 'treatment_change', 'enrollment') AND {_PLAIN_E}
        THEN e.body::json ->> 'dose_mg_m2' END AS f1,
      CASE WHEN e.type = 'treatment_change' AND {_PLAIN_E}
        THEN e.body::json ->> 'action' END AS f2,
      CASE WHEN e.type = 'enrollment' AND {_PLAIN_E} THEN e.body::json ->> 'unit' END AS f3,
      CASE WHEN e.type IN ('administration', 'treatment_change', 'enrollment')
        AND {_RAW_E} THEN e.body
        WHEN e.type IN ('assessment', 'immunotherapy') AND NOT {_PLAIN_E} THEN e.body END AS raw,
      NULL AS pol, NULL::timestamptz AS ff, NULL::timestamptz AS su,
      CASE WHEN e.type = 'assessment' AND {_PLAIN_E} THEN e.body::json ->> 'source'
        WHEN e.type = 'immunotherapy' AND {_PLAIN_E} THEN e.body::json ->> 'therapy' END AS f4
    FROM event AS e
    WHERE e.occurred_at <= %(end)s
    UNION ALL
    SELECT d.patient_id COLLATE "C", 1, d.decision_id, d.action, d.at, d.due_at,
      r.trigger, r.dose_mg_m2, r.reason, CASE WHEN NOT {_PLAIN_D} THEN d.body END,
      d.policy, d.in_force_from, d.superseded_at, NULL
    FROM decision AS d
    LEFT JOIN LATERAL json_to_record(CASE WHEN {_PLAIN_D} THEN d.body::json END)
      AS r(trigger text, dose_mg_m2 text, reason text) ON true
    WHERE (d.superseded_at IS NULL OR d.superseded_reason = 'policy_change')
      AND d.action = ANY(%(actions)s)
  ) AS audited
  GROUP BY patient_id
  HAVING bool_or(k = 1)
  ORDER BY patient_id
) TO STDOUT (FORMAT BINARY)
"""
_PATIENTS_TYPES = [
    "text",
    "int4[]",
    "text[]",
    "text[]",
    "timestamptz[]",
    "timestamptz[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "timestamptz[]",
    "timestamptz[]",
    "text[]",
]


def _patients_copied(connection: Connection, period: Period) -> PatientRows:
    """Patients with current audited decisions, in byte order of their id, one COPY row each.

    The values are those `_patients_merged` reads: `->>`/`json_to_record` give a body's
    strings unescaped and its numbers as written (read here as json.loads reads them), and
    which keys each event type has is fixed by its model (no extra keys). Times are aware UTC
    (`_utc_session`). Order within a patient does not matter (the audit sorts).
    """
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    params = {"end": period.end, "actions": list(READ_ACTIONS)}
    try:
        with driver.cursor() as cursor, cursor.copy(_PATIENTS_COPY, params) as copy:
            copy.set_types(_PATIENTS_TYPES)
            for patient_id, ks, ids, kinds, ats, dues, f1s, f2s, f3s, raws, *ends in copy.rows():
                events: list[AuditEvent] = []
                decisions: list[AuditDecision] = []
                for k, key, kind, at, due_at, f1, f2, f3, raw, pol, since, until, f4 in zip(
                    ks, ids, kinds, ats, dues, f1s, f2s, f3s, raws, *ends, strict=True
                ):
                    if k == 0:
                        if raw is not None:
                            events.append(_audit_event(key, kind, at, raw))
                        else:
                            source = f4 if kind == "assessment" else None
                            therapy = f4 if kind == "immunotherapy" else None
                            events.append(
                                AuditEvent(
                                    key,
                                    kind,
                                    at,
                                    _number(f1),
                                    f2,
                                    f3,
                                    source=source,
                                    therapy=therapy,
                                )
                            )
                    elif raw is not None:
                        decisions.append(
                            _audit_decision(key, kind, at, due_at, raw, pol, since, until)
                        )
                    else:
                        decisions.append(
                            AuditDecision(
                                key, kind, at, f1, due_at, _number(f2), f3, pol, since, until
                            )
                        )
                yield patient_id, events, decisions
    except psycopg.Error as exc:  # raised as SQLAlchemy raises the other queries' errors
        error = DBAPIError.instance(
            _PATIENTS_COPY, params, exc, psycopg.Error, dialect=connection.dialect
        )
        assert isinstance(error, DBAPIError)
        raise error from exc


def _number(token: str | None) -> float | None:
    """A JSON number's text as json.loads reads it: an int unless it has a fraction or an
    exponent."""
    if token is None:
        return None
    if "." in token or "e" in token or "E" in token:
        return float(token)
    return int(token)


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
        dose_mg=fields.get("dose_mg"),
        bsa_m2=_bsa(fields) if kind == "enrollment" else fields.get("bsa_m2"),
        source=fields.get("source") if kind == "assessment" else None,
        therapy=fields.get("therapy") if kind == "immunotherapy" else None,
    )


def _bsa(enrolment: dict[str, Any]) -> float | None:
    """An enrolment body's body surface area as `Enrollment.body_surface_area` gives it."""
    bsa, height, weight = (enrolment.get(k) for k in ("bsa_m2", "height_cm", "weight_kg"))
    if bsa is not None:
        return float(bsa)
    if height is not None and weight is not None:
        return math.sqrt(height * weight / 3600)
    return None


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
            col(DecisionRow.policy),
            col(DecisionRow.in_force_from),
            col(DecisionRow.superseded_at),
        )
        .where(
            or_(
                col(DecisionRow.superseded_at).is_(None),
                col(DecisionRow.superseded_reason) == "policy_change",
            ),
            col(DecisionRow.action).in_(READ_ACTIONS),
        )
        .order_by(_by_patient(connection, col(DecisionRow.patient_id)))
    )
    for patient_id, group in itertools.groupby(rows, key=lambda row: row[0]):
        yield (
            patient_id,
            [
                _audit_decision(decision_id, action, at, due_at, body, policy, since, until)
                for _, decision_id, action, at, due_at, body, policy, since, until in group
            ],
        )


def _audit_decision(
    decision_id: str,
    action: str,
    at: dt.datetime,
    due_at: dt.datetime | None,
    body: str,
    policy: str | None = None,
    in_force_from: dt.datetime | None = None,
    superseded_at: dt.datetime | None = None,
) -> AuditDecision:
    """`superseded_at` is read only from rows a policy change superseded (the query leaves
    the others out)."""
    fields = json.loads(body)
    return AuditDecision(
        decision_id,
        action,
        at,
        fields["trigger"],
        due_at=due_at,
        dose_mg_m2=fields.get("dose_mg_m2"),
        reason=fields.get("reason"),
        policy=policy,
        in_force_from=in_force_from,
        superseded_at=superseded_at,
    )


def report_from_events(
    pack: PolicyPack,
    events: Sequence[Event],
    period: Period,
    on_item: Callable[[AuditItem], None] | None = None,
    *,
    drill_down: bool = True,
) -> AdherenceReport:
    """The report over an exported timeline: decisions by replay up to the period's end (the
    same fold the service stores), no alert section (alerts live in the database only)."""
    report = AdherenceReport(
        period, pack.label, with_alerts=False, on_item=on_item, drill_down=drill_down
    )
    grace = dt.timedelta(days=pack.overdue_grace_days)
    by_patient: dict[str, list[Event]] = defaultdict(list)
    for event in unique_events(events):
        by_patient[event.patient_id].append(event)
    for patient_id in sorted(by_patient):
        patient_events = by_patient.pop(patient_id)
        outcome = evaluate_patient(pack, patient_id, patient_events, period.end)
        decisions = [audit_decision(d) for d in outcome.decisions if d.action in READ_ACTIONS]
        audit_events = [audit_event(e) for e in patient_events]
        items, deviations = audit_patient(
            patient_id, audit_events, decisions, period, grace, pack.dose_tolerance_mg_m2
        )
        report.add_patient(
            patient_id,
            items,
            deviations,
            monitored_seconds(audit_events, period),
            tally_patient(audit_events, decisions, period),
        )
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
        policy=decision.policy,
    )


def audit_event(event: Event) -> AuditEvent:
    at = event.occurred_at.astimezone(dt.UTC)
    if isinstance(event, Administration):
        return AuditEvent(
            event.event_id,
            event.type,
            at,
            dose_mg_m2=event.dose_mg_m2,
            dose_mg=event.dose_mg,
            bsa_m2=event.bsa_m2,
        )
    if isinstance(event, TreatmentChange):
        return AuditEvent(
            event.event_id, event.type, at, dose_mg_m2=event.dose_mg_m2, action=event.action
        )
    if isinstance(event, Enrollment):
        return AuditEvent(
            event.event_id, event.type, at, unit=event.unit, bsa_m2=event.body_surface_area()
        )
    if isinstance(event, Assessment):
        return AuditEvent(event.event_id, event.type, at, source=event.source)
    if isinstance(event, Immunotherapy):
        return AuditEvent(event.event_id, event.type, at, therapy=event.therapy)
    return AuditEvent(event.event_id, event.type, at)
