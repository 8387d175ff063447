"""The report windows' scheduler job: windows opened per the definition (on treatment, held,
in the coasting watch; not after `course_end` nor once the watch closed), marked reported by
the first patient report in them, idempotent, and once each when two runs race. On SQLite
and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from monitor.report_windows.scheduled import open_report_windows
from monitor.scheduler.lease import SchedulerLease
from monitor.scheduler.runner import run_jobs
from monitor.services import Services
from monitor.storage.models import WebhookEndpointRow, WebhookSecretRow
from monitor.webhooks.signing import new_secret
from tests.common import factories as f
from tests.common.service import RecordingDispatcher, rows
from tests.conftest import FIXED_NOW
from tests.monitor.report_windows.conftest import fold, move_clock, patient_report

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


def windows(services: Services, patient: str | None = None) -> list[dict[str, Any]]:
    found = rows(
        services,
        "SELECT patient_id, window_index, reported_at, notified_at "
        "FROM report_window ORDER BY patient_id, window_index",
    )
    return [w for w in found if patient is None or w["patient_id"] == patient]


def indices(services: Services, patient: str) -> list[int]:
    return [w["window_index"] for w in windows(services, patient)]


def courses(services: Services) -> None:
    fold(
        services,
        f.enrollment(FIXED_NOW - 10 * DAY, "ON", "on-e", unit="u1"),
        f.enrollment(FIXED_NOW - 3 * DAY, "HELD", "held-e", unit="u1"),
        f.treatment_change(FIXED_NOW - 2 * DAY, "held", "HELD", "held-h", reason="infection"),
        # discontinued at grade 3 ten days ago: the coasting watch runs
        f.enrollment(FIXED_NOW - 20 * DAY, "WATCH", "watch-e", unit="u1"),
        f.assessment(FIXED_NOW - 10 * DAY, "WATCH", "watch-a", sensory=3),
        f.enrollment(FIXED_NOW - 20 * DAY, "ENDED", "ended-e", unit="u1"),
        f.course_end(FIXED_NOW - DAY, patient="ENDED", event_id="ended-x"),
        # stopped 150 days ago; the watch closed at a grading after its 90-day window
        f.enrollment(FIXED_NOW - 200 * DAY, "CLOSED", "closed-e", unit="u2"),
        f.treatment_change(
            FIXED_NOW - 150 * DAY, "discontinued", "CLOSED", "closed-d", reason="relapse"
        ),
        f.assessment(FIXED_NOW - 30 * DAY, "CLOSED", "closed-a", sensory=0),
    )


def test_windows_open_on_treatment_held_and_in_the_watch(services: Services) -> None:
    courses(services)
    states = {r["patient_id"]: r["status"] for r in rows(services, "SELECT * FROM patient")}
    assert states == {
        "ON": "active",
        "HELD": "held",
        "WATCH": "discontinued",
        "ENDED": "ended",
        "CLOSED": "discontinued",
    }
    assert open_report_windows(services) == 2 + 1 + 3
    # every window so far of each course asked: ON is in its second week, WATCH its third
    assert indices(services, "ON") == [0, 1]
    assert indices(services, "HELD") == [0]
    assert indices(services, "WATCH") == [0, 1, 2]
    assert indices(services, "ENDED") == []  # course_end: no window opens
    assert indices(services, "CLOSED") == []  # the watch closed
    opened = {
        r["patient_id"]: r
        for r in rows(
            services,
            "SELECT patient_id, unit, enrolled_at, window_start, window_end FROM report_window "
            "WHERE window_index = 1",
        )
    }
    on = opened["ON"]
    assert on["unit"] == "u1"
    assert str(on["window_start"]).startswith("2026-09-28 12:00:00")  # enrolled + 7 days
    assert str(on["window_end"]).startswith("2026-10-05 12:00:00")


def test_only_the_current_unreported_window_is_notified(services: Services) -> None:
    courses(services)
    open_report_windows(services)
    notified = [
        (w["patient_id"], w["window_index"])
        for w in windows(services)
        if w["notified_at"] is not None
    ]
    # earlier windows opened late are counted as missed, not reminded now
    assert notified == [("HELD", 0), ("ON", 1), ("WATCH", 2)]


def test_the_next_week_opens_the_next_window_and_ended_courses_open_none(
    services: Services,
) -> None:
    courses(services)
    open_report_windows(services)
    move_clock(services, FIXED_NOW + 5 * DAY)
    fold(services, f.course_end(FIXED_NOW + 5 * DAY, patient="HELD", event_id="held-x"))
    assert open_report_windows(services) == 2  # ON's window 2, WATCH's window 3
    assert indices(services, "ON") == [0, 1, 2]
    assert indices(services, "WATCH") == [0, 1, 2, 3]
    assert indices(services, "HELD") == [0]  # its course ended: window 1 never opens
    move_clock(services, FIXED_NOW + 30 * DAY)
    open_report_windows(services)
    assert indices(services, "HELD") == [0]


def test_a_patient_report_marks_its_window_with_the_first_report(services: Services) -> None:
    courses(services)
    # before the window opened: found when it opens, and then no reminder is sent
    fold(
        services,
        patient_report(FIXED_NOW - 2 * DAY, "ON"),
        patient_report(FIXED_NOW - DAY, "ON"),
        # a clinician's grading is no patient report
        f.assessment(FIXED_NOW - HOUR, "HELD", "held-a", sensory=0, source="clinician"),
    )
    open_report_windows(services)
    on = windows(services, "ON")
    assert [w["reported_at"] is not None for w in on] == [False, True]
    assert str(on[1]["reported_at"]).startswith("2026-09-29 12:00:00")  # the first one
    assert on[1]["notified_at"] is None
    held = windows(services, "HELD")
    assert held[0]["reported_at"] is None
    assert held[0]["notified_at"] is not None
    # after it opened: the next run marks it
    move_clock(services, FIXED_NOW + 2 * HOUR)
    fold(services, patient_report(FIXED_NOW + HOUR, "HELD"))
    assert open_report_windows(services) == 0
    [held_now] = windows(services, "HELD")
    assert str(held_now["reported_at"]).startswith("2026-10-01 13:00:00")
    # a report back-dated into a missed window marks that one
    fold(services, patient_report(FIXED_NOW - 12 * DAY, "WATCH"))
    open_report_windows(services)
    assert [w["reported_at"] is not None for w in windows(services, "WATCH")] == [
        False,
        True,
        False,
    ]


def test_a_patient_comment_quoting_the_source_is_not_a_report(services: Services) -> None:
    courses(services)
    fold(
        services,
        f.assessment(
            FIXED_NOW - HOUR,
            "HELD",
            "held-a",
            sensory=1,
            source="nurse",
            findings={"patient_comment": 'I typed "source": "patient"'},
        ),
    )
    open_report_windows(services)
    assert windows(services, "HELD")[0]["reported_at"] is None


def test_running_again_changes_nothing(services: Services) -> None:
    courses(services)
    first = open_report_windows(services)
    before = rows(services, "SELECT * FROM report_window ORDER BY id")
    assert first > 0
    assert open_report_windows(services) == 0
    assert rows(services, "SELECT * FROM report_window ORDER BY id") == before


def test_two_runs_at_once_open_and_notify_each_window_once(services: Services) -> None:
    """The lease bypassed: threads run the job at the same instant (a barrier); the unique
    (patient, course, window) key keeps every window to one row and one notification."""
    courses(services)
    with services.sessions.begin() as session:
        endpoint = WebhookEndpointRow(
            name="messaging", url="https://h.example/x", types='["report_due"]',
            created_at=FIXED_NOW,
        )  # fmt: skip
        session.add(endpoint)
        session.flush()
        assert endpoint.id is not None
        session.add(
            WebhookSecretRow(endpoint_id=endpoint.id, secret=new_secret(), created_at=FIXED_NOW)
        )
    threads = 4
    barrier = threading.Barrier(threads)
    opened: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            opened.append(open_report_windows(services))
        except BaseException as exc:  # noqa: BLE001  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert sum(opened) == 6  # each window opened by exactly one of the runs
    assert len(windows(services)) == 6
    assert sum(1 for w in windows(services) if w["notified_at"] is not None) == 3
    sent = rows(services, "SELECT report_window_id FROM webhook_delivery")
    assert len(sent) == 3
    assert len({d["report_window_id"] for d in sent}) == 3
    dispatcher = services.dispatcher
    assert isinstance(dispatcher, RecordingDispatcher)
    assert len(dispatcher.deliveries) == 3  # each handed to the sender once


def test_the_scheduler_tick_runs_the_job(services: Services) -> None:
    courses(services)
    counts = run_jobs(services, SchedulerLease(services.sessions, 30.0))
    assert counts is not None
    assert counts["open_report_windows"] == 6


def test_a_report_back_dated_long_after_its_window_ended_is_not_looked_for(
    services: Services,
) -> None:
    courses(services)
    move_clock(services, FIXED_NOW + 40 * DAY)
    open_report_windows(services)
    fold(
        services,
        # window 0 ended 53 days ago: past LATE_REPORT_DAYS (28)
        patient_report(FIXED_NOW - 17 * DAY, "WATCH"),
        # window 5 ([+15, +22) days) ended 18 days ago: still looked for
        patient_report(FIXED_NOW + 16 * DAY, "WATCH"),
    )
    open_report_windows(services)
    reported = [w["window_index"] for w in windows(services, "WATCH") if w["reported_at"]]
    assert reported == [5]
