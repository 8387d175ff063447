"""`process_patient` on PostgreSQL: an ingest committing while the fold runs, and late
events that change what a kept decision says.

Ingest transactions commit in any order, so event ids (and outbox ids) are not committed in
order, and PostgreSQL reads each statement at a fresh snapshot. An outbox row committed after the
task read the patient's events belongs to an event the fold did not see: it must stay open (its
own task, or the re-drive, folds it), never be marked processed by this run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import col, select

from monitor.ingest.service import body_hash, store_events
from monitor.processing import service as processing
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from monitor.storage.models import AlertRow, EventRow, OutboxRow
from policies import parse_event
from policies.events import canonical_body
from tests.common.factories import assessment, at, enrollment, treatment_change
from tests.conftest import FIXED_NOW
from tests.integration.conftest import current_decisions, evaluate_stored

PATIENT = "P-RACE"


@pytest.fixture
def services(fresh_database: str) -> Iterator[Services]:
    svc = build_services(Settings(database_url=fresh_database, fixed_now=FIXED_NOW))
    upgrade(svc.engine)
    yield svc
    svc.close()


def outbox_open(services: Services) -> dict[str, bool]:
    with services.sessions() as session:
        rows = session.execute(
            select(col(EventRow.event_id), col(OutboxRow.processed_at)).join(
                OutboxRow, col(OutboxRow.event_pk) == col(EventRow.id)
            )
        ).all()
    return {event_id: processed is None for event_id, processed in rows}


def test_an_event_committed_during_the_fold_stays_open_until_folded(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies: list[dict[str, Any]] = [
        enrollment(at(0), patient=PATIENT, event_id="race-e0"),
        assessment(at(21), patient=PATIENT, event_id="race-late", sensory=2),
        assessment(at(42), patient=PATIENT, event_id="race-e2", sensory=1),
    ]
    first, late, last = (parse_event(b) for b in bodies)
    store_events(services.sessions, [first], FIXED_NOW)
    # A slow ingest: its event and outbox row get their ids now, and commit later.
    slow = services.sessions()
    slow.begin()
    late_row = EventRow(
        event_id=late.event_id,
        patient_id=PATIENT,
        type=late.type,
        occurred_at=late.occurred_at,
        received_at=FIXED_NOW,
        body=canonical_body(late),
        body_hash=body_hash(canonical_body(late)),
    )
    slow.add(late_row)
    slow.flush()
    assert late_row.id is not None
    slow.add(OutboxRow(event_pk=late_row.id, patient_id=PATIENT, created_at=FIXED_NOW))
    slow.flush()
    store_events(services.sessions, [last], FIXED_NOW)  # a higher id, committed first

    load_events = processing._load_events

    def load_then_let_the_slow_ingest_commit(session: Any, patient_id: str, seen: int) -> Any:
        loaded = load_events(session, patient_id, seen)
        slow.commit()  # lands between the fold's read and its outbox update
        return loaded

    monkeypatch.setattr(processing, "_load_events", load_then_let_the_slow_ingest_commit)
    outcome = processing.process_patient(services.sessions, services.pack, PATIENT, FIXED_NOW)
    slow.close()
    assert outcome.events == 2  # the fold did not see the late event
    assert outcome.outbox_done == 2
    assert outbox_open(services) == {"race-e0": False, "race-late": True, "race-e2": False}

    monkeypatch.undo()
    again = processing.process_patient(services.sessions, services.pack, PATIENT, FIXED_NOW)
    assert (again.events, again.outbox_done) == (3, 1)
    assert outbox_open(services) == {"race-e0": False, "race-late": False, "race-e2": False}
    assert current_decisions(services.engine) == evaluate_stored(services.engine)


def store_and_process(services: Services, *bodies: dict[str, Any]) -> processing.ProcessOutcome:
    events = [parse_event(b) for b in bodies]
    store_events(services.sessions, events, FIXED_NOW)
    return processing.process_patient(
        services.sessions, services.pack, events[0].patient_id, FIXED_NOW
    )


def alert_kinds(services: Services, decision_id: str) -> list[str]:
    with services.sessions() as session:
        return list(
            session.execute(
                select(col(AlertRow.kind))
                .where(col(AlertRow.decision_id) == decision_id)
                .order_by(col(AlertRow.id))
            ).scalars()
        )


def current(services: Services, patient_id: str) -> list[dict[str, Any]]:
    return current_decisions(services.engine)[patient_id]


def test_a_late_event_revises_a_kept_decision_and_corrects_its_alert(
    services: Services,
) -> None:
    patient = "P-REVISE"
    store_and_process(
        services,
        enrollment(at(0), patient=patient, event_id="rv-e0"),
        assessment(at(21), patient=patient, event_id="rv-a21", sensory=2),
    )
    [before] = [d for d in current(services, patient) if d["action"] == "reduce_dose"]
    assert before["dose_mg_m2"] == 1.0
    # The unit had already reduced to 1.0 before that assessment: the reduction now goes on
    # to 0.7, under the same decision id (same rule, action, trigger, time).
    late = treatment_change(
        at(10), "dose_reduced", patient=patient, event_id="rv-tc10", dose_mg_m2=1.0
    )
    outcome = store_and_process(services, late)
    assert outcome.revised >= 1
    [after] = [d for d in current(services, patient) if d["action"] == "reduce_dose"]
    assert (after["decision_id"], after["dose_mg_m2"]) == (before["decision_id"], 0.7)
    assert current_decisions(services.engine)[patient] == evaluate_stored(services.engine)[patient]
    assert alert_kinds(services, before["decision_id"]) == ["new", "correction"]


def test_a_wording_only_revision_sends_no_correction(services: Services) -> None:
    """A late assessment changes only a kept decision's rationale (the watch's first
    reassessment becomes a later one): the row follows the fold, nobody is re-alerted."""
    patient = "P-WORDING"
    start = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
    enrolled = enrollment(start, patient=patient, event_id="wo-e0", age=60)
    week8 = assessment(
        start + dt.timedelta(days=56), patient=patient, event_id="wo-a8", sensory=3, motor=2
    )
    week6 = assessment(
        start + dt.timedelta(days=42), patient=patient, event_id="wo-a6", sensory=3, cycle=3
    )
    store_and_process(services, enrolled, week8)
    [before] = [
        d
        for d in current(services, patient)
        if d["action"] == "schedule_reassessment" and d["trigger"] == "wo-a8"
    ]
    assert "first reassessment of the coasting watch" in before["rationale"]
    outcome = store_and_process(services, week6)
    assert outcome.revised >= 1
    [after] = [d for d in current(services, patient) if d["decision_id"] == before["decision_id"]]
    assert {k: v for k, v in after.items() if k != "rationale"} == {
        k: v for k, v in before.items() if k != "rationale"
    }
    assert "first reassessment" not in after["rationale"]
    assert current_decisions(services.engine)[patient] == evaluate_stored(services.engine)[patient]
    assert alert_kinds(services, before["decision_id"]) == ["new"]
