"""Issue 17: audit rows written with core statements (the advisory lock, the next id and the last
hash in one statement, one INSERT) on PostgreSQL: one chain under concurrent appenders, and it
verifies across rows written before (unkeyed scheme 1, and keyed through the ORM as until issue
17, which an API process not yet upgraded still writes) and after."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from monitor.auth.audit import GENESIS_HASH, KEYED_SCHEME, AuditLog, ChainReport
from monitor.auth.tokens import Principal
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from monitor.storage.models import AuditLogRow
from tests.conftest import FIXED_NOW


@pytest.fixture(scope="module")
def services(fresh_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    settings = Settings(
        database_url=fresh_database,
        data_dir=tmp_path_factory.mktemp("audit-pg"),
        audit_key="audit-postgres-test-key-0123456789abcdef",
    )
    built = build_services(settings)
    upgrade(built.engine)
    yield built
    built.close()


def _append_as_before(audit: AuditLog, services: Services, actor: str, n: int) -> None:
    """A row written as `_append` did until issue 17: lock, last hash, ORM insert, flush for
    the id, the hash set on the row (an UPDATE at the commit)."""
    with services.sessions.begin() as session:
        session.execute(text("SELECT pg_advisory_xact_lock(7301)"))
        last = session.execute(
            select(col(AuditLogRow.row_hash)).order_by(col(AuditLogRow.id).desc()).limit(1)
        ).scalar_one_or_none()
        row = AuditLogRow(
            at=FIXED_NOW,
            actor=actor,
            role="nurse",
            action="GET /x",
            resource=f"p:{n}",
            status_code=200,
            prev_hash=last or GENESIS_HASH,
            row_hash="",
            scheme=KEYED_SCHEME,
        )
        session.add(row)
        session.flush()
        row.row_hash = audit._row_hash(row)


def test_old_and_new_rows_make_one_chain(services: Services) -> None:
    previous = GENESIS_HASH
    with services.engine.begin() as connection:  # scheme 1 rows, from before the chain's key
        for n in range(2):
            fields = [previous, "2026-09-01T12:00:00+00:00", "old", "nurse", "GET /x", f"p:{n}"]
            row_hash = hashlib.sha256("\x1f".join([*fields, "200"]).encode()).hexdigest()
            connection.execute(
                text(
                    "INSERT INTO audit_log (at, actor, role, action, resource, status_code, "
                    "prev_hash, row_hash, scheme) VALUES ('2026-09-01 12:00:00+00', 'old', "
                    "'nurse', 'GET /x', :r, 200, :p, :h, 1)"
                ),
                {"r": f"p:{n}", "p": previous, "h": row_hash},
            )
            previous = row_hash
    audit = services.audit
    for n in range(2):
        _append_as_before(audit, services, "orm", n)
    odd = dt.datetime(2026, 10, 1, 14, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    audit.record(Principal("new", "nurse", units=frozenset({"onc-a"})), "GET /x", "p:2", 200, odd)
    audit.record_refusal("GET /v1/patients/{patient_id}", 401, FIXED_NOW)
    audit.record_command("policy upgrade", "x" * 300, FIXED_NOW)  # cut to the column's 256
    _append_as_before(audit, services, "orm-after", 9)  # the sequence moved past the new ids
    audit.record(Principal("new", "nurse"), "GET /x", "p:3", 200, FIXED_NOW)
    assert audit.verify(checkpoints=False) == ChainReport(9, None, None)
    with services.engine.connect() as connection:
        stored = connection.execute(
            text("SELECT id, actor, prev_hash, row_hash FROM audit_log ORDER BY id")
        ).all()
    assert [r.actor for r in stored] == [
        "old",
        "old",
        "orm",
        "orm",
        "new",
        "anonymous",
        "command-line",
        "orm-after",
        "new",
    ]
    assert all(a.row_hash == b.prev_hash for a, b in itertools.pairwise(stored))
    assert audit.checkpoint(FIXED_NOW) is not None
    assert audit.verify().checkpoints >= 1


def test_concurrent_appenders_keep_one_chain(services: Services) -> None:
    before = services.audit.verify(checkpoints=False).rows
    # two AuditLog objects on two engines: as two API processes would append
    other = build_services(services.settings)

    def append(audit: AuditLog, worker: int) -> None:
        for n in range(25):
            audit.record(Principal(f"w{worker}", "nurse"), "GET /x", f"p:{n}", 200, FIXED_NOW)

    try:
        with ThreadPoolExecutor(4) as pool:
            appenders = [services, services, other, other]
            futures = [pool.submit(append, s.audit, w) for w, s in enumerate(appenders)]
            for future in futures:
                future.result()  # an appender's error fails the test
    finally:
        other.close()
    assert services.audit.verify(checkpoints=False) == ChainReport(before + 100, None, None)
