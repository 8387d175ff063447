"""The scheduler's jobs (ARCHITECTURE.md, "Scheduler"): re-drive the outbox, fire due timers.

The service clock moves by giving the services a new `Settings` with a later `fixed_now`; the
re-send grace period (`outbox_redrive_after_s`) runs on the wall clock, so it is set short and
waited for. A recording dispatcher shows exactly what each job sends; the in-process worker then
does the work, and the result is compared with replay at the new clock.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import subprocess
import sys
import time
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlmodel import select

from monitor.policy_file import load_pack
from monitor.processing.inprocess import InProcessWorker
from monitor.processing.jobs import dead_letter, run_process_patient
from monitor.processing.scheduled import fire_due_timers, redrive_outbox
from monitor.scheduler.runner import add_jobs, make_lease
from monitor.services import Services
from monitor.storage.models import OutboxRow, PatientRow
from tests.common import factories as f
from tests.common.service import Api, expected_decisions, rows
from tests.conftest import FIXED_NOW

ROOT = pathlib.Path(__file__).resolve().parents[3]


class Recorder:
    """A dispatcher that hands nothing over (the broker is down): it only records."""

    def __init__(self) -> None:
        self.sent: list[list[str]] = []

    def enqueue(self, patient_ids: list[str]) -> int:
        self.sent.append(list(patient_ids))
        return 0

    def enqueue_deliveries(self, delivery_ids: list[int]) -> int:
        return 0

    def ping(self) -> bool:
        return False


def set_clock(services: Services, moment: dt.datetime) -> None:
    services.settings = services.settings.model_copy(update={"fixed_now": moment})


def later(**delta: float) -> dt.datetime:
    return FIXED_NOW + dt.timedelta(**delta)


def open_rows(services: Services) -> list[dict[str, Any]]:
    return rows(
        services,
        "SELECT patient_id, enqueue_count, processed_at, dead_letter_id FROM outbox "
        "WHERE processed_at IS NULL ORDER BY id",
    )


# --- the outbox re-drive -----------------------------------------------------------------------

GRACE = 0.3  # outbox_redrive_after_s for these tests (seconds on the wall clock)


@pytest.fixture
def down(api: Api, services: Services, worker: InProcessWorker) -> Recorder:
    """Events accepted while the dispatcher was down: stored, never handed to a worker."""
    services.settings = services.settings.model_copy(update={"outbox_redrive_after_s": GRACE})
    recorder = Recorder()
    services.dispatcher = recorder
    batch = [
        f.enrollment(f.at(0), patient="PA", event_id="pa-e0"),
        f.assessment(f.at(21), patient="PA", event_id="pa-a21", sensory=1),
        f.enrollment(f.at(0), patient="PB", event_id="pb-e0"),
    ]
    assert api.post_events({"events": batch}).status_code == 202
    assert recorder.sent == [["PA", "PB"]]  # the API tried once, after the commit
    recorder.sent.clear()
    return recorder


def test_redrive_resends_rows_still_open_after_the_grace_period(
    services: Services, down: Recorder
) -> None:
    # The first run sees the rows open and starts their grace period; nothing is sent yet.
    assert redrive_outbox(services) == 0
    assert redrive_outbox(services) == 0
    assert down.sent == []
    assert [r["enqueue_count"] for r in open_rows(services)] == [0, 0, 0]
    time.sleep(GRACE + 0.05)
    assert redrive_outbox(services) == 0  # the recorder hands nothing over...
    assert down.sent == [["PA", "PB"]]  # ...but was given both patients, once each
    assert [r["enqueue_count"] for r in open_rows(services)] == [1, 1, 1]
    # Run again at once: just re-sent, so not yet (safe to run twice).
    redrive_outbox(services)
    assert down.sent == [["PA", "PB"]]
    # Still unprocessed a grace period later: sent again.
    time.sleep(GRACE + 0.05)
    redrive_outbox(services)
    assert down.sent == [["PA", "PB"], ["PA", "PB"]]
    assert [r["enqueue_count"] for r in open_rows(services)] == [2, 2, 2]


def test_redrive_skips_processed_and_dead_lettered_rows(services: Services, down: Recorder) -> None:
    run_process_patient(services, "PB")
    dead_letter(services, "PA", RuntimeError("bad data"), 1)
    assert [(r["patient_id"], r["dead_letter_id"]) for r in open_rows(services)] == [
        ("PA", 1),
        ("PA", 1),
    ]
    redrive_outbox(services)
    time.sleep(GRACE + 0.05)
    assert redrive_outbox(services) == 0
    assert down.sent == []
    assert [r["enqueue_count"] for r in open_rows(services)] == [0, 0]


def test_redriven_work_is_processed_and_equals_replay(
    api: Api, services: Services, worker: InProcessWorker, down: Recorder
) -> None:
    """The dispatcher is back (the in-process worker): the re-drive hands the work over."""
    services.dispatcher = worker
    moment = later(minutes=5)
    set_clock(services, moment)
    redrive_outbox(services)
    time.sleep(GRACE + 0.05)
    assert redrive_outbox(services) == 2
    assert worker.wait_idle()
    assert open_rows(services) == []
    pa = [
        f.enrollment(f.at(0), patient="PA", event_id="pa-e0"),
        f.assessment(f.at(21), patient="PA", event_id="pa-a21", sensory=1),
    ]
    assert api.decisions("PA") == expected_decisions(services.pack, pa, moment)
    time.sleep(GRACE + 0.05)
    assert redrive_outbox(services) == 0  # nothing open any more


# --- due timers --------------------------------------------------------------------------------

ENROLLED = FIXED_NOW - dt.timedelta(days=1)  # reassessment due 21 days later, overdue 2 after
OVERDUE_AT = dt.datetime(2026, 10, 23, 12, 0, tzinfo=dt.UTC)


def next_timer_at(services: Services, patient_id: str) -> dt.datetime | None:
    with services.sessions() as session:
        row = session.execute(
            select(PatientRow).where(PatientRow.patient_id == patient_id)
        ).scalar_one()
        return row.next_timer_at


@pytest.fixture
def enrolled(api: Api, services: Services, worker: InProcessWorker) -> dict[str, Any]:
    body = f.enrollment(ENROLLED, patient="PT", event_id="pt-e0")
    assert api.post_events(body).status_code == 202
    assert worker.wait_idle()
    assert next_timer_at(services, "PT") == OVERDUE_AT
    return body


def replay_cli(
    tmp_path: pathlib.Path, bodies: list[dict[str, Any]], until: str, *options: str
) -> list[Any]:
    events_file = tmp_path / "events.jsonl"
    events_file.write_text("".join(json.dumps(b) + "\n" for b in bodies))
    if not options:  # the service's pack in these tests (tests/conftest.py)
        options = ("--policy", "default@1")
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "replay", str(events_file), "--until", until, *options],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_timers_fire_only_when_due_and_the_result_equals_replay_until(
    api: Api,
    services: Services,
    worker: InProcessWorker,
    enrolled: dict[str, Any],
    tmp_path: pathlib.Path,
) -> None:
    assert [d["action"] for d in api.decisions("PT")] == ["schedule_reassessment"]
    assert fire_due_timers(services) == 0
    set_clock(services, OVERDUE_AT - dt.timedelta(seconds=1))
    assert fire_due_timers(services) == 0
    set_clock(services, OVERDUE_AT)
    assert fire_due_timers(services) == 1
    assert worker.wait_idle()
    decisions = api.decisions("PT")
    assert [d["action"] for d in decisions] == ["schedule_reassessment", "reassessment_overdue"]
    assert decisions == replay_cli(tmp_path, [enrolled], "2026-10-23T12:00:00Z")
    assert decisions[1]["trigger"] == "timer:reassessment_overdue"
    assert decisions[1]["at"] == "2026-10-23T12:00:00Z"
    # Fired and processed: no timer left for this course, nothing to fire again.
    assert next_timer_at(services, "PT") is None
    set_clock(services, OVERDUE_AT + dt.timedelta(days=30))
    assert fire_due_timers(services) == 0
    state = api.get("/v1/patients/PT").json()
    assert state["reassessment_overdue_since"] == "2026-10-21T12:00:00Z"
    assert state["next_timer_at"] is None


def test_the_missed_timer_v5_is_fired_like_the_others_and_equals_replay(
    api: Api, services: Services, worker: InProcessWorker, tmp_path: pathlib.Path
) -> None:
    """V5's third timer kind (`reassessment_missed`, a week after the overdue) needs nothing of
    the scheduler: the fold stores it as `next_timer_at`, and a due patient is folded again."""
    site = tmp_path / "site.toml"
    site.write_text('base = "default@1"\nname = "v5site"\nmissed_escalate_days = 7\n')
    services.pack = load_pack(None, site)
    missed_at = OVERDUE_AT + dt.timedelta(days=7)
    body = f.enrollment(ENROLLED, patient="PT", event_id="pt-e0")
    assert api.post_events(body).status_code == 202
    assert worker.wait_idle()
    assert next_timer_at(services, "PT") == OVERDUE_AT
    set_clock(services, OVERDUE_AT)
    assert fire_due_timers(services) == 1
    assert worker.wait_idle()
    assert next_timer_at(services, "PT") == missed_at  # the overdue's own next timer
    assert api.get("/v1/patients/PT").json()["next_timer_at"] == "2026-10-30T12:00:00Z"
    set_clock(services, missed_at - dt.timedelta(seconds=1))
    assert fire_due_timers(services) == 0
    set_clock(services, missed_at)
    assert fire_due_timers(services) == 1
    assert worker.wait_idle()
    decisions = api.decisions("PT")
    assert [(d["action"], d["trigger"]) for d in decisions] == [
        ("schedule_reassessment", "pt-e0"),
        ("reassessment_overdue", "timer:reassessment_overdue"),
        ("review_required", "timer:reassessment_missed"),
    ]
    missed = decisions[2]
    assert (missed["at"], missed["reason"], missed["severity"], missed["audience"]) == (
        "2026-10-30T12:00:00Z",
        "reassessment_missed",
        "urgent",
        ["physician", "nurse"],
    )
    assert missed["policy"] == "v5site@1"
    assert decisions == replay_cli(
        tmp_path, [body], "2026-10-30T12:00:00Z", "--policy-file", str(site)
    )
    # once: nothing left to fire for this course
    assert next_timer_at(services, "PT") is None
    set_clock(services, missed_at + dt.timedelta(days=30))
    assert fire_due_timers(services) == 0


def test_a_fired_timer_is_not_sent_again_until_the_grace_period(
    services: Services, enrolled: dict[str, Any]
) -> None:
    """Due on the service clock; the re-send of a lost task waits the grace period (wall)."""
    services.settings = services.settings.model_copy(update={"outbox_redrive_after_s": GRACE})
    recorder = Recorder()
    services.dispatcher = recorder
    set_clock(services, OVERDUE_AT + dt.timedelta(hours=1))
    fire_due_timers(services)
    fire_due_timers(services)
    assert recorder.sent == [["PT"]]
    time.sleep(GRACE + 0.05)
    fire_due_timers(services)
    assert recorder.sent == [["PT"], ["PT"]]  # still not processed: sent again


def test_an_event_dated_after_the_clock_is_applied_when_its_time_comes(
    api: Api, services: Services, worker: InProcessWorker, enrolled: dict[str, Any]
) -> None:
    when = FIXED_NOW + dt.timedelta(days=5)
    future = f.assessment(when, patient="PT", event_id="pt-a5", sensory=2)
    assert api.post_events(future).status_code == 202
    assert worker.wait_idle()
    assert next_timer_at(services, "PT") == when
    assert [d["trigger"] for d in api.decisions("PT")] == ["pt-e0"]
    set_clock(services, when)
    assert fire_due_timers(services) == 1
    assert worker.wait_idle()
    decisions = api.decisions("PT")
    assert decisions == expected_decisions(services.pack, [enrolled, future], when)
    assert "pt-a5" in [d["trigger"] for d in decisions]


def test_the_tick_is_registered_with_generous_misfire_grace(services: Services) -> None:
    scheduler = BackgroundScheduler(timezone=dt.UTC)
    add_jobs(scheduler, services, make_lease(services))
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert sorted(jobs) == ["scheduler_tick"]
    for job in jobs.values():
        assert job.trigger.interval == dt.timedelta(seconds=5)
        assert job.max_instances == 1
        assert job.coalesce is True
        assert job.misfire_grace_time == 3600


def test_outbox_rows_know_their_patient(services: Services, down: Recorder) -> None:
    with services.sessions() as session:
        patients = sorted(r.patient_id for r in session.execute(select(OutboxRow)).scalars())
    assert patients == ["PA", "PA", "PB"]
