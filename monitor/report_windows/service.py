"""Report windows in the database: opened for each patient asked to report, marked when a
patient report is stored, and each patient's weekly status for the staff. No HTTP here.

Every step is idempotent: a window is one row (unique per patient, course and index), opened
with `ON CONFLICT DO NOTHING`, so two scheduler runs at once open it once and only the run
whose insert went in writes its `report_due` webhooks.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.report_windows.windows import (
    ON_TREATMENT,
    STOPPED,
    asked_to_report,
    enrolled_at,
    window,
    window_at,
)
from monitor.storage.database import insert_for
from monitor.storage.models import EventRow, PatientRow, ReportWindowRow
from policies.decisions import utc_text, utc_text_or_none

# the canonical body's text of a patient report (`canonical_body`: sorted keys, ", " and ": "),
# to narrow the events read; each one found is still parsed and checked
PATIENT_SOURCE = '"source": "patient"'
# how long after a window ended a report back-dated into it is still looked for: the job does
# not read every missed window of every past course at each tick for ever
LATE_REPORT_DAYS = 28


@dataclass(frozen=True, slots=True)
class AskedPatient:
    patient_id: str
    unit: str | None
    status: str
    enrolled_at: dt.datetime


def asked_patients(session: Session, unit: str | None = None) -> list[AskedPatient]:
    """The patients whose course is asked for weekly reports (in `unit`, if given), by id."""
    query = select(col(PatientRow.patient_id), col(PatientRow.state)).where(
        col(PatientRow.status).in_(ON_TREATMENT + STOPPED)
    )
    if unit is not None:  # the stored state is json.dumps'd: the same text
        query = query.where(col(PatientRow.state).contains(f'"unit": {json.dumps(unit)}'))
    asked = []
    for patient_id, text in session.execute(query.order_by(col(PatientRow.patient_id))).all():
        state = json.loads(text)
        start = enrolled_at(state)
        if start is None or not asked_to_report(state):
            continue
        if unit is not None and state.get("unit") != unit:
            continue
        asked.append(AskedPatient(patient_id, state.get("unit"), state["status"], start))
    return asked


def open_windows(session: Session, now: dt.datetime) -> list[ReportWindowRow]:
    """Open every window so far of each course asked to report (the current one, and earlier
    ones never opened: they count as missed unless a report is found in them). Returns the
    rows this call inserted; a concurrent call that inserted the same row first wins it."""
    patients = asked_patients(session)
    if not patients:
        return []
    # windows open in order, all up to the current one: the highest opened says what is left
    opened_up_to: dict[tuple[str, dt.datetime], int] = {
        (p, e): k
        for p, e, k in session.execute(
            select(
                col(ReportWindowRow.patient_id),
                col(ReportWindowRow.enrolled_at),
                func.max(col(ReportWindowRow.window_index)),
            )
            .where(col(ReportWindowRow.patient_id).in_([p.patient_id for p in patients]))
            .group_by(col(ReportWindowRow.patient_id), col(ReportWindowRow.enrolled_at))
        ).all()
    }
    values = []
    for patient in patients:
        current = window_at(patient.enrolled_at, now)
        first = opened_up_to.get((patient.patient_id, patient.enrolled_at), -1) + 1
        for index in range(first, current.index + 1):
            week = window(patient.enrolled_at, index)
            values.append(
                {
                    "patient_id": patient.patient_id,
                    "unit": patient.unit,
                    "enrolled_at": patient.enrolled_at,
                    "window_index": index,
                    "window_start": week.start,
                    "window_end": week.end,
                    "created_at": now,
                }
            )
    if not values:
        return []
    inserted = session.execute(
        insert_for(session)(ReportWindowRow)
        .values(values)
        .on_conflict_do_nothing()
        .returning(col(ReportWindowRow.id))
    ).scalars()
    ids = list(inserted)
    return list(
        session.execute(select(ReportWindowRow).where(col(ReportWindowRow.id).in_(ids))).scalars()
    )


def mark_reported(session: Session, now: dt.datetime) -> int:
    """Set `reported_at` on open windows that now hold a patient report (the first one's
    time): a report is a stored, not quarantined `assessment` with `source: patient` whose
    `occurred_at` falls in the window. Windows that ended more than `LATE_REPORT_DAYS` ago
    stay as they are. Returns how many windows were marked."""
    unreported = list(
        session.execute(
            select(ReportWindowRow).where(
                col(ReportWindowRow.reported_at).is_(None),
                col(ReportWindowRow.window_end) > now - dt.timedelta(days=LATE_REPORT_DAYS),
                col(ReportWindowRow.window_start) <= now,
            )
        ).scalars()
    )
    if not unreported:
        return 0
    by_patient: dict[str, list[ReportWindowRow]] = defaultdict(list)
    for row in unreported:
        by_patient[row.patient_id].append(row)
    earliest = min(row.window_start for row in unreported)
    reports = session.execute(
        select(col(EventRow.patient_id), col(EventRow.occurred_at), col(EventRow.body))
        .where(
            col(EventRow.patient_id).in_(list(by_patient)),
            col(EventRow.type) == "assessment",
            col(EventRow.quarantined_at).is_(None),
            col(EventRow.occurred_at) >= earliest,
            col(EventRow.body).contains(PATIENT_SOURCE),
        )
        .order_by(col(EventRow.occurred_at))
    ).all()
    marked = 0
    for patient_id, occurred_at, body in reports:
        if json.loads(body).get("source") != "patient":
            continue
        for row in by_patient[patient_id]:
            if row.reported_at is None and row.window_start <= occurred_at < row.window_end:
                row.reported_at = occurred_at  # in time order: the first report stands
                marked += 1
    session.flush()
    return marked


def weekly_status(
    rows: list[ReportWindowRow], enrolled: dt.datetime, at: dt.datetime
) -> dict[str, Any]:
    """A course's weekly reporting at `at`: the current window, reported or due, and the
    windows before it reported and missed (`rows`: the course's windows)."""
    current = window_at(enrolled, at)
    reported_at = {
        r.window_index: r.reported_at
        for r in rows
        if r.reported_at is not None and r.reported_at <= at
    }
    earlier_reported = sum(1 for k in reported_at if k < current.index)
    this_week = reported_at.get(current.index)
    return {
        "window": current.index,
        "window_start": utc_text(current.start),
        "window_end": utc_text(current.end),
        "state": "reported" if this_week is not None else "due",
        "reported_at": utc_text_or_none(this_week),
        "reported": earlier_reported + (this_week is not None),
        "missed": current.index - earlier_reported,
    }


def course_windows(
    session: Session, patients: list[AskedPatient]
) -> dict[str, list[ReportWindowRow]]:
    """Each patient's windows of its current course."""
    wanted = {p.patient_id: p.enrolled_at for p in patients}
    grouped: dict[str, list[ReportWindowRow]] = {p: [] for p in wanted}
    if not wanted:
        return grouped
    rows = session.execute(
        select(ReportWindowRow)
        .where(col(ReportWindowRow.patient_id).in_(list(wanted)))
        .order_by(col(ReportWindowRow.window_index))
    ).scalars()
    for row in rows:
        if row.enrolled_at == wanted[row.patient_id]:
            grouped[row.patient_id].append(row)
    return grouped


def unit_reports(session: Session, unit: str, at: dt.datetime) -> list[dict[str, Any]]:
    """The unit's patients asked to report, each with its weekly status; those whose current
    window is still unreported first, then by id."""
    patients = asked_patients(session, unit)
    windows = course_windows(session, patients)
    listed = [
        {
            "patient_id": p.patient_id,
            "status": p.status,
            "weekly_report": weekly_status(windows[p.patient_id], p.enrolled_at, at),
        }
        for p in patients
        if p.enrolled_at <= at
    ]
    return sorted(listed, key=lambda p: (p["weekly_report"]["state"] != "due", p["patient_id"]))


def weekly_statuses(
    session: Session, states: dict[str, dict[str, Any]], at: dt.datetime
) -> dict[str, dict[str, Any] | None]:
    """The weekly status of each patient (by its cached course state) asked to report at
    `at`; None for the others (the chair list's `weekly_report`)."""
    asked = [
        AskedPatient(patient_id, state.get("unit"), str(state["status"]), start)
        for patient_id, state in states.items()
        if (start := enrolled_at(state)) is not None and asked_to_report(state) and start <= at
    ]
    windows = course_windows(session, asked)
    found: dict[str, dict[str, Any] | None] = dict.fromkeys(states)
    for p in asked:
        found[p.patient_id] = weekly_status(windows[p.patient_id], p.enrolled_at, at)
    return found
