"""The audit log (issue 3, item 5): a row per write and per patient read, and per refusal;
who, what, when, no clinical payload; each row chained to the previous by a hash, so editing or
deleting a row shows in `AuditLog.verify`."""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from monitor.auth.audit import GENESIS_HASH, ChainReport
from monitor.auth.tokens import Principal
from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services
from tests.common import factories as f
from tests.common.service import Api, rows
from tests.conftest import FIXED_NOW

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
    assert api.get("/v1/admin/dead-letters", role="admin").status_code == 200  # an admin read
    assert api.get("/v1/patients/P1", role=None).status_code == 401  # refused: who is unknown
    assert api.get("/healthz", role=None).status_code == 200  # public: no row

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
        row("test-admin", "GET /v1/admin/dead-letters", "dead_letters", 200),
        {
            "actor": "anonymous",
            "role": "none",
            "action": "GET /v1/patients/{patient_id}",
            "resource": "-",
            "status_code": 401,
        },
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
    from monitor.processing.jobs import dead_letter

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
    assert services.audit.verify() == ChainReport(0, None, None)
    for n in range(5):
        api.post_events(f.enrollment(f.at(n), patient=f"P{n}", event_id=f"c-{n}"))
    assert services.audit.verify() == ChainReport(5, None, None)
    chain = rows(services, "SELECT id, prev_hash, row_hash FROM audit_log ORDER BY id")
    assert chain[0]["prev_hash"] == GENESIS_HASH
    for previous, current in itertools.pairwise(chain):
        assert current["prev_hash"] == previous["row_hash"]
    assert len({r["row_hash"] for r in chain}) == 5


@pytest.fixture
def five_rows(services: Services) -> list[int]:
    for n in range(5):
        services.audit.record(
            Principal(f"user-{n}", "nurse"),
            "GET /x",
            f"patient:P{n}",
            200,
            FIXED_NOW,
        )
    ids = [r["id"] for r in rows(services, "SELECT id FROM audit_log ORDER BY id")]
    assert services.audit.verify() == ChainReport(5, None, None)
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
    assert services.audit.verify() == ChainReport(
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
    report = services.audit.verify()
    assert report == ChainReport(2, target, "row_hash does not match the row's content")


def test_deleting_a_middle_row_breaks_the_chain(services: Services, five_rows: list[int]) -> None:
    with services.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": five_rows[2]})
    assert services.audit.verify() == ChainReport(
        3, five_rows[3], "prev_hash does not match the previous row"
    )


def test_deleting_the_first_row_breaks_the_chain(services: Services, five_rows: list[int]) -> None:
    with services.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": five_rows[0]})
    assert services.audit.verify() == ChainReport(
        1, five_rows[1], "prev_hash does not match the previous row"
    )


def test_concurrent_appends_keep_one_chain(services: Services) -> None:
    def append(worker: int) -> None:
        for n in range(20):
            services.audit.record(
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
    assert services.audit.verify() == ChainReport(80, None, None)


# --- the keyed chain and its checkpoints (issue 11, item 7) -----------------------------------


def _rehash_plain(services: Services, target: int) -> None:
    """An editor without the key: change a row, then recompute every hash from it on, the way
    an unkeyed chain would let them (SHA-256 over the content, as scheme 1 did)."""
    import hashlib

    with services.engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_log SET resource = 'patient:NOBODY' WHERE id = :id"), {"id": target}
        )
        chain = connection.execute(text("SELECT * FROM audit_log ORDER BY id")).mappings().all()
        previous = chain[0]["prev_hash"]
        for stored in chain:
            if stored["id"] >= target:
                at = str(stored["at"]).replace(" ", "T") + "+00:00"
                fields = [previous, at, stored["actor"], stored["role"], stored["action"]]
                fields += [stored["resource"], str(stored["status_code"])]
                fresh = hashlib.sha256("\x1f".join(fields).encode()).hexdigest()
                connection.execute(
                    text("UPDATE audit_log SET prev_hash = :p, row_hash = :h WHERE id = :id"),
                    {"p": previous, "h": fresh, "id": stored["id"]},
                )
                previous = fresh
            else:
                previous = stored["row_hash"]


def test_an_edit_with_recomputed_hashes_is_caught_without_the_key(
    services: Services, five_rows: list[int]
) -> None:
    """The issue's attack: edit a row and recompute the later hashes. Without the key the
    recomputed hash cannot be the HMAC: caught at the edited row."""
    _rehash_plain(services, five_rows[2])
    report = services.audit.verify()
    assert (report.broken_at, report.reason) == (
        five_rows[2],
        "row_hash does not match the row's content",
    )


def test_a_row_moved_to_another_id_is_caught(services: Services, five_rows: list[int]) -> None:
    """The row id is inside the hash: the same content under another id does not verify."""
    with services.engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_log SET id = :new WHERE id = :old"),
            {"new": five_rows[-1] + 10, "old": five_rows[-1]},
        )
    assert services.audit.verify().broken_at == five_rows[-1] + 10


