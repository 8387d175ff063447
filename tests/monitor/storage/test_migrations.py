"""The Alembic migrations: head matches the models, and 0002 carries data already on file
(alert ids continue, reminders work for courses stored before it), as 0007 does webhook
secrets, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel
from standardwebhooks.webhooks import Webhook

from monitor.storage.migrate import alembic_config, upgrade
from monitor.storage.models import AlertRow, DecisionRow, PatientRow
from tests.common.databases import throwaway_postgres
from tests.conftest import PG_URL, require_server

DUE = "2026-10-21T12:00:00Z"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Engine]:
    if request.param == "sqlite":
        built = create_engine(f"sqlite:///{tmp_path}/migrations.db", poolclass=NullPool)
        yield built
        built.dispose()
        return
    url = make_url(PG_URL)
    require_server("PostgreSQL", url.host or "127.0.0.1", url.port or 5432)
    with throwaway_postgres(PG_URL, "bipn_mig") as database:
        built = create_engine(database, poolclass=NullPool)
        try:
            yield built
        finally:
            built.dispose()


def _upgrade_to(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_head_matches_the_models(engine: Engine) -> None:
    upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": True}
        )
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


def test_0002_carries_the_data_on_file(engine: Engine) -> None:
    _upgrade_to(engine, "0001")
    at = "2026-10-01 12:00:00"
    decision = {"decision_id": "d-1", "action": "schedule_reassessment", "due_at": DUE}
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO decision (decision_id, patient_id, at, action, severity, rule, "
                "policy, body, created_at) VALUES ('d-1', 'PT', :at, 'schedule_reassessment', "
                "'info', 'D5', 'default@1', :body, :at)"
            ),
            {"at": at, "body": json.dumps(decision)},
        )
        connection.execute(
            text(
                "INSERT INTO patient (patient_id, status, state, processed_event_pk, version) "
                "VALUES ('PT', 'active', :state, 1, 1)"
            ),
            {"state": json.dumps({"status": "active", "next_reassessment_due": DUE})},
        )
        for alert_id in (1, 2):
            connection.execute(
                text(
                    "INSERT INTO alert (id, decision_id, kind, patient_id, severity, audience, "
                    "message, created_at) VALUES (:id, 'd-1', :kind, 'PT', 'info', '[\"nurse\"]', "
                    "'m', :at)"
                ),
                {"id": alert_id, "kind": "new" if alert_id == 1 else "correction", "at": at},
            )
    upgrade(engine)
    due = dt.datetime(2026, 10, 21, 12, tzinfo=dt.UTC)
    with engine.connect() as connection:
        sequence = connection.execute(text("SELECT name, value FROM alert_sequence")).all()
        actions = connection.execute(text("SELECT DISTINCT action FROM alert")).scalars().all()
    assert [tuple(row) for row in sequence] == [("alert", 2)]  # new alerts continue at 3
    assert actions == ["schedule_reassessment"]
    with Session(engine) as session:
        stored = session.query(DecisionRow).one()
        patient = session.get(PatientRow, "PT")
        assert stored.due_at == due
        assert patient is not None
        assert patient.reassessment_due_at == due
        assert session.query(AlertRow).count() == 2


def test_0007_moves_each_endpoint_secret_to_its_whsec_form_and_back(engine: Engine) -> None:
    """The key stays the same bytes: a receiver holding the old secret keeps its key (in the
    `whsec_` form, for the Standard Webhooks library); downgrading gives the old text back."""
    _upgrade_to(engine, "0006")
    old = "s3cret-of-an-old-endpoint"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO webhook_endpoint (id, name, url, secret, severities, audiences, "
                "units, kinds, created_at) VALUES (1, 'pager', 'https://h.example/x', :secret, "
                "'[]', '[]', '[]', '[]', '2026-10-01 12:00:00.000000')"
            ),
            {"secret": old},
        )
    upgrade(engine)
    with engine.connect() as connection:
        moved = connection.execute(
            text("SELECT endpoint_id, secret, created_at, retired_at FROM webhook_secret")
        ).all()
        columns = connection.execute(text("SELECT * FROM webhook_endpoint")).keys()
    [(endpoint_id, secret, created_at, retired_at)] = moved
    assert (endpoint_id, retired_at) == (1, None)
    assert str(created_at).startswith("2026-10-01 12:00:00")
    assert secret == "whsec_" + base64.b64encode(old.encode()).decode()
    digest = hmac.new(old.encode(), b"1.1790000000.{}", hashlib.sha256).digest()
    assert Webhook(secret).sign("1", dt.datetime.fromtimestamp(1790000000, dt.UTC), "{}") == (
        "v1," + base64.b64encode(digest).decode()
    )
    assert "secret" not in list(columns)

    with engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")
    with engine.connect() as connection:
        back = connection.execute(text("SELECT id, secret FROM webhook_endpoint")).all()
    assert [tuple(row) for row in back] == [(1, old)]


def test_0009_keeps_endpoints_on_alerts_and_drops_report_due_deliveries_going_back(
    engine: Engine,
) -> None:
    """Endpoints registered before the event-type filter get alerts only; downgrading removes
    the report-due deliveries (and their attempts) and keeps the alerts' deliveries."""
    at = "2026-10-01 12:00:00.000000"
    _upgrade_to(engine, "0008")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO webhook_endpoint (id, name, url, severities, audiences, units, "
                "kinds, created_at) VALUES (1, 'pager', 'https://h.example/x', '[]', '[]', "
                "'[]', '[]', :at)"
            ),
            {"at": at},
        )
        connection.execute(
            text(
                "INSERT INTO alert (id, decision_id, kind, action, patient_id, severity, "
                "audience, message, created_at) VALUES (1, 'd-1', 'new', 'discontinue', 'P1', "
                "'urgent', '[\"nurse\"]', 'm', :at)"
            ),
            {"at": at},
        )
        connection.execute(
            text(
                "INSERT INTO webhook_delivery (id, alert_id, endpoint_id, status, attempts, "
                "next_attempt_at, created_at) VALUES (1, 1, 1, 'pending', 0, :at, :at)"
            ),
            {"at": at},
        )
    upgrade(engine)
    with engine.begin() as connection:
        types = connection.execute(text("SELECT types FROM webhook_endpoint")).scalar_one()
        connection.execute(
            text(
                "INSERT INTO report_window (id, patient_id, enrolled_at, window_index, "
                "window_start, window_end, created_at) VALUES (1, 'P1', :at, 0, :at, :at, :at)"
            ),
            {"at": at},
        )
        connection.execute(
            text(
                "INSERT INTO webhook_delivery (id, report_window_id, endpoint_id, status, "
                "attempts, next_attempt_at, created_at) VALUES (2, 1, 1, 'pending', 1, :at, :at)"
            ),
            {"at": at},
        )
        connection.execute(
            text(
                "INSERT INTO webhook_attempt (delivery_id, attempt, at, outcome, duration_ms) "
                "VALUES (2, 1, :at, 'retry', 1.0)"
            ),
            {"at": at},
        )
    assert json.loads(types) == ["alert"]

    with engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
    with engine.connect() as connection:
        kept = connection.execute(text("SELECT id, alert_id FROM webhook_delivery")).all()
        attempts = connection.execute(text("SELECT count(*) FROM webhook_attempt")).scalar_one()
    assert [tuple(row) for row in kept] == [(1, 1)]
    assert attempts == 0
