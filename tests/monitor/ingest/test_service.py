"""`store_events` (monitor/ingest.py): event + outbox row in one transaction, idempotent by
`event_id`, a conflict stores nothing, concurrent senders of one event store it once."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

import monitor.ingest.service
from monitor.auth.tokens import Principal
from monitor.ingest.service import EventConflictError, IngestResult, body_hash, store_events
from monitor.services import Services
from policies.events import canonical_body, parse_event
from tests.common import factories as f
from tests.common.service import row_counts, rows
from tests.conftest import FIXED_NOW

PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


def store(services: Services, *bodies: dict[str, Any]) -> IngestResult:
    return store_events(services.sessions, f.events(*bodies), FIXED_NOW)


def test_new_events_get_rows_and_outbox_rows(services: Services) -> None:
    body = f.assessment(f.at(3).astimezone(PLUS_TWO), patient="P7", event_id="i-1", sensory=1)
    result = store(services, body, f.enrollment(patient="P8", event_id="i-2"))
    assert result == IngestResult(
        statuses=[("i-1", "accepted"), ("i-2", "accepted")], patients=["P7", "P8"]
    )
    [event, _] = rows(services, "SELECT * FROM event ORDER BY id")
    assert event["body"] == canonical_body(parse_event(body))
    assert '"occurred_at": "2026-01-08T11:00:00+02:00"' in event["body"]  # offset kept
    assert event["body_hash"] == body_hash(event["body"])
    assert event["occurred_at"] == "2026-01-08 09:00:00.000000"  # indexed column in UTC
    assert event["received_at"] == "2026-10-01 12:00:00.000000"
    outbox = rows(services, "SELECT event_pk, patient_id, created_at, processed_at FROM outbox")
    assert outbox == [
        {
            "event_pk": 1,
            "patient_id": "P7",
            "created_at": event["received_at"],
            "processed_at": None,
        },
        {
            "event_pk": 2,
            "patient_id": "P8",
            "created_at": event["received_at"],
            "processed_at": None,
        },
    ]


def test_duplicates_name_no_patient_with_new_work(services: Services) -> None:
    store(services, f.enrollment(patient="P1", event_id="i-1"))
    result = store(
        services,
        f.enrollment(patient="P1", event_id="i-1"),
        f.assessment(f.at(1), patient="P2", event_id="i-2"),
    )
    assert result == IngestResult(
        statuses=[("i-1", "duplicate"), ("i-2", "accepted")], patients=["P2"]
    )
    assert row_counts(services, ["event", "outbox"]) == {"event": 2, "outbox": 2}


def test_a_conflict_lists_each_id_once_and_stores_nothing(services: Services) -> None:
    store(services, f.assessment(f.at(1), event_id="i-1", sensory=1))
    with pytest.raises(EventConflictError) as caught:
        store(
            services,
            f.assessment(f.at(2), event_id="i-new"),
            f.assessment(f.at(1), event_id="i-1", sensory=2),
            f.assessment(f.at(1), event_id="i-1", sensory=3),
            f.assessment(f.at(3), event_id="i-2", sensory=1),
            f.assessment(f.at(3), event_id="i-2", sensory=2),
        )
    assert caught.value.event_ids == ["i-1", "i-2"]
    assert str(caught.value) == "i-1, i-2"
    assert row_counts(services, ["event", "outbox"]) == {"event": 1, "outbox": 1}


def test_the_first_body_of_an_id_in_a_request_is_the_one_compared(services: Services) -> None:
    """Regression: bodies were keyed by id, so a later body of the same id replaced the first
    and the pair was stored as (accepted, duplicate) under the second body."""
    first = f.assessment(f.at(1), event_id="i-1", sensory=1)
    second = f.assessment(f.at(1), event_id="i-1", sensory=4)
    with pytest.raises(EventConflictError):
        store(services, first, second)
    assert row_counts(services, ["event"]) == {"event": 0}


def test_a_lost_insert_race_is_retried_and_sees_the_winner(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unique constraint decides a race; the loser runs again and reports a duplicate."""
    body = f.enrollment(event_id="i-race")
    real = monitor.ingest.service._store
    attempts: list[int] = []

    def racing(*args: Any) -> IngestResult:
        attempts.append(1)
        if len(attempts) == 1:
            real(services.sessions, f.events(body), FIXED_NOW)  # the other request wins...
            raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
        return real(*args)

    monkeypatch.setattr(monitor.ingest.service, "_store", racing)
    result = store_events(services.sessions, f.events(body), FIXED_NOW)
    assert result == IngestResult(statuses=[("i-race", "duplicate")], patients=[])
    assert len(attempts) == 2
    assert row_counts(services, ["event", "outbox"]) == {"event": 1, "outbox": 1}


def test_concurrent_senders_of_the_same_events_store_them_once(services: Services) -> None:
    bodies = [f.assessment(f.at(n), patient="PC", event_id=f"c-{n}") for n in range(20)]
    results: list[IngestResult] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            results.append(store(services, *bodies))
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    accepted = [s for r in results for _, s in r.statuses if s == "accepted"]
    assert len(accepted) == 20
    assert sorted(len(r.patients) for r in results) == [0, 0, 0, 1]
    assert row_counts(services, ["event", "outbox"]) == {"event": 20, "outbox": 20}


def test_then_commits_with_the_events_or_neither_does(services: Services) -> None:
    """Issue 17: `then` (the API's audit row) runs last in the events' transaction; it is not
    called on a conflict."""
    calls: list[IngestResult] = []

    def audited(session: Any, result: IngestResult) -> None:
        calls.append(result)
        services.audit.record_in(
            session.connection(), Principal("feed", "ingest"), "POST /v1/events", "1 events",
            202, FIXED_NOW,
        )  # fmt: skip

    def failing(session: Any, result: IngestResult) -> None:
        audited(session, result)
        raise RuntimeError("after the audit row")

    body = f.enrollment(patient="PT", event_id="t-1")
    with pytest.raises(RuntimeError):
        store_events(services.sessions, f.events(body), FIXED_NOW, failing)
    assert row_counts(services, ["event", "outbox", "audit_log"]) == dict.fromkeys(
        ["event", "outbox", "audit_log"], 0
    )
    result = store_events(services.sessions, f.events(body), FIXED_NOW, audited)
    assert result.statuses == [("t-1", "accepted")]
    assert row_counts(services, ["event", "outbox", "audit_log"]) == dict.fromkeys(
        ["event", "outbox", "audit_log"], 1
    )
    calls.clear()
    with pytest.raises(EventConflictError):
        store_events(services.sessions, f.events({**body, "age": 80}), FIXED_NOW, audited)
    assert calls == []
    assert services.audit.verify().broken_at is None
