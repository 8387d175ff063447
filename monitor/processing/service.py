"""Processing one patient: lock, fold the whole timeline with the pure engine, store the diff.

Idempotent: running it again with no new event and the same clock changes nothing. A late event
simply gives another fold; decisions it no longer supports are marked superseded (with a
correction alert when an alert had gone out), so the current decisions always equal
`replay --until <clock>` over the same events.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import bindparam, insert, update
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from monitor.alerts.service import add_alerts
from monitor.operations.clock import wall_now
from monitor.operations.logsafe import SafeMessageError
from monitor.operations.metrics import EVENTS_PROCESSED, PROCESSING_LATENCY
from monitor.processing.checkpoints import (
    PATIENT_EVENTS,
    checkpoint_text,
    events_after,
    stored_checkpoint,
)
from monitor.storage.database import insert_for, is_postgresql
from monitor.storage.models import (
    AlertRow,
    DeadLetterRow,
    DecisionRow,
    OutboxRow,
    PatientRow,
)
from monitor.webhooks.delivery import fan_out
from policies.changeover import TIMER, Changeover, CourseView, plan_changeover
from policies.checkpoint import FoldResult, fold_patient, resume_patient
from policies.decisions import Decision, utc_text_or_none
from policies.engine import PatientOutcome, next_timer
from policies.events import EVENT_ADAPTER, Event
from policies.packs import PolicyPack
from policies.state import PatientState

log = logging.getLogger("monitor.processing")
# the tables, for core statements (the hot path: no ORM unit of work, no autoflush)
DecisionTable = DecisionRow.__table__  # type: ignore[attr-defined]
PatientTable = PatientRow.__table__  # type: ignore[attr-defined]
OutboxTable = OutboxRow.__table__  # type: ignore[attr-defined]
DeadLetterTable = DeadLetterRow.__table__  # type: ignore[attr-defined]
AlertTable = AlertRow.__table__  # type: ignore[attr-defined]
OUTBOX_CHUNK = 500  # ids per UPDATE ... IN (...): well under any driver's parameter limit


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    patient_id: str
    events: int
    inserted: int
    superseded: int
    revived: int
    outbox_done: int
    revised: int = 0  # kept ids whose content changed (a late event)
    delivery_ids: tuple[int, ...] = ()  # webhook deliveries to send after the commit
    alerts_new: int = 0
    alerts_corrected: int = 0
    policy_changed: bool = False  # this fold moved the patient to another pack
    resumed: bool = False  # folded from the stored checkpoint, not from the first event


def course_summary(state: PatientState, next_due: dt.datetime | None) -> dict[str, object]:
    """The cached course state served by `GET /v1/patients/{id}` (CONTRACT.md)."""
    course = state.course
    if course is None:
        status = "ended" if state.ended_courses else "none"
        return {"status": status, "courses_ended": state.ended_courses}
    pending = course.pending
    return {
        "status": course.status,
        "course_started_at": utc_text_or_none(course.started_at),
        "unit": course.unit,
        "dose_mg_m2": course.dose_mg_m2,
        "schedule": course.schedule,
        "route": course.route,
        "cycle_length_days": course.cycle_length_days,
        "bsa_m2": course.bsa_m2,
        "last_dose_at": utc_text_or_none(course.last_dose_at),
        "next_dose_not_before": utc_text_or_none(course.next_dose_not_before),
        "watch": {
            "state": course.watch_state,
            "stopped_at": utc_text_or_none(course.stopped_at),
            "window_end": utc_text_or_none(course.window_end),
        },
        "escalation": {
            "escalated_at": utc_text_or_none(course.escalated_at),
            "answered": course.escalation_answered,
        },
        "next_reassessment_due": utc_text_or_none(pending.due_at) if pending else None,
        "reassessment_overdue_since": utc_text_or_none(
            course.overdue.due_at if course.overdue else None
        ),
        "next_timer_at": utc_text_or_none(next_due),
        "courses_ended": state.ended_courses,
    }


@dataclass(frozen=True, slots=True)
class LockedPatient:
    """The patient row as the fold reads it, under its lock (written back by one UPDATE)."""

    patient_id: str
    state: str
    next_timer_at: dt.datetime | None
    processed_event_pk: int
    evaluated_at: dt.datetime | None
    evaluated_policy: str | None
    fold_checkpoint: str | None


# Built once: the hot path's statements (a statement built per call cost more CPU than its
# round trip); SQLAlchemy caches their compiled form, psycopg prepares them on the server.
_LOCK_PATIENT = (
    select(*(PatientTable.c[name] for name in LockedPatient.__slots__))
    .where(PatientTable.c.patient_id == bindparam("patient_id"))
    .with_for_update()
)
_OPEN_OUTBOX = select(OutboxTable.c.id, OutboxTable.c.created_at, OutboxTable.c.event_pk).where(
    OutboxTable.c.patient_id == bindparam("patient_id"), OutboxTable.c.processed_at.is_(None)
)
# the SET clause comes from the parameters' keys; `key` names the row
_SAVE_PATIENT = (
    update(PatientTable)
    .where(PatientTable.c.patient_id == bindparam("key"))
    .values(version=PatientTable.c.version + 1)
)
_CLOSE_OUTBOX = (
    update(OutboxTable)
    .where(OutboxTable.c.id.in_(bindparam("ids", expanding=True)))
    .values(processed_at=bindparam("now"))
)
_ANSWER_DEAD_LETTERS = (
    update(DeadLetterTable)
    .where(
        DeadLetterTable.c.patient_id == bindparam("key"),
        DeadLetterTable.c.retried_at.is_(None),
    )
    .values(retried_at=bindparam("now"))
)
_SAVE_PATIENT_AND_CLOSE = _SAVE_PATIENT.add_cte(_CLOSE_OUTBOX.cte("closed")).add_cte(
    _ANSWER_DEAD_LETTERS.cte("answered")
)  # PostgreSQL: each runs once, whether the statement reads it or not
_INSERT_DECISIONS = insert(DecisionTable)  # executemany: batched into multi-row statements


@dataclass(slots=True)
class StoredDecision:
    """A stored decision as the fold compares it (core rows, no ORM object per decision: with
    long histories, building them was a fifth of a fold). What the fold changes is written
    back by `_save_decisions`, only for the rows it changed (`dirty`)."""

    decision_id: str
    patient_id: str
    at: dt.datetime
    action: str
    severity: str
    rule: str
    policy: str
    body: str
    due_at: dt.datetime | None
    created_at: dt.datetime
    superseded_at: dt.datetime | None
    superseded_reason: str | None
    superseded_by: str | None
    in_force_from: dt.datetime | None
    dirty: bool = False


# what a fold may change in a stored decision (all but its id, patient and creation)
_DECISION_CHANGES = (
    "at",
    "action",
    "severity",
    "rule",
    "policy",
    "body",
    "due_at",
    "superseded_at",
    "superseded_reason",
    "superseded_by",
    "in_force_from",
)
_STORED_COLUMNS = [DecisionTable.c[name] for name in StoredDecision.__slots__ if name != "dirty"]
_STORED_DECISIONS = select(*_STORED_COLUMNS).where(
    DecisionTable.c.patient_id == bindparam("patient_id")
)
_STORED_DECISIONS_OF = _STORED_DECISIONS.where(
    DecisionTable.c.decision_id.in_(bindparam("decision_ids", expanding=True))
)
_SAVE_DECISION = (
    update(DecisionTable)
    .where(DecisionTable.c.decision_id == bindparam("key"))
    .values({name: bindparam("new_" + name) for name in _DECISION_CHANGES})
)
_PATIENT_ALERT_KINDS = select(AlertTable.c.decision_id, AlertTable.c.kind).where(
    AlertTable.c.patient_id == bindparam("patient_id")
)


class _AlertsSent:
    """Which alerts the patient's decisions have had (`new`, `correction`, ...), read once per
    fold, on the first correction it considers (a late event may supersede many decisions)."""

    def __init__(self, session: Session, patient_id: str) -> None:
        self._session = session
        self._patient_id = patient_id
        self._kinds: dict[str, set[str]] | None = None

    def kinds(self, decision_id: str) -> set[str]:
        if self._kinds is None:
            self._kinds = {}
            rows = self._session.connection().execute(
                _PATIENT_ALERT_KINDS, {"patient_id": self._patient_id}
            )
            for sent_for, kind in rows:
                self._kinds.setdefault(sent_for, set()).add(kind)
        return self._kinds.get(decision_id, set())


def _save_decisions(session: Session, stored: dict[str, StoredDecision]) -> None:
    """Write back the stored decisions the fold changed (superseded, revived, revised)."""
    changed = [
        {
            "key": row.decision_id,
            **{"new_" + name: getattr(row, name) for name in _DECISION_CHANGES},
        }
        for row in stored.values()
        if row.dirty
    ]
    if changed:
        session.connection().execute(_SAVE_DECISION, changed)


def lock_patient(session: Session, patient_id: str) -> LockedPatient:
    """The per-patient lock: `SELECT ... FOR UPDATE` (PostgreSQL; SQLite's transactions hold
    the write lock from BEGIN). The row is made on the patient's first event. Core statements:
    this runs for every fold, and the ORM's per-statement cost was most of a fold's."""
    connection = session.connection()
    key = {"patient_id": patient_id}
    row = connection.execute(_LOCK_PATIENT, key).one_or_none()
    if row is None:
        connection.execute(
            insert_for(session)(PatientTable).values(patient_id=patient_id).on_conflict_do_nothing()
        )
        row = connection.execute(_LOCK_PATIENT, key).one()
    return LockedPatient(**row._mapping)


class StoredEventError(SafeMessageError):
    """A stored event no longer passes the event models (stored before a bound existed, or
    edited in the database): the fold cannot use it. Names the event, not its content."""

    def __init__(self, event_id: str, fields: list[str]) -> None:
        super().__init__(f"stored event {event_id} is invalid ({', '.join(fields)})")
        self.event_id = event_id


def _load_events(
    session: Session, patient_id: str, seen_pk: int = 0
) -> tuple[list[Event], int, set[str]]:
    """The patient's events, but those an admin quarantined; the largest row id; and the ids
    of the events stored after row `seen_pk` (the last fold's largest)."""
    rows = session.connection().execute(PATIENT_EVENTS, {"patient_id": patient_id}).all()
    events = []
    unseen: set[str] = set()
    for pk, event_id, body in rows:
        try:
            events.append(EVENT_ADAPTER.validate_json(body))
        except ValidationError as exc:
            fields = [".".join(str(p) for p in err["loc"][1:]) or "event" for err in exc.errors()]
            raise StoredEventError(event_id, list(dict.fromkeys(fields))) from None
        if pk > seen_pk:
            unseen.add(event_id)
    return events, max((pk for pk, _, _ in rows), default=0), unseen


def _resumed(
    session: Session,
    patient: LockedPatient,
    pack: PolicyPack,
    new_pks: list[int],
    now: dt.datetime,
) -> tuple[FoldResult, list[Event], int, tuple[str, ...]] | None:
    """The fold resumed from the patient's checkpoint, with the events it read, the largest
    event row id and the checkpoint's tail; None when a full fold is needed: no
    checkpoint, a fold made current again by an admin (`evaluated_at` cleared), another pack,
    a late event, or a backlog too large to name by id."""
    checkpoint = stored_checkpoint(patient.fold_checkpoint)
    if (
        checkpoint is None
        or patient.evaluated_at is None
        or patient.evaluated_policy != pack.label
        or len(new_pks) > OUTBOX_CHUNK
    ):
        return None
    events = events_after(session, patient.patient_id, checkpoint, new_pks)
    result = None if events is None else resume_patient(pack, checkpoint, events, now)
    if events is None or result is None:
        return None
    return result, events, max([patient.processed_event_pk, *new_pks]), checkpoint.tail


def _stored_decisions(
    session: Session, patient_id: str, decision_ids: set[str] | None
) -> dict[str, StoredDecision]:
    """The patient's stored decisions, or only those of `decision_ids`."""
    params: dict[str, object] = {"patient_id": patient_id}
    query = _STORED_DECISIONS
    if decision_ids is not None:
        if not decision_ids:
            return {}
        query, params["decision_ids"] = _STORED_DECISIONS_OF, sorted(decision_ids)
    rows = session.connection().execute(query, params)
    return {row.decision_id: StoredDecision(**row._mapping) for row in rows}


def _next_due(
    pack: PolicyPack, outcome: PatientOutcome, events: Sequence[Event], now: dt.datetime
) -> dt.datetime | None:
    """When this patient must be evaluated again without a new event: its next timer, or an
    event dated after the clock (not applied yet)."""
    timer = next_timer(pack, outcome.state)
    candidates = [timer[0]] if timer else []
    candidates += [e.occurred_at for e in events if e.occurred_at > now]
    return min(candidates).astimezone(dt.UTC) if candidates else None


def _fold_is_current(patient: LockedPatient, pack: PolicyPack, now: dt.datetime) -> bool:
    """No new event, no timer come, same pack: a fold now would store exactly what is stored
    (everything time-dependent is in `next_timer_at`). Duplicate tasks end here, cheaply."""
    timer_due = patient.next_timer_at is not None and patient.next_timer_at <= now
    return (
        patient.evaluated_at is not None
        and patient.evaluated_policy == pack.label
        and not timer_due
    )


# informational decisions that need no one to act now: with `alert_info_decisions` off (the
# default) they raise no feed alert (the patient page and the due-reassessments list show them)
QUIET_ACTIONS = frozenset({"schedule_reassessment", "coasting_watch_started", "watch_closed"})


def process_patient(
    sessions: sessionmaker[Session],
    pack: PolicyPack,
    patient_id: str,
    now: dt.datetime,
    *,
    quiet: frozenset[str] = frozenset(),
) -> ProcessOutcome:
    """One transaction: lock, fold, insert new decisions (+ alerts), supersede the unsupported.
    Decisions whose action is in `quiet` are stored without an alert."""
    with sessions.begin() as session:
        patient = lock_patient(session, patient_id)
        # The open outbox rows first, then the events: each row was committed with its event,
        # so every event of these rows is in the fold. Only these rows are marked done: a row
        # committed after this read (PostgreSQL reads each statement at a fresh snapshot, and
        # ids are not committed in order) may belong to an event the fold did not see; its
        # own task folds it.
        accepted = session.connection().execute(_OPEN_OUTBOX, {"patient_id": patient_id}).all()
        if not accepted and _fold_is_current(patient, pack, now):
            return ProcessOutcome(patient_id, 0, 0, 0, 0, 0, 0)  # nothing new: nothing to do
        resumed = _resumed(session, patient, pack, [event_pk for _, _, event_pk in accepted], now)
        unseen: set[str] = set()  # read only with a change of pack, never a resumed fold
        if resumed is not None:
            result, events, max_pk, tail = resumed
            # the decisions before the checkpoint stand: only the resumed fold's and the
            # checkpoint's tail (made after its last event, up to the last clock) can change
            touched = {d.decision_id for d in result.decisions}
            touched.update(tail)
            stored = _stored_decisions(session, patient_id, touched)
        else:
            events, max_pk, unseen = _load_events(session, patient_id, patient.processed_event_pk)
            result = fold_patient(pack, patient_id, events, now)
            stored = _stored_decisions(session, patient_id, None)
        outcome = result.outcome
        wanted = {d.decision_id: d for d in outcome.decisions}
        change = _changeover(patient, pack, stored, outcome, unseen)
        inserted = superseded = revived = revised = 0
        unit = outcome.state.course.unit if outcome.state.course else None
        alerts: list[AlertRow] = []
        sent = _AlertsSent(session, patient_id)
        new_rows: list[dict[str, object]] = []  # multi-row INSERTs, no ORM objects
        for decision_id, decision in wanted.items():
            row = stored.get(decision_id)
            told = (change is None or decision_id in change.alert) and (
                decision.action not in quiet
            )
            if row is None:
                new_rows.append(_decision_values(decision, now, change is not None))
                if decision.audience and told:
                    alerts.append(_alert(decision, "new", unit, now))
                inserted += 1
                continue
            if row.superseded_at is not None:
                row.superseded_at = None  # supported again (e.g. a wrong event was corrected)
                row.superseded_reason = row.superseded_by = None
                if change is not None:  # back with a change of pack: in force from now
                    row.in_force_from = now
                row.dirty = True
                revived += 1
            if _revise(sent, row, decision, unit, now, alerts):
                revised += 1
        for decision_id, row in stored.items():
            if decision_id not in wanted and row.superseded_at is None:
                row.superseded_at = now
                row.dirty = True
                superseded += 1
                if change is None:
                    row.superseded_reason = "later_events"
                    _correct_alert(sent, row, unit, now, alerts)
                    continue
                row.superseded_reason = "policy_change"
                row.superseded_by = change.replaced_by.get(decision_id)
                if decision_id in change.correct:
                    _correct_alert(sent, row, unit, now, alerts, policy=pack.label)
        if new_rows:
            session.connection().execute(_INSERT_DECISIONS, new_rows)
        _save_decisions(session, stored)
        next_due = _next_due(pack, outcome, events, now)
        summary = course_summary(outcome.state, next_due)
        pending = outcome.state.course.pending if outcome.state.course else None
        saved = {
            "key": patient_id,
            "state": json.dumps(summary),
            "status": str(summary["status"]),
            "next_timer_at": next_due,
            "timer_enqueued_at": None,  # this fold answered any fired timer
            "reassessment_due_at": pending.due_at.astimezone(dt.UTC) if pending else None,
            "processed_event_pk": max_pk,
            "fold_checkpoint": checkpoint_text(result.checkpoint),
            "evaluated_at": now,
            "evaluated_policy": pack.label,
        }
        # the outbox rows folded are closed, and a fold that went through ends the patient's
        # stopped monitoring, whatever stopped it (a database outage, an event since
        # quarantined): its dead letters are answered
        row_ids = [row_id for row_id, _, _ in accepted]
        connection = session.connection()
        if is_postgresql(session) and len(row_ids) <= OUTBOX_CHUNK:
            # one round trip: the three UPDATEs as one statement (data-modifying CTEs)
            connection.execute(_SAVE_PATIENT_AND_CLOSE, {**saved, "ids": row_ids, "now": now})
        else:
            connection.execute(_SAVE_PATIENT, saved)
            for start in range(0, len(row_ids), OUTBOX_CHUNK):
                chunk = row_ids[start : start + OUTBOX_CHUNK]
                connection.execute(_CLOSE_OUTBOX, {"ids": chunk, "now": now})
            connection.execute(_ANSWER_DEAD_LETTERS, {"key": patient_id, "now": now})
        # last: the alert ids' lock is held from here to the commit (see add_alerts)
        delivery_ids = fan_out(session, add_alerts(session, alerts), wall_now())
    done = len(accepted)
    EVENTS_PROCESSED.inc(done)
    for _, created_at, _ in accepted:
        PROCESSING_LATENCY.observe(max((now - created_at).total_seconds(), 0.0))
    log.info(
        "patient processed",
        extra={
            "events": len(events),
            "resumed": result.resumed,
            "inserted": inserted,
            "superseded": superseded,
            "revised": revised,
            "outbox_done": done,
        },
    )
    return ProcessOutcome(
        patient_id,
        len(events),
        inserted,
        superseded,
        revived,
        done,
        revised,
        tuple(delivery_ids),
        alerts_new=sum(1 for a in alerts if a.kind == "new"),
        alerts_corrected=sum(1 for a in alerts if a.kind == "correction"),
        policy_changed=change is not None,
        resumed=result.resumed,
    )


def _changeover(
    patient: LockedPatient,
    pack: PolicyPack,
    stored: dict[str, StoredDecision],
    outcome: PatientOutcome,
    unseen: set[str],
) -> Changeover | None:
    """When the patient's pack changed since its last fold: what to tell (`plan_changeover`):
    only the still-actionable advice that changed, and what comes from new events or timers.
    None when the pack is the one of the last fold (or there was none)."""
    if patient.evaluated_policy is None or patient.evaluated_policy == pack.label:
        return None
    before = [
        Decision.model_validate_json(row.body)
        for row in stored.values()
        if row.superseded_at is None
    ]
    since = patient.evaluated_at
    fresh = frozenset(
        d.decision_id
        for d in outcome.decisions
        if d.trigger in unseen or (d.trigger.startswith(TIMER) and (since is None or d.at > since))
    )
    log.info(
        "policy changed for a patient",
        extra={"from_policy": patient.evaluated_policy, "to_policy": pack.label},
    )
    after_course = CourseView.of(outcome.state)
    return plan_changeover(
        before, _stored_course(patient.state), outcome.decisions, after_course, fresh
    )


def _stored_course(state: str) -> CourseView | None:
    """The course as the last fold left it (`course_summary`), for what was actionable then."""
    summary = json.loads(state)
    started = summary.get("course_started_at")
    if not isinstance(started, str):
        return None

    def moment(value: object) -> dt.datetime | None:
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else None

    escalation = summary.get("escalation") or {}
    return CourseView(
        started_at=dt.datetime.fromisoformat(started),
        pending_due=moment(summary.get("next_reassessment_due")),
        overdue_due=moment(summary.get("reassessment_overdue_since")),
        escalation_open=escalation.get("escalated_at") is not None
        and not escalation.get("answered"),
    )


def _revise(
    sent: _AlertsSent,
    row: StoredDecision,
    decision: Decision,
    unit: str | None,
    now: dt.datetime,
    alerts: list[AlertRow],
) -> bool:
    """The same decision id with other content: a late event changed what the decision says
    (the dose a reduction goes to, its rationale) but not what identifies it. The stored row
    follows the fold, as replay does; when more than the wording changed, whoever was alerted
    to the old content gets the correction alert."""
    body = decision.model_dump_json(exclude_none=True)
    if row.body == body:
        return False
    if _without_rationale(row.body) != _without_rationale(body):
        _correct_alert(sent, row, unit, now, alerts)
    fresh = _decision_values(decision, row.created_at, changeover=False)
    for name in ("at", "action", "severity", "rule", "policy", "body", "due_at"):
        setattr(row, name, fresh[name])
    row.dirty = True
    return True


def _without_rationale(body: str) -> dict[str, object]:
    content: dict[str, object] = json.loads(body)
    content.pop("rationale", None)
    return content


def _decision_values(decision: Decision, now: dt.datetime, changeover: bool) -> dict[str, object]:
    """A new decision's column values; with a change of pack it is in force from now."""
    return {
        "decision_id": decision.decision_id,
        "patient_id": decision.patient_id,
        "at": decision.at,
        "action": decision.action,
        "severity": decision.severity,
        "rule": decision.rule,
        "policy": decision.policy,
        "body": decision.model_dump_json(exclude_none=True),
        "due_at": decision.due_at.astimezone(dt.UTC) if decision.due_at else None,
        "created_at": now,
        "in_force_from": now if changeover else None,
    }


def _alert(decision: Decision, kind: str, unit: str | None, now: dt.datetime) -> AlertRow:
    return AlertRow(
        decision_id=decision.decision_id,
        kind=kind,
        action=decision.action,
        patient_id=decision.patient_id,
        unit=unit,
        severity=decision.severity,
        audience=json.dumps(decision.audience),
        message=decision.rationale,
        created_at=now,
        clinical_at=decision.at,
    )


def _correct_alert(
    sent: _AlertsSent,
    row: StoredDecision,
    unit: str | None,
    now: dt.datetime,
    alerts: list[AlertRow],
    *,
    policy: str | None = None,
) -> None:
    """An alert went out for a decision that no longer holds: say so, once. `policy`: the
    pack it changed to, when that is why."""
    kinds = sent.kinds(row.decision_id)
    if "new" not in kinds or "correction" in kinds:
        return
    if any(a.decision_id == row.decision_id and a.kind == "correction" for a in alerts):
        return
    decision = Decision.model_validate_json(row.body)
    alerts.append(
        AlertRow(
            decision_id=row.decision_id,
            kind="correction",
            action=decision.action,
            patient_id=row.patient_id,
            unit=unit,
            severity=decision.severity,
            audience=json.dumps(decision.audience),
            message=(
                f"Correction: the earlier {decision.action.replace('_', ' ')} advice no longer "
                + (
                    f"applies under the clinical policy {policy}, now in use; "
                    if policy
                    else "applies after later information; "
                )
                + "see the current decisions."
            ),
            created_at=now,
            clinical_at=decision.at,
        )
    )
