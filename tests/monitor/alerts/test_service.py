"""add_alerts in one statement: ids in order, a duplicate in the batch dropped (both engines)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel, col, select

from monitor.alerts.service import add_alerts
from monitor.settings import Settings
from monitor.storage.database import make_engine
from monitor.storage.models import AlertRow, AlertSequenceRow
from tests.common.databases import throwaway_postgres
from tests.conftest import FIXED_NOW, PG_URL, require_server


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Engine]:
    """The tables and the alert sequence on SQLite, or on a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        built = make_engine(Settings(database_url=f"sqlite:///{tmp_path}/alerts.db"))
        with_tables(built)
        yield built
        built.dispose()
        return
    url = make_url(PG_URL)
    require_server("PostgreSQL", url.host or "127.0.0.1", url.port or 5432)
    with throwaway_postgres(PG_URL, "bipn_add_alerts") as database:
        built = make_engine(Settings(database_url=database.render_as_string(False)))
        try:
            with_tables(built)
            yield built
        finally:
            built.dispose()


def with_tables(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add(AlertSequenceRow(name="alert", value=0))


def alert(decision_id: str, kind: str = "new", message: str = "m") -> AlertRow:
    return AlertRow(
        decision_id=decision_id,
        kind=kind,
        action="discontinue",
        patient_id="PT-1",
        severity="urgent",
        audience=json.dumps(["nurse"]),
        message=message,
        created_at=FIXED_NOW,
    )


def test_a_batch_with_a_duplicate_inserts_the_rest_in_order(engine: Engine) -> None:
    """The second (d1, new) is dropped, in the batch and against a stored one; the others
    keep the ids allocated to their places."""
    with Session(engine) as session, session.begin():
        first = add_alerts(session, [alert("d0")])
    assert [a.id for a in first] == [1]
    batch = [
        alert("d1"),
        alert("d0"),  # already stored
        alert("d1", message="again"),  # the same decision and kind as the first of the batch
        alert("d1", kind="reminder"),
        alert("d2"),
    ]
    with Session(engine) as session, session.begin():
        inserted = add_alerts(session, batch)
        assert inserted == [batch[0], batch[3], batch[4]]
        assert [a.id for a in inserted] == [2, 5, 6]
    with Session(engine) as session:
        stored = session.execute(select(AlertRow).order_by(col(AlertRow.id))).scalars().all()
        assert [(a.id, a.decision_id, a.kind, a.message) for a in stored] == [
            (1, "d0", "new", "m"),
            (2, "d1", "new", "m"),
            (5, "d1", "reminder", "m"),
            (6, "d2", "new", "m"),
        ]