def test_another_key_verifies_nothing(services: Services, five_rows: list[int]) -> None:
    from monitor.auth.audit import AuditLog

    other = AuditLog(
        services.sessions,
        services.settings.model_copy(update={"audit_key": SecretStr("k" * 40)}),
    )
    assert other.verify().broken_at == five_rows[0]


def test_rows_cut_off_the_end_show_against_a_checkpoint(
    services: Services, five_rows: list[int]
) -> None:
    checkpoint = services.audit.checkpoint(FIXED_NOW)
    assert checkpoint is not None
    assert checkpoint.head_id == five_rows[-1]
    assert services.audit.checkpoint(FIXED_NOW) is None  # nothing new: no second line
    intact = services.audit.verify()
    assert (intact.rows, intact.broken_at, intact.checkpoints) == (5, None, 1)
    with services.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE id >= :id"), {"id": five_rows[3]})
    cut = services.audit.verify()
    assert cut.broken_at == five_rows[-1]
    assert cut.reason is not None
    assert "is gone" in cut.reason
    assert "rows were cut off its end" in cut.reason


def test_a_forged_checkpoint_is_refused(services: Services, five_rows: list[int]) -> None:
    services.audit.checkpoint(FIXED_NOW)
    path = services.audit.checkpoint_path
    forged = json.loads(path.read_text()) | {"head_id": five_rows[1]}
    path.write_text(json.dumps(forged) + "\n")
    report = services.audit.verify()
    assert report.reason is not None
    assert "is not signed with this key" in report.reason


def test_checkpoints_are_logged_and_read_back_from_the_log(
    services: Services, five_rows: list[int], caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    """The copy kept outside the database host: the log line, which `audit verify
    --checkpoints LOG` reads as it reads the checkpoint file."""
    caplog.set_level("INFO", logger="monitor.audit")
    services.audit.checkpoint(FIXED_NOW)
    [record] = [r for r in caplog.records if r.getMessage() == "audit checkpoint"]
    log_file = tmp_path / "service.log"
    line = {k: record.__dict__[k] for k in ("head_id", "head_hash", "signature", "checkpoint_at")}
    log_file.write_text(
        json.dumps({"message": "request", "status": 200})
        + "\n"
        + json.dumps({"message": "audit checkpoint", **line})
        + "\n"
    )
    services.audit.checkpoint_path = log_file
    assert services.audit.verify().checkpoints == 1


def test_the_scheduler_writes_checkpoints_at_its_interval(
    services: Services, five_rows: list[int]
) -> None:
    from monitor.auth.scheduled import checkpoint_audit

    assert checkpoint_audit(services) == 1
    services.audit.record(Principal("later", "nurse"), "GET /x", "p:6", 200, FIXED_NOW)
    assert checkpoint_audit(services) == 0  # within the interval: waits
    services.settings = services.settings.model_copy(update={"audit_checkpoint_interval_s": 1e-9})
    assert checkpoint_audit(services) == 1
    assert services.audit.verify().checkpoints == 2


def test_rows_written_before_the_chain_was_keyed_still_verify(services: Services) -> None:
    """Scheme 1 rows (plain SHA-256, no id) are verified as they were written; keyed rows
    follow them; an unkeyed row after keyed ones is a forgery."""
    import hashlib

    previous = GENESIS_HASH
    with services.engine.begin() as connection:
        for n in range(2):
            at = "2026-09-01T12:00:00+00:00"
            fields = [previous, at, "old", "nurse", "GET /x", f"p:{n}", "200"]
            row_hash = hashlib.sha256("\x1f".join(fields).encode()).hexdigest()
            connection.execute(
                text(
                    "INSERT INTO audit_log (at, actor, role, action, resource, status_code, "
                    "prev_hash, row_hash, scheme) VALUES ('2026-09-01 12:00:00.000000', 'old', "
                    "'nurse', 'GET /x', :r, 200, :p, :h, 1)"
                ),
                {"r": f"p:{n}", "p": previous, "h": row_hash},
            )
            previous = row_hash
    services.audit.record(Principal("new", "nurse"), "GET /x", "p:2", 200, FIXED_NOW)
    services.audit.record(Principal("newer", "nurse"), "GET /x", "p:3", 200, FIXED_NOW)
    assert services.audit.verify() == ChainReport(4, None, None)
    with services.engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET scheme = 1 WHERE actor = 'newer'"))
    assert services.audit.verify().reason == "an unkeyed row after keyed rows"


def test_the_embedded_mode_keeps_a_generated_key_and_production_requires_one(
    services: Services, tmp_path: Any
) -> None:
    import os
    import stat

    from monitor.auth.audit import AuditKeyError, resolve_key

    key = resolve_key(services.settings)
    path = services.settings.data_dir / "audit.key"
    assert path.read_bytes().strip() == key
    assert len(key) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert resolve_key(services.settings) == key  # kept, not generated again
    production = services.settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with pytest.raises(AuditKeyError, match="MONITOR_AUDIT_KEY is required in production"):
        resolve_key(production)
    given = production.model_copy(update={"audit_key": SecretStr("x" * 32)})
    assert resolve_key(given) == b"x" * 32
