"""A quieter feed (issue 14, item 4): informational decisions (a reassessment scheduled, the
watch started or closed) raise no feed alert by default; what needs someone to act does, and
the reminder before a due reassessment and the overdue alert still come."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Iterator

import pytest

from monitor.alerts.scheduled import send_reminders
from monitor.ingest.service import store_events
from monitor.processing.jobs import run_process_patient
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from tests.common import factories as f
from tests.common.factories import at
from tests.common.service import rows

BODIES = [
    f.enrollment(at(0), "Q1", "q-e", baseline={"sensory": 0}),
    f.assessment(at(21), "Q1", "q-a21", sensory=3),  # discontinue, the watch, a reassessment
]


def _services(directory: pathlib.Path, now: dt.datetime, **overrides: object) -> Services:
    settings = Settings(
        policy="default@2",
        database_url=f"sqlite:///{directory / 'monitor.db'}",
        data_dir=directory,
        fixed_now=now,
        **overrides,  # type: ignore[arg-type]
    )
    services = build_services(settings)
    upgrade(services.engine)
    return services


@pytest.fixture
def quiet(tmp_path: pathlib.Path) -> Iterator[Services]:
    services = _services(tmp_path, at(22))
    store_events(services.sessions, f.events(*BODIES), at(22))
    run_process_patient(services, "Q1")
    yield services
    services.close()


def _alerted(services: Services) -> list[tuple[str, str]]:
    found = rows(services, "SELECT kind, action FROM alert ORDER BY id")
    return [(r["kind"], r["action"]) for r in found]


def test_informational_decisions_stay_off_the_feed_by_default(quiet: Services) -> None:
    decided = {r["action"] for r in rows(quiet, "SELECT action FROM decision")}
    assert {"schedule_reassessment", "coasting_watch_started", "discontinue"} <= decided
    assert _alerted(quiet) == [("new", "discontinue")]


def test_the_reminder_before_a_due_reassessment_still_comes(quiet: Services) -> None:
    # the watch's reassessment is due 14 days after the discontinuing grading (day 35)
    quiet.settings = quiet.settings.model_copy(update={"fixed_now": at(34, hours=12)})
    assert send_reminders(quiet) == 1
    assert _alerted(quiet)[-1] == ("reminder", "schedule_reassessment")


def test_the_overdue_alert_still_comes(quiet: Services) -> None:
    quiet.settings = quiet.settings.model_copy(update={"fixed_now": at(40)})
    run_process_patient(quiet, "Q1")  # the timer: due day 35 + 2 days of grace
    assert ("new", "reassessment_overdue") in _alerted(quiet)


def test_the_setting_puts_them_back_on_the_feed(tmp_path: pathlib.Path) -> None:
    services = _services(tmp_path, at(22), alert_info_decisions=True)
    try:
        store_events(services.sessions, f.events(*BODIES), at(22))
        run_process_patient(services, "Q1")
        alerted = {action for _, action in _alerted(services)}
    finally:
        services.close()
    assert {"schedule_reassessment", "coasting_watch_started", "discontinue"} <= alerted
