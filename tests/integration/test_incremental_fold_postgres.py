"""Incremental folding in the worker, on PostgreSQL (issue 17, item 1).

Events of one patient arrive one at a time, as gradings do, with the clock moving: each fold
resumes the stored checkpoint and reads only the new events (not the whole history), and the
current decisions equal a full fold's. A late event, a quarantine and a pack change each fold
from the first event again, and the result still equals the full fold.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest

from monitor.admin.quarantine import set_quarantine
from monitor.bench.synthetic import generate
from monitor.ingest.service import store_events
from monitor.processing.service import process_patient
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from monitor.storage.models import PatientRow
from policies import Event, builtin_pack, evaluate, parse_event
from policies.events import EVENT_ADAPTER
from tests.common import factories as f
from tests.integration.conftest import current_decisions

PACK = builtin_pack("default@2")


@pytest.fixture
def services(fresh_database: str) -> Iterator[Services]:
    svc = build_services(Settings(database_url=fresh_database, policy="default@2"))
    upgrade(svc.engine)
    yield svc
    svc.close()


def timeline(events: int, patient_id: str) -> list[Event]:
    """A synthetic timeline (the module's tests share one database: one patient each)."""
    lines = [line.replace("SYN-000001", patient_id) for line in generate(1, events, seed=17)]
    parsed = [EVENT_ADAPTER.validate_json(line) for line in lines]
    return sorted(parsed, key=lambda e: (e.occurred_at.astimezone(dt.UTC), e.event_id))


def expected(events: list[Event], clock: dt.datetime) -> list[dict[str, object]]:
    return [json.loads(d.model_dump_json(exclude_none=True)) for d in evaluate(PACK, events, clock)]


def stored(services: Services, patient_id: str) -> list[dict[str, object]]:
    return current_decisions(services.engine).get(patient_id, [])


def test_each_new_event_resumes_the_fold_and_reads_only_what_is_new(services: Services) -> None:
    events = timeline(120, "INC-ONE-BY-ONE")
    patient_id = events[0].patient_id
    resumed = 0
    for index, event in enumerate(events):
        clock = event.occurred_at.astimezone(dt.UTC) + dt.timedelta(hours=1)
        store_events(services.sessions, [event], clock)
        outcome = process_patient(services.sessions, PACK, patient_id, clock)
        assert outcome.outbox_done == 1
        if index:
            assert outcome.resumed, f"event {index} was folded from the start"
            assert outcome.events <= 2, "a resumed fold read the folded history again"
            resumed += 1
        if index % 20 == 0 or index == len(events) - 1:
            assert stored(services, patient_id) == expected(events[: index + 1], clock)
    assert resumed == len(events) - 1


def test_a_late_event_a_quarantine_and_a_pack_change_fold_from_the_start(
    services: Services,
) -> None:
    events = timeline(60, "INC-LATE")
    patient_id = events[0].patient_id
    late = events[30]
    on_time = [e for e in events if e is not late]
    clock = events[-1].occurred_at.astimezone(dt.UTC) + dt.timedelta(days=40)
    for event in on_time:
        store_events(services.sessions, [event], clock)
        process_patient(services.sessions, PACK, patient_id, clock)
    assert stored(services, patient_id) == expected(on_time, clock)

    store_events(services.sessions, [late], clock)
    outcome = process_patient(services.sessions, PACK, patient_id, clock)
    assert not outcome.resumed
    assert outcome.events == len(events)
    assert stored(services, patient_id) == expected(events, clock)

    quarantined = events[10]
    set_quarantine(
        services.sessions, quarantined.event_id, quarantined=True, by="t", reason="t", now=clock
    )
    outcome = process_patient(services.sessions, PACK, patient_id, clock)
    assert not outcome.resumed
    kept = [e for e in events if e is not quarantined]
    assert stored(services, patient_id) == expected(kept, clock)

    version_1 = builtin_pack("default@1")
    outcome = process_patient(services.sessions, version_1, patient_id, clock)
    assert not outcome.resumed
    assert outcome.policy_changed


def test_a_timer_that_comes_fires_from_the_checkpoint(services: Services) -> None:
    patient_id = "INC-TIMER"
    bodies = [
        f.enrollment(f.at(0), patient=patient_id, event_id="inc-timer-e1"),
        f.assessment(f.at(21), patient=patient_id, event_id="inc-timer-e2", sensory=1),
    ]
    events = [parse_event(b) for b in bodies]
    clock = events[-1].occurred_at.astimezone(dt.UTC) + dt.timedelta(hours=1)
    store_events(services.sessions, events, clock)
    process_patient(services.sessions, PACK, patient_id, clock)
    with services.sessions() as session:
        patient = session.get(PatientRow, patient_id)
        assert patient is not None
        assert patient.next_timer_at is not None
        timer = patient.next_timer_at
    outcome = process_patient(services.sessions, PACK, patient_id, timer)
    assert outcome.resumed
    assert outcome.inserted >= 1  # the overdue reassessment
    assert stored(services, patient_id) == expected(events, timer)


def test_one_fold_saves_the_patient_closes_its_outbox_rows_and_answers_its_dead_letters(
    services: Services,
) -> None:
    """On PostgreSQL the three UPDATEs are one statement: each part still does its work, and
    touches only this patient's rows."""
    from sqlalchemy import text

    mine, other = timeline(6, "INC-SAVE-MINE"), timeline(3, "INC-SAVE-OTHER")
    clock = max(e.occurred_at for e in mine + other).astimezone(dt.UTC) + dt.timedelta(hours=1)
    store_events(services.sessions, mine + other, clock)
    with services.engine.begin() as conn:
        for patient_id in ("INC-SAVE-MINE", "INC-SAVE-OTHER"):
            conn.execute(
                text(
                    "INSERT INTO dead_letter (task, patient_id, reason, error, attempts, "
                    "created_at) VALUES ('t', :p, 'processing_error', 'e', 1, :now)"
                ),
                {"p": patient_id, "now": clock},
            )
    outcome = process_patient(services.sessions, PACK, "INC-SAVE-MINE", clock)
    assert outcome.outbox_done == 6
    with services.engine.connect() as conn:
        open_rows = dict(
            conn.execute(
                text(
                    "SELECT patient_id, count(*) FROM outbox WHERE processed_at IS NULL "
                    "GROUP BY patient_id"
                )
            ).all()
        )
        answered = dict(
            conn.execute(
                text(
                    "SELECT patient_id, retried_at IS NOT NULL FROM dead_letter "
                    "WHERE patient_id LIKE 'INC-SAVE-%'"
                )
            ).all()
        )
        patient = conn.execute(
            text(
                "SELECT version, evaluated_at, processed_event_pk FROM patient "
                "WHERE patient_id = :p"
            ),
            {"p": "INC-SAVE-MINE"},
        ).one()
    assert open_rows == {"INC-SAVE-OTHER": 3}
    assert answered == {"INC-SAVE-MINE": True, "INC-SAVE-OTHER": False}
    assert (patient.version, patient.evaluated_at) == (1, clock)
    assert patient.processed_event_pk > 0
    assert stored(services, "INC-SAVE-MINE") == expected(mine, clock)
