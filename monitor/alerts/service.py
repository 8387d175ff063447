"""Alerts: ids in commit order, the feed, acknowledgement, and the two alerts that time itself
raises (a reminder the day before a reassessment, an escalation of an urgent alert nobody
acknowledged).

Every function takes an open session: the caller owns the transaction, so an alert, its
webhook deliveries and whatever caused it commit together (the deliveries are an outbox).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import String, and_, bindparam, cast, exists, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from monitor.alerts.push import CHANNEL as ALERTS_CHANNEL
from monitor.settings import Settings
from monitor.storage.database import insert_for, is_postgresql
from monitor.storage.models import (
    AlertAckRow,
    AlertRow,
    AlertSequenceRow,
    DecisionRow,
    PatientRow,
)
from policies.decisions import Audience, utc_minute, utc_text, utc_text_or_none

AlertKind = Literal["new", "correction", "reminder", "escalation", "monitoring"]
# Who hears an alert: the decisions' audiences, and `admin` (a patient's monitoring stopped).
AlertAudience = Literal[Audience, "admin"]
MONITORING_AUDIENCE = ("admin", "physician")
SCAN_BATCH = 500


_SEQUENCE = AlertSequenceRow.__table__  # type: ignore[attr-defined]  # core: every fold
_TAKE_IDS = (
    update(_SEQUENCE)
    .where(_SEQUENCE.c.name == "alert")
    .values(value=_SEQUENCE.c.value + bindparam("n"))
)
_RESERVE_IDS = _TAKE_IDS.returning(_SEQUENCE.c.value)
# PostgreSQL: the notice, delivered at commit, wakes the SSE streams (monitor.alerts.push),
# sent in the same round trip (if every alert was a duplicate, a stream wakes up to nothing)
_RESERVE_IDS_AND_NOTIFY = _TAKE_IDS.returning(
    _SEQUENCE.c.value, func.pg_notify(ALERTS_CHANNEL, cast(_SEQUENCE.c.value, String))
)


def add_alerts(session: Session, alerts: Sequence[AlertRow]) -> list[AlertRow]:
    """Insert alerts once each (a second alert for the same decision and kind is dropped) and
    return those inserted.

    Ids come from `alert_sequence`: the UPDATE locks its row until this transaction commits, so
    alert ids become visible in increasing order (see `AlertRow`). Call it late in the
    transaction: the lock serialises the commits of alert-raising work.
    """
    if not alerts:
        return []
    reserve = _RESERVE_IDS_AND_NOTIFY if is_postgresql(session) else _RESERVE_IDS
    connection = session.connection()
    last: int = connection.execute(reserve, {"n": len(alerts)}).scalars().one()
    table = AlertRow.__table__  # type: ignore[attr-defined]
    insert = insert_for(session)
    for offset, alert in enumerate(alerts):
        alert.id = last - len(alerts) + 1 + offset
    # executemany: SQLAlchemy batches the rows into multi-row statements ("insertmanyvalues",
    # a cached statement per page); RETURNING names the ones inserted, picked by id
    statement = insert(table).on_conflict_do_nothing().returning(table.c.id)
    done = set(connection.execute(statement, [alert.model_dump() for alert in alerts]).scalars())
    return [alert for alert in alerts if alert.id in done]


def audiences(alert: AlertRow) -> list[str]:
    value: list[str] = json.loads(alert.audience)
    return value


def alert_view(alert: AlertRow, ack: AlertAckRow | None) -> dict[str, Any]:
    """An alert as the feed, the stream and webhooks show it."""
    return {
        "id": alert.id,
        "kind": alert.kind,
        "severity": alert.severity,
        "action": alert.action,
        "audience": audiences(alert),
        "patient_id": alert.patient_id,
        "unit": alert.unit,
        "message": alert.message,
        "decision_id": alert.decision_id,
        # a monitoring alert has no decision: it is about the patient's state
        "decision_url": f"/v1/patients/{alert.patient_id}"
        if alert.kind == "monitoring"
        else f"/v1/patients/{alert.patient_id}/decisions/{alert.decision_id}",
        "escalates_alert_id": alert.escalates_alert_id,
        # when it happened clinically (the grading, the dose, the due time), and when raised
        "clinical_at": utc_text_or_none(alert.clinical_at),
        "created_at": utc_text(alert.created_at),
        "acknowledged": ack is not None,
        "ack": ack_view(ack) if ack is not None else None,
    }


def ack_view(ack: AlertAckRow) -> dict[str, Any]:
    return {
        "by": ack.acknowledged_by,
        "token": ack.token_name,
        "at": utc_text(ack.acknowledged_at),
        "note": ack.note,
        "recorded_at": utc_text(ack.recorded_at),
    }


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """The feed's filters; each list is "any of"; None means no filter."""

    severities: Sequence[str] = ()
    audiences: Sequence[str] = ()
    units: Sequence[str] = ()
    kinds: Sequence[str] = ()
    acknowledged: bool | None = None
    patient_id: str | None = None
    scope: Sequence[str] | None = None  # the caller's units (None: every unit)


