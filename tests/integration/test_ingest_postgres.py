"""Issue 17: `store_in` on PostgreSQL stores a batch with two statements whose text does not
grow with it (the stored hashes by `= ANY(array)`; the events from `unnest` with their outbox
rows in one INSERT): rows in request order, the same duplicates, conflicts and race retry as
before."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import event, text

from monitor.auth.audit import ChainReport
from monitor.auth.tokens import Principal
from monitor.ingest.service import EventConflictError, IngestResult, body_hash, store_events
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from policies.events import canonical_body, parse_event
from tests.common import factories as f
from tests.conftest import FIXED_NOW

PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


@pytest.fixture(scope="module")
def services(fresh_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    settings = Settings(
        database_url=fresh_database,
        data_dir=tmp_path_factory.mktemp("ingest-pg"),
        audit_key="ingest-postgres-test-key-0123456789abcdef",
    )
    built = build_services(settings)
    upgrade(built.engine)
    yield built
    built.close()


def store(services: Services, *bodies: dict[str, Any]) -> IngestResult:
    return store_events(services.sessions, f.events(*bodies), FIXED_NOW)


def select(services: Services, sql: str, **params: Any) -> list[dict[str, Any]]:
    with services.engine.connect() as connection:
        return [dict(r) for r in connection.execute(text(sql), params).mappings()]


def test_a_batch_is_stored_in_request_order_with_its_outbox_rows(services: Services) -> None:
    bodies = [
        f.assessment(f.at(3).astimezone(PLUS_TWO), patient="PO-1", event_id="po-3", sensory=1),
        f.enrollment(patient="PO-2", event_id="po-1"),
        f.enrollment(patient="PO-1", event_id="po-2"),
    ]
    result = store(services, *bodies, bodies[1])  # the last one again: a duplicate
    assert result == IngestResult(
        statuses=[
            ("po-3", "accepted"),
            ("po-1", "accepted"),
            ("po-2", "accepted"),
            ("po-1", "duplicate"),
        ],
        patients=["PO-1", "PO-2"],
    )
    stored = select(services, "SELECT * FROM event WHERE event_id LIKE 'po-%' ORDER BY id")
    assert [r["event_id"] for r in stored] == ["po-3", "po-1", "po-2"]
    first = stored[0]
    assert first["body"] == canonical_body(parse_event(bodies[0]))
    assert '"occurred_at": "2026-01-08T11:00:00+02:00"' in first["body"]  # offset kept
    assert first["body_hash"] == body_hash(first["body"])
    assert first["occurred_at"] == f.at(3)  # the same instant, as timestamptz
    assert first["type"] == "assessment"
    assert {r["received_at"] for r in stored} == {FIXED_NOW}
    assert {r["quarantined_at"] for r in stored} == {None}
    outbox = select(
        services,
        "SELECT o.event_pk, o.patient_id, o.created_at, o.enqueued_at, o.enqueue_count, "
        "o.processed_at FROM outbox o JOIN event e ON e.id = o.event_pk "
        "WHERE e.event_id LIKE 'po-%' ORDER BY o.id",
    )
    assert outbox == [
        {
            "event_pk": r["id"],
            "patient_id": r["patient_id"],
            "created_at": FIXED_NOW,
            "enqueued_at": None,
            "enqueue_count": 0,
            "processed_at": None,
        }
        for r in stored
    ]


def test_duplicates_and_conflicts_as_before(services: Services) -> None:
    store(services, f.enrollment(patient="PD-1", event_id="pd-1"))
    again = store(services, f.enrollment(patient="PD-1", event_id="pd-1"))
    assert again == IngestResult(statuses=[("pd-1", "duplicate")], patients=[])
    changed = f.enrollment(patient="PD-1", event_id="pd-1", age=70)
    with pytest.raises(EventConflictError) as refused:
        store(services, f.enrollment(patient="PD-2", event_id="pd-2"), changed, changed)
    assert refused.value.event_ids == ["pd-1"]
    assert select(services, "SELECT event_id FROM event WHERE event_id LIKE 'pd-%'") == [
        {"event_id": "pd-1"}
    ]


def test_the_statements_do_not_grow_with_the_batch(services: Services) -> None:
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(services.engine, "before_cursor_execute", record)
    try:
        store(services, f.enrollment(patient="PS-0", event_id="ps-0"))
        one = list(sent)
        sent.clear()
        store(
            services,
            *[f.enrollment(patient=f"PS-{n}", event_id=f"ps-{n}") for n in range(1, 251)],
        )
    finally:
        event.remove(services.engine, "before_cursor_execute", record)
    assert sent == one
    assert len(one) == 2
    assert select(services, "SELECT count(*) AS n FROM outbox WHERE patient_id LIKE 'PS-%'") == [
        {"n": 251}
    ]


def test_concurrent_senders_of_the_same_events_store_them_once(services: Services) -> None:
    """On PostgreSQL the losers wait for the winner's commit, fail on the unique constraint,
    and retry: then they see duplicates."""
    bodies = [f.assessment(f.at(n), patient="PC-1", event_id=f"pc-{n}") for n in range(50)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: store(services, *bodies), range(4)))
    accepted = [s for r in results for _, s in r.statuses if s == "accepted"]
    assert len(accepted) == 50
    assert sorted(len(r.patients) for r in results) == [0, 0, 0, 1]
    counted = select(
        services,
        "SELECT (SELECT count(*) FROM event WHERE patient_id = 'PC-1') AS events, "
        "(SELECT count(*) FROM outbox WHERE patient_id = 'PC-1') AS outbox",
    )
    assert counted == [{"events": 50, "outbox": 50}]


def test_audit_rows_in_the_events_transactions_keep_one_chain(services: Services) -> None:
    """The API's 202 audit row is written last in the events' transaction (the chain's lock
    held to the commit): concurrent senders, the race retry among them, leave one chain."""

    def audited(session: Any, result: IngestResult) -> None:
        resource = f"{len(result.statuses)} events"
        services.audit.record_in(
            session.connection(), Principal("feed", "ingest"), "POST /v1/events", resource,
            202, FIXED_NOW,
        )  # fmt: skip

    def send(n: int) -> IngestResult:
        shared = f.enrollment(patient="PR-0", event_id="pr-shared")  # every sender has it
        own = f.enrollment(patient=f"PR-{n}", event_id=f"pr-{n}")
        return store_events(services.sessions, f.events(shared, own), FIXED_NOW, audited)

    before = services.audit.verify(checkpoints=False).rows
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(send, range(1, 21)))
    assert sum(s == "accepted" for r in results for _, s in r.statuses) == 21
    assert services.audit.verify(checkpoints=False) == ChainReport(before + 20, None, None)
