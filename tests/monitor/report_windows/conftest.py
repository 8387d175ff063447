"""A service on SQLite or on a throwaway PostgreSQL database (created and dropped here, as the
migration tests do), its events folded synchronously, and a clock the tests move."""

from __future__ import annotations

import datetime as dt
import pathlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from monitor.ingest.service import store_events
from monitor.processing.service import process_patient
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from policies import parse_event
from tests.common.databases import throwaway_postgres
from tests.common.service import RecordingDispatcher
from tests.conftest import FIXED_NOW, PG_URL, require_server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'monitor.db'}"
        return
    url = make_url(PG_URL)
    require_server("PostgreSQL", url.host or "127.0.0.1", url.port or 5432)
    with throwaway_postgres(PG_URL, "bipn_rw") as database:
        yield database.render_as_string(hide_password=False)


@pytest.fixture
def services(database_url: str, tmp_path: pathlib.Path) -> Iterator[Services]:
    built = build_services(
        Settings(
            policy="default@1",
            database_url=database_url,
            data_dir=tmp_path,
            fixed_now=FIXED_NOW,
            webhook_allow_networks=["127.0.0.0/8"],
        )
    )
    upgrade(built.engine)
    built.dispatcher = RecordingDispatcher()
    yield built
    built.close()


def move_clock(services: Services, now: dt.datetime) -> None:
    """The service clock (`fixed_now`) at `now`: every job reads it at each call."""
    services.settings = services.settings.model_copy(update={"fixed_now": now})


def fold(services: Services, *bodies: dict[str, Any]) -> None:
    """Store the events at the service clock's now and fold each patient at once."""
    now = services.settings.now()
    store_events(services.sessions, [parse_event(b) for b in bodies], now)
    for patient in dict.fromkeys(b["patient_id"] for b in bodies):
        process_patient(services.sessions, services.pack, patient, now)


def patient_report(when: dt.datetime, patient: str, **fields: Any) -> dict[str, Any]:
    """A patient report as the intake writes it (h16-common.md)."""
    return {
        "event_id": f"pr-{secrets.token_hex(16)}",
        "type": "assessment",
        "patient_id": patient,
        "occurred_at": when.isoformat(),
        "source": "patient",
        "grades": {"sensory": 0},
        "findings": {
            "pro_ctcae": {"numbness_tingling_severity": 0},
            "new_weakness": False,
        },
    } | fields