def list_alerts(
    session: Session,
    where: AlertFilter,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Newest first (below the cursor `before` when given), or, with `after`, the alerts after
    that id oldest first (what the stream sends, and what a poller wants)."""
    query = select(AlertRow, AlertAckRow).outerjoin(
        AlertAckRow, col(AlertAckRow.alert_id) == col(AlertRow.id)
    )
    if where.severities:
        query = query.where(col(AlertRow.severity).in_(where.severities))
    if where.kinds:
        query = query.where(col(AlertRow.kind).in_(where.kinds))
    if where.units:
        query = query.where(col(AlertRow.unit).in_(where.units))
    if where.scope is not None:  # a token bound to units: theirs only (none without a unit)
        query = query.where(col(AlertRow.unit).in_(where.scope))
    if where.audiences:
        # the audience is a JSON list of known words: '"nurse"' matches the element exactly
        query = query.where(
            or_(*(col(AlertRow.audience).contains(f'"{a}"') for a in where.audiences))
        )
    if where.acknowledged is not None:
        query = query.where(
            col(AlertAckRow.id).is_not(None)
            if where.acknowledged
            else col(AlertAckRow.id).is_(None)
        )
    if where.patient_id is not None:
        query = query.where(col(AlertRow.patient_id) == where.patient_id)
    if after is not None:
        query = query.where(col(AlertRow.id) > after).order_by(col(AlertRow.id))
    else:
        if before is not None:
            query = query.where(col(AlertRow.id) < before)
        query = query.order_by(col(AlertRow.id).desc())
    rows = session.execute(query.limit(limit)).all()
    return [alert_view(alert, ack) for alert, ack in rows]


def last_alert_id(session: Session) -> int:
    value = session.execute(
        select(col(AlertSequenceRow.value)).where(col(AlertSequenceRow.name) == "alert")
    ).scalar_one_or_none()
    return int(value or 0)


class AlertNotFoundError(LookupError):
    pass


class NotYourAlertError(PermissionError):
    """The alert is addressed to audiences the caller's role does not answer for."""

    def __init__(self, audience: list[str], allowed: tuple[str, ...]) -> None:
        super().__init__("the alert is addressed to other audiences")
        self.audience = audience
        self.allowed = allowed


class AckBeforeAlertError(ValueError):
    """An acknowledgement dated before its alert was raised."""

    def __init__(self, at: dt.datetime, raised_at: dt.datetime) -> None:
        super().__init__("acknowledged before the alert was raised")
        self.at = at
        self.raised_at = raised_at


def acknowledge(
    session: Session,
    alert_id: int,
    *,
    by: str,
    token_name: str,
    at: dt.datetime,
    note: str | None,
    now: dt.datetime,
    audiences: tuple[str, ...] | None = None,
    units: frozenset[str] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Record the acknowledgement; returns the alert and whether this call recorded it (the
    first acknowledgement stands: acknowledging again changes nothing).

    `units`: the caller's scope (an alert outside it is not found: its existence does not
    leak); `audiences`: the ones the caller's role answers for (None: any, admin). An alert
    addressed to none of them is not the caller's to acknowledge: that would stop its
    escalation."""
    alert = session.get(AlertRow, alert_id)
    if alert is None or (units is not None and alert.unit not in units):
        raise AlertNotFoundError(alert_id)
    addressed = list(json.loads(alert.audience))
    if audiences is not None and not set(addressed) & set(audiences):
        raise NotYourAlertError(addressed, audiences)
    existing = _ack_of(session, alert_id)
    if existing is not None:
        return alert_view(alert, existing), False
    if at < alert.created_at:
        raise AckBeforeAlertError(at, alert.created_at)
    ack = AlertAckRow(
        alert_id=alert_id,
        acknowledged_by=by,
        token_name=token_name,
        acknowledged_at=at.astimezone(dt.UTC),
        note=note,
        recorded_at=now,
    )
    try:
        with session.begin_nested():
            session.add(ack)
    except IntegrityError:  # acknowledged at the same moment by someone else: theirs stands
        existing = _ack_of(session, alert_id)
        assert existing is not None
        return alert_view(alert, existing), False
    return alert_view(alert, ack), True


def _ack_of(session: Session, alert_id: int) -> AlertAckRow | None:
    return session.execute(
        select(AlertAckRow).where(col(AlertAckRow.alert_id) == alert_id)
    ).scalar_one_or_none()


def monitoring_stopped(
    patient_id: str, unit: str | None, dead_letter_id: int, reason: str, now: dt.datetime
) -> AlertRow:
    """The urgent alert of a dead-lettered fold: the patient's events are kept but no longer
    evaluated, so no decision (a discontinuation, an escalation) can come until someone acts.
    One per dead letter (its id is the alert's `decision_id`, `dl-<id>`)."""
    return AlertRow(
        decision_id=f"dl-{dead_letter_id}",
        kind="monitoring",
        action="monitoring_stopped",
        patient_id=patient_id,
        unit=unit,
        severity="urgent",
        audience=json.dumps(list(MONITORING_AUDIENCE)),
        message=(
            f"Monitoring of patient {patient_id} stopped: {reason}. Its events are kept but "
            "no longer evaluated, so no new advice will come for this patient: an "
            f"administrator must retry dead letter {dead_letter_id} or quarantine the event "
            "that fails. Until then, clearance for the chair is refused."
        ),
        created_at=now,
    )


def due_reminders(session: Session, settings: Settings, now: dt.datetime) -> list[AlertRow]:
    """Reminder alerts for reassessments due within `reminder_before_s` that are still pending
    (the patient's pending due time is this decision's) and not reminded yet.

    One reminder per patient and due time: an assessment between two cycles can schedule the
    next reassessment for the very time already pending (day 1 of the same next cycle); the
    two current decisions then share one pending reassessment, reminded once, under the later
    decision."""
    horizon = now + dt.timedelta(seconds=settings.reminder_before_s)
    reminded = aliased(AlertRow)
    reminded_decision = aliased(DecisionRow)
    rows = session.execute(
        select(DecisionRow, PatientRow)
        .join(PatientRow, col(PatientRow.patient_id) == col(DecisionRow.patient_id))
        .where(
            col(DecisionRow.action) == "schedule_reassessment",
            col(DecisionRow.superseded_at).is_(None),
            col(DecisionRow.due_at) > now,
            col(DecisionRow.due_at) <= horizon,
            col(PatientRow.reassessment_due_at) == col(DecisionRow.due_at),
            ~exists().where(
                col(reminded.patient_id) == col(DecisionRow.patient_id),
                col(reminded.kind) == "reminder",
                col(reminded_decision.decision_id) == col(reminded.decision_id),
                col(reminded_decision.due_at) == col(DecisionRow.due_at),
            ),
        )
        .order_by(
            col(DecisionRow.due_at),
            col(DecisionRow.patient_id),
            col(DecisionRow.at).desc(),
            col(DecisionRow.decision_id).desc(),
        )
        .limit(SCAN_BATCH)
    ).all()
    pending: dict[tuple[str, dt.datetime], tuple[DecisionRow, PatientRow]] = {}
    for decision, patient in rows:
        assert decision.due_at is not None
        pending.setdefault((decision.patient_id, decision.due_at), (decision, patient))
    alerts = []
    for decision, patient in pending.values():
        assert decision.due_at is not None
        state: dict[str, Any] = json.loads(patient.state)
        alerts.append(
            AlertRow(
                decision_id=decision.decision_id,
                kind="reminder",
                action=decision.action,
                patient_id=decision.patient_id,
                unit=state.get("unit"),
                severity="info",
                audience=json.dumps(["nurse"]),
                message=(
                    f"Reminder: neuropathy reassessment due {utc_minute(decision.due_at)}; "
                    "grade sensory, motor, pain and autonomic neuropathy (CTCAE) before the "
                    "next dose."
                ),
                created_at=now,
                clinical_at=decision.due_at,
            )
        )
    return add_alerts(session, alerts)


def escalate_unacknowledged(
    session: Session, settings: Settings, now: dt.datetime
) -> list[AlertRow]:
    """One escalation alert per urgent alert left unacknowledged for `escalate_after_s`, to the
    next audience up (`escalation_targets`), pointing to the first. Not for alerts whose
    decision no longer holds (a correction went out instead)."""
    cutoff = now - dt.timedelta(seconds=settings.escalate_after_s)
    escalated = aliased(AlertRow)
    query = (
        select(AlertRow)
        .where(
            col(AlertRow.severity) == "urgent",
            col(AlertRow.kind) == "new",
            col(AlertRow.created_at) <= cutoff,
            ~exists().where(col(AlertAckRow.alert_id) == col(AlertRow.id)),
            ~exists().where(
                col(escalated.decision_id) == col(AlertRow.decision_id),
                col(escalated.kind) == "escalation",
            ),
            exists().where(
                and_(
                    col(DecisionRow.decision_id) == col(AlertRow.decision_id),
                    col(DecisionRow.superseded_at).is_(None),
                )
            ),
        )
        .order_by(col(AlertRow.id))
        .limit(SCAN_BATCH)
    )
    if is_postgresql(session):
        # a second scheduler (during a lease hand-over) skips what this one is escalating
        query = query.with_for_update(skip_locked=True, key_share=True)
    minutes = round(settings.escalate_after_s / 60)
    alerts = []
    for original in session.execute(query).scalars():
        first = audiences(original)
        targets = sorted({settings.escalation_targets.get(a, "physician") for a in first})
        alerts.append(
            AlertRow(
                decision_id=original.decision_id,
                kind="escalation",
                action=original.action,
                patient_id=original.patient_id,
                unit=original.unit,
                severity="urgent",
                audience=json.dumps(targets),
                message=(
                    f"Escalated: not acknowledged within {minutes} min by "
                    f"{', '.join(first)}. {original.message}"
                ),
                escalates_alert_id=original.id,
                created_at=now,
                clinical_at=original.clinical_at,
            )
        )
    return add_alerts(session, alerts)
