"""The audit log (issue 3, item 5): a row per write and per patient read, and per refusal;
who, what, when, no clinical payload; each row chained to the previous by a hash, so editing or
deleting a row shows in `verify_chain`."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
from sqlalchemy import text

from monitor.auth import GENESIS_HASH, ChainReport, Principal, record, verify_chain
from monitor.inprocess import InProcessWorker
from monitor.services import Services
from tests import factories as f
from tests.conftest import FIXED_NOW
from tests.monitor.service_support import Api, rows

SECRET_NOTE = "XYZZY-clinical-note"
ASSESSOR = "Dr Zebediah Quill"


def audit_rows(services: Services) -> list[dict[str, Any]]:
    return rows(
        services, "SELECT id, actor, role, action, resource, status_code FROM audit_log ORDER BY id"
    )


def row(actor: str, action: str, resource: str, status: int) -> dict[str, Any]:
    role = actor.removeprefix("test-")
    return {
        "actor": actor,
        "role": role,
        "action": action,
        "resource": resource,
        "status_code": status,
    }


def without_ids(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "id"} for r in found]


def test_writes_patient_reads_and_refusals_are_recorded(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    enrollment = f.enrollment(f.at(0), patient="P1", event_id="au-e0", unit="u7")
    assessment = f.assessment(
        f.at(21),
        patient="P1",
        event_id="au-a21",
        sensory=3,
        pain=2,
        assessor=ASSESSOR,
        findings={"site_note": SECRET_NOTE, "ncs_pattern": "axonal"},
    )
    assert api.post_events({"events": [enrollment, assessment]}).status_code == 202
    assert api.post_events(enrollment).status_code == 202  # duplicate: still a write request
    conflict = dict(assessment, grades={"sensory": 1})
    assert api.post_events(conflict).status_code == 409
    invalid = dict(assessment, event_id="au-bad", grades={"sensory": 9})
    assert api.post_events(invalid).status_code == 422
    assert worker.wait_idle()
    assert api.get("/v1/patients/P1").status_code == 200
    assert api.get("/v1/patients/P1/decisions", role="infusion").status_code == 200
    assert api.get("/v1/patients/P1/clearance", role="infusion").status_code == 200
    assert api.get("/v1/patients/NOBODY", role="nurse").status_code == 404
    assert api.get("/v1/patients/P1/clearance", role="nurse").status_code == 403
    assert api.post_events(enrollment, role="auditor").status_code == 403
    assert api.get("/v1/admin/dead-letters", role="admin").status_code == 200  # not a patient read
    assert api.get("/v1/patients/P1", role=None).status_code == 401  # nobody to name: no row
    assert api.get("/healthz", role=None).status_code == 200

    assert without_ids(audit_rows(services)) == [
        row("test-ingest", "POST /v1/events", "2 events", 202),
        row("test-ingest", "POST /v1/events", "1 events", 202),
        row("test-ingest", "POST /v1/events", "events", 409),
        row("test-ingest", "POST /v1/events", "events", 422),
        row("test-nurse", "GET /v1/patients/{patient_id}", "patient:P1", 200),
        row("test-infusion", "GET /v1/patients/{patient_id}/decisions", "patient:P1", 200),
        row("test-infusion", "GET /v1/patients/{patient_id}/clearance", "patient:P1", 200),
        row("test-nurse", "GET /v1/patients/{patient_id}", "patient:NOBODY", 404),
        row("test-nurse", "GET /v1/patients/{patient_id}/clearance", "denied", 403),
        row("test-auditor", "POST /v1/events", "denied", 403),
    ]
    times = rows(services, "SELECT DISTINCT at FROM audit_log")
    assert times == [{"at": "2026-10-01 12:00:00.000000"}]

    # No clinical payload: nothing of the events' bodies is in the log.
    dump = str(rows(services, "SELECT * FROM audit_log"))
    for fragment in (
        SECRET_NOTE,
        ASSESSOR,
        "sensory",
        "grades",
        "axonal",
        "bortezomib",
        "au-a21",
        "u7",
        "1.3",
        "reduce",
    ):
        assert fragment not in dump, fragment


def test_an_admin_retry_is_recorded(api: Api, services: Services) -> None:
    from monitor.jobs import dead_letter

    dead_id = dead_letter(services, "P9", RuntimeError("x"), 1)
    response = api.client.post(
        f"/v1/admin/dead-letters/{dead_id}/retry", headers=api.headers("admin")
    )
    assert response.status_code == 202
    assert without_ids(audit_rows(services)) == [
        row(
            "test-admin",
            "POST /v1/admin/dead-letters/{dead_letter_id}/retry",
            f"dead_letter:{dead_id}",
            202,
        )
    ]


def test_the_chain_verifies(api: Api, services: Services) -> None:
    assert verify_chain(services.sessions) == ChainReport(0, None, None)
    for n in range(5):
        api.post_events(f.enrollment(f.at(n), patient=f"P{n}", event_id=f"c-{n}"))
    assert verify_chain(services.sessions) == ChainReport(5, None, None)
    chain = rows(services, "SELECT id, prev_hash, row_hash FROM audit_log ORDER BY id")
    assert chain[0]["prev_hash"] == GENESIS_HASH
    for previous, current in itertools.pairwise(chain):
        assert current["prev_hash"] == previous["row_hash"]
    assert len({r["row_hash"] for r in chain}) == 5


@pytest.fixture
def five_rows(services: Services) -> list[int]:
    for n in range(5):
        record(
            services.sessions,
            Principal(f"user-{n}", "nurse"),
            "GET /x",
            f"patient:P{n}",
            200,
            FIXED_NOW,
        )
    ids = [r["id"] for r in rows(services, "SELECT id FROM audit_log ORDER BY id")]
    assert verify_chain(services.sessions) == ChainReport(5, None, None)
    return ids


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("resource", "patient:SOMEONE-ELSE"),
        ("actor", "innocent"),
        ("role", "admin"),
        ("action", "GET /y"),
        ("status_code", 403),
        ("at", "2026-10-02 12:00:00.000000"),
    ],
)
def test_editing_a_row_breaks_the_chain_at_that_row(
    services: Services, five_rows: list[int], column: str, value: Any
) -> None:
    target = five_rows[2]
    with services.engine.begin() as connection:
        connection.execute(
            text(f"UPDATE audit_log SET {column} = :v WHERE id = :id"), {"v": value, "id": target}
        )
    assert verify_chain(services.sessions) == ChainReport(
        3, target, "row_hash does not match the row's content"
    )


def test_rehashing_an_edited_row_breaks_the_chain_at_the_next_row(
    services: Services, five_rows: list[int]
) -> None:
    """An editor who also recomputes the edited row's hash is caught by its successor."""
    target = five_rows[1]
    with services.engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_log SET row_hash = :h WHERE id = :id"), {"h": "f" * 64, "id": target}
        )
    report = verify_chain(services.sessions)
    assert report == ChainReport(2, target, "row_hash does not match the row's content")


def test_deleting_a_middle_row_breaks_the_chain(services: Services, five_rows: list[int]) -> None:
    with services.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": five_rows[2]})
    assert verify_chain(services.sessions) == ChainReport(
        3, five_rows[3], "prev_hash does not match the previous row"
    )


def test_deleting_the_first_row_breaks_the_chain(services: Services, five_rows: list[int]) -> None:
    with services.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": five_rows[0]})
    assert verify_chain(services.sessions) == ChainReport(
        1, five_rows[1], "prev_hash does not match the previous row"
    )


def test_concurrent_appends_keep_one_chain(services: Services) -> None:
    def append(worker: int) -> None:
        for n in range(20):
            record(
                services.sessions,
                Principal(f"w{worker}", "nurse"),
                "GET /v1/patients/{patient_id}",
                f"patient:P{n}",
                200,
                FIXED_NOW,
            )

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert verify_chain(services.sessions) == ChainReport(80, None, None)
