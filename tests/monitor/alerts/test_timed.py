"""What time itself raises (issue 4): reminders before a reassessment is due, escalation of an
urgent alert nobody acknowledged, the timers fired in time order with a controllable clock
(equal to `replay --until` at every step), and the scheduler lease.

The service clock moves by giving the services a new `Settings` with a later `fixed_now`; the
lease runs on the wall clock, so its ttl is short and waited for with a condition.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import time
from typing import Any

import pytest

from monitor.alerts.scheduled import escalate_alerts, send_reminders
from monitor.processing.inprocess import InProcessWorker
from monitor.processing.scheduled import fire_due_timers
from monitor.scheduler.lease import SchedulerLease
from monitor.scheduler.runner import run_jobs
from monitor.services import Services
from policies import evaluate, parse_event
from tests.common import factories as f
from tests.common.service import (
    Api,
    current_decisions,
    eventually,
    expected_decisions,
    instant,
    rows,
)
from tests.common.service import (
    RecordingDispatcher as Recorder,
)
from tests.conftest import FIXED_NOW

ROOT = pathlib.Path(__file__).resolve().parents[3]
TIMELINE = ROOT / "examples" / "timeline.jsonl"


def set_clock(services: Services, moment: dt.datetime) -> None:
    services.settings = services.settings.model_copy(update={"fixed_now": moment})


def configure(services: Services, **changes: Any) -> None:
    services.settings = services.settings.model_copy(update=changes)


def post(api: Api, worker: InProcessWorker, *bodies: dict[str, Any]) -> None:
    response = api.post_events({"events": list(bodies)})
    assert response.status_code == 202, response.text
    assert worker.wait_idle()


def feed(api: Api, **params: Any) -> list[dict[str, Any]]:
    response = api.client.get("/v1/alerts", headers=api.headers("admin"), params=params)
    assert response.status_code == 200, response.text
    alerts: list[dict[str, Any]] = response.json()["alerts"]
    return alerts


def decision(api: Api, patient_id: str, action: str) -> dict[str, Any]:
    [found] = [d for d in api.decisions(patient_id) if d["action"] == action]
    return found


# --- reminders ------------------------------------------------------------------------------

DUE = FIXED_NOW + dt.timedelta(days=21)  # enrolled at FIXED_NOW: reassessment at cycle 2 day 1
WINDOW = DUE - dt.timedelta(days=1)  # reminder_before_s (one day) before it


@pytest.fixture
def enrolled(api: Api, worker: InProcessWorker) -> dict[str, Any]:
    """PT-1 enrolled now in unit onc-a: its first reassessment is pending, due in 21 days."""
    post(api, worker, f.enrollment(FIXED_NOW, patient="PT-1", event_id="pt1-e0", unit="onc-a"))
    scheduled = decision(api, "PT-1", "schedule_reassessment")
    assert instant(scheduled["due_at"]) == DUE
    return scheduled


def test_a_reminder_goes_out_once_inside_the_window_before_the_due_time(
    api: Api, services: Services, enrolled: dict[str, Any]
) -> None:
    assert send_reminders(services) == 0
    set_clock(services, WINDOW - dt.timedelta(seconds=1))
    assert send_reminders(services) == 0
    assert feed(api, kind="reminder") == []

    set_clock(services, WINDOW)
    assert send_reminders(services) == 1
    [reminder] = feed(api, kind="reminder")
    assert reminder["kind"] == "reminder"
    assert reminder["severity"] == "info"
    assert reminder["audience"] == ["nurse"]
    assert reminder["unit"] == "onc-a"
    assert reminder["patient_id"] == "PT-1"
    assert reminder["decision_id"] == enrolled["decision_id"]
    assert reminder["action"] == "schedule_reassessment"
    assert "2026-10-22 12:00 UTC" in reminder["message"]
    assert reminder["created_at"] == "2026-10-21T12:00:00Z"
    assert reminder["acknowledged"] is False
    assert reminder["escalates_alert_id"] is None

    # Safe to run twice, and later inside the window: still the one reminder.
    assert send_reminders(services) == 0
    set_clock(services, DUE - dt.timedelta(minutes=1))
    assert send_reminders(services) == 0
    set_clock(services, DUE + dt.timedelta(hours=1))
    assert send_reminders(services) == 0
    assert [a["id"] for a in feed(api, kind="reminder")] == [reminder["id"]]


def test_no_reminder_once_the_due_time_has_passed(
    api: Api, services: Services, enrolled: dict[str, Any]
) -> None:
    """The scheduler was down through the whole window: a reminder after the fact is noise
    (the overdue decision says it instead)."""
    set_clock(services, DUE)
    assert send_reminders(services) == 0
    set_clock(services, DUE + dt.timedelta(days=1))
    assert send_reminders(services) == 0
    assert feed(api, kind="reminder") == []


def test_a_recorded_reassessment_clears_the_reminder_and_the_next_gets_its_own(
    api: Api, services: Services, worker: InProcessWorker, enrolled: dict[str, Any]
) -> None:
    early = WINDOW - dt.timedelta(hours=6)  # before the window: nothing reminded yet
    set_clock(services, early)
    post(api, worker, f.assessment(early, patient="PT-1", event_id="pt1-a1", sensory=0))
    [first, second] = [d for d in api.decisions("PT-1") if d["action"] == "schedule_reassessment"]
    assert first["decision_id"] == enrolled["decision_id"]
    next_due = early + dt.timedelta(days=21)
    assert instant(second["due_at"]) == next_due
    assert api.get("/v1/patients/PT-1").json()["next_reassessment_due"] == ("2026-11-11T06:00:00Z")

    # The first reassessment's window: it was recorded, nothing to remind.
    for moment in (WINDOW, DUE - dt.timedelta(minutes=1)):
        set_clock(services, moment)
        assert send_reminders(services) == 0
    assert feed(api, kind="reminder") == []

    # The new pending reassessment gets its own reminder, a day before its due time.
    set_clock(services, next_due - dt.timedelta(days=1, seconds=1))
    assert send_reminders(services) == 0
    set_clock(services, next_due - dt.timedelta(days=1))
    assert send_reminders(services) == 1
    [reminder] = feed(api, kind="reminder")
    assert reminder["decision_id"] == second["decision_id"]
    assert "2026-11-11 06:00 UTC" in reminder["message"]
    assert send_reminders(services) == 0


def test_one_reminder_when_two_decisions_share_the_pending_due_time(
    api: Api, services: Services, worker: InProcessWorker, enrolled: dict[str, Any]
) -> None:
    """A grading in the middle of cycle 1 satisfies the pending reassessment and schedules
    the next for day 1 of cycle 2: the same time as before. Both scheduling decisions hold;
    the nurse gets one reminder for that time, not two (the later decision's)."""
    mid = FIXED_NOW + dt.timedelta(days=9)
    set_clock(services, mid)
    post(api, worker, f.assessment(mid, patient="PT-1", event_id="pt1-mid", sensory=0, cycle=1))
    scheduled = [d for d in api.decisions("PT-1") if d["action"] == "schedule_reassessment"]
    assert [(instant(d["due_at"]), d["trigger"]) for d in scheduled] == [
        (DUE, "pt1-e0"),
        (DUE, "pt1-mid"),
    ]
    set_clock(services, WINDOW)
    assert send_reminders(services) == 1
    assert send_reminders(services) == 0
    [reminder] = feed(api, kind="reminder")
    assert reminder["decision_id"] == scheduled[1]["decision_id"]


def test_no_second_reminder_for_the_same_due_time_after_a_later_grading(
    api: Api, services: Services, worker: InProcessWorker, enrolled: dict[str, Any]
) -> None:
    set_clock(services, WINDOW)
    assert send_reminders(services) == 1
    graded = WINDOW + dt.timedelta(hours=2)
    set_clock(services, graded)
    post(api, worker, f.assessment(graded, patient="PT-1", event_id="pt1-c1", cycle=1))
    assert api.get("/v1/patients/PT-1").json()["next_reassessment_due"] == "2026-10-22T12:00:00Z"
    assert send_reminders(services) == 0
    assert len(feed(api, kind="reminder")) == 1


def test_reminders_are_sent_by_the_scheduler_tick_and_honour_reminder_before_s(
    api: Api, services: Services, enrolled: dict[str, Any]
) -> None:
    configure(services, reminder_before_s=3600.0)
    lease = SchedulerLease(services.sessions, ttl_s=30)
    set_clock(services, WINDOW)  # a day before: outside a one-hour window
    counts = run_jobs(services, lease)
    assert counts is not None
    assert counts["send_reminders"] == 0
    set_clock(services, DUE - dt.timedelta(hours=1))
    counts = run_jobs(services, lease)
    assert counts is not None
    assert counts["send_reminders"] == 1
    assert len(feed(api, kind="reminder")) == 1
    lease.release()


# --- escalation -----------------------------------------------------------------------------

ASSESSED = FIXED_NOW  # the grade-3 assessment, and the urgent alert's creation time


@pytest.fixture
def urgent(api: Api, worker: InProcessWorker) -> dict[str, Any]:
    """PT-2 graded 3 at cycle 2: `discontinue`, the one urgent alert, unacknowledged."""
    post(
        api,
        worker,
        f.enrollment(FIXED_NOW - dt.timedelta(days=20), patient="PT-2", event_id="pt2-e0"),
        f.assessment(ASSESSED, patient="PT-2", event_id="pt2-a1", sensory=3, cycle=1),
    )
    [alert] = feed(api, severity="urgent")
    assert (alert["kind"], alert["action"], alert["acknowledged"]) == ("new", "discontinue", False)
    assert alert["audience"] == ["physician", "pharmacy", "infusion_unit", "nurse"]
    return alert


def after(seconds: float) -> dt.datetime:
    return ASSESSED + dt.timedelta(seconds=seconds)


def test_an_unacknowledged_urgent_alert_escalates_once_after_the_delay(
    api: Api, services: Services, urgent: dict[str, Any]
) -> None:
    assert services.settings.escalate_after_s == 1800
    assert escalate_alerts(services) == 0
    set_clock(services, after(1799))
    assert escalate_alerts(services) == 0
    assert feed(api, kind="escalation") == []

    set_clock(services, after(1800))
    assert escalate_alerts(services) == 1
    [escalation] = feed(api, kind="escalation")
    assert escalation["escalates_alert_id"] == urgent["id"]
    assert escalation["decision_id"] == urgent["decision_id"]
    assert escalation["patient_id"] == "PT-2"
    assert escalation["severity"] == "urgent"
    assert escalation["action"] == "discontinue"
    # nurse, infusion unit and pharmacy escalate to the physician; the physician is paged again
    assert escalation["audience"] == ["physician"]
    assert escalation["message"].startswith("Escalated: not acknowledged within 30 min by ")
    assert urgent["message"] in escalation["message"]
    assert escalation["created_at"] == "2026-10-01T12:30:00Z"
    assert escalation["id"] > urgent["id"]

    # Escalates once: again now, an hour later, a day later: nothing more.
    for seconds in (1800, 3600, 86400):
        set_clock(services, after(seconds))
        assert escalate_alerts(services) == 0
    assert [a["id"] for a in feed(api, kind="escalation")] == [escalation["id"]]
    # The escalation itself is urgent and unacknowledged, but is not escalated again.
    assert [a["kind"] for a in feed(api, severity="urgent")] == ["escalation", "new"]


def test_an_acknowledged_urgent_alert_never_escalates(
    api: Api, services: Services, urgent: dict[str, Any]
) -> None:
    set_clock(services, after(600))
    response = api.client.post(
        f"/v1/alerts/{urgent['id']}/ack",
        headers=api.headers("nurse"),
        json={"by": "nurse-7", "note": "physician informed"},
    )
    assert response.status_code == 200, response.text
    for seconds in (1800, 7200, 86400 * 3):
        set_clock(services, after(seconds))
        assert escalate_alerts(services) == 0
    assert feed(api, kind="escalation") == []


def test_warnings_and_info_never_escalate(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    post(
        api,
        worker,
        f.enrollment(FIXED_NOW - dt.timedelta(days=20), patient="PT-3", event_id="pt3-e0"),
        f.assessment(ASSESSED, patient="PT-3", event_id="pt3-a1", sensory=2, cycle=1),
    )
    severities = sorted({a["severity"] for a in feed(api)})
    assert severities == ["info", "warning"]  # reduce_dose (warning), scheduling (info)
    assert feed(api, acknowledged="false") == feed(api)
    for seconds in (1800, 86400):
        set_clock(services, after(seconds))
        assert escalate_alerts(services) == 0
    assert feed(api, kind="escalation") == []


def test_a_custom_delay_and_custom_targets_are_honoured(
    api: Api, services: Services, urgent: dict[str, Any]
) -> None:
    configure(
        services,
        escalate_after_s=600.0,
        escalation_targets={
            "nurse": "neurology",
            "infusion_unit": "neurology",
            "pharmacy": "neurology",
            "physician": "neurology",
        },
    )
    set_clock(services, after(599))
    assert escalate_alerts(services) == 0
    set_clock(services, after(600))
    assert escalate_alerts(services) == 1
    [escalation] = feed(api, kind="escalation")
    assert escalation["audience"] == ["neurology"]
    assert escalation["escalates_alert_id"] == urgent["id"]
    assert "not acknowledged within 10 min" in escalation["message"]
    assert feed(api, audience="neurology") == [escalation]


def test_unlisted_audiences_escalate_to_the_physician(
    api: Api, services: Services, urgent: dict[str, Any]
) -> None:
    configure(services, escalation_targets={"nurse": "neurology", "pharmacy": "infusion_unit"})
    set_clock(services, after(1800))
    assert escalate_alerts(services) == 1
    [escalation] = feed(api, kind="escalation")
    assert escalation["audience"] == ["infusion_unit", "neurology", "physician"]


def test_an_alert_whose_decision_was_superseded_does_not_escalate(
    api: Api, services: Services, worker: InProcessWorker, urgent: dict[str, Any]
) -> None:
    """The course had ended before that grading (recorded late): the discontinuation no
    longer holds, a correction went out instead, and nobody is paged about the old advice."""
    set_clock(services, after(300))
    post(
        api,
        worker,
        f.course_end(ASSESSED - dt.timedelta(days=1), patient="PT-2", event_id="pt2-end"),
    )
    assert "discontinue" not in [d["action"] for d in api.decisions("PT-2")]
    superseded = api.decisions("PT-2", superseded=True)
    assert urgent["decision_id"] in [d["decision_id"] for d in superseded]
    [correction] = [
        a for a in feed(api, kind="correction") if a["decision_id"] == urgent["decision_id"]
    ]
    assert correction["decision_id"] == urgent["decision_id"]
    assert correction["severity"] == "urgent"
    for seconds in (1800, 86400):
        set_clock(services, after(seconds))
        assert escalate_alerts(services) == 0
    assert feed(api, kind="escalation") == []


# --- timers in time order, equal to `replay --until` ---------------------------------------

E = dt.datetime(2026, 2, 2, 8, 0, tzinfo=dt.UTC)


def d(days: float) -> dt.datetime:
    return E + dt.timedelta(days=days)


# Beside the example timeline (one reassessment_overdue, an escalation answered by IVIg): an
# escalation nobody answers (escalation_unanswered, then an overdue reassessment), and one
# answered by immunotherapy at the very instant of its deadline (the event comes first).
SCENARIO = [
    f.enrollment(d(0), patient="PT-ESC", event_id="esc-e0", unit="onc-b"),
    f.assessment(d(21), patient="PT-ESC", event_id="esc-a21", sensory=3, cycle=2),
    f.assessment(d(35), patient="PT-ESC", event_id="esc-a35", sensory=3, motor=2),
    f.enrollment(d(1), patient="PT-ANS", event_id="ans-e0", unit="onc-a"),
    f.assessment(d(22), patient="PT-ANS", event_id="ans-a22", sensory=3, cycle=2),
    f.assessment(d(36), patient="PT-ANS", event_id="ans-a36", sensory=3, motor=2),
    f.immunotherapy(d(43), patient="PT-ANS", event_id="ans-i43"),
]


def timeline_bodies() -> list[dict[str, Any]]:
    lines = TIMELINE.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()] + SCENARIO


def test_timers_fire_in_time_order_and_every_step_equals_replay_until(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    bodies = timeline_bodies()
    events = [parse_event(b) for b in bodies]
    first = min(e.occurred_at for e in events).astimezone(dt.UTC)
    last = max(e.occurred_at for e in events).astimezone(dt.UTC)
    horizon = last + dt.timedelta(days=90)
    timers = sorted(
        {x.at for x in evaluate(services.pack, events, horizon) if x.trigger.startswith("timer:")}
    )
    fired = {
        (x.patient_id, x.action, x.at)
        for x in evaluate(services.pack, events, horizon)
        if x.trigger.startswith("timer:")
    }
    # Both kinds, for several patients; the answered escalation has no unanswered timer.
    assert {
        ("BZ-A01", "reassessment_overdue", dt.datetime(2026, 4, 29, 7, 30, tzinfo=dt.UTC)),
        ("PT-ESC", "escalation_unanswered", d(42)),
        ("PT-ESC", "reassessment_overdue", d(51)),
        ("PT-ANS", "reassessment_overdue", d(52)),
    } <= fired
    assert not [p for p, action, _ in fired if action == "escalation_unanswered" and p != "PT-ESC"]
    end = max(timers) + dt.timedelta(days=1)
    days = [first + dt.timedelta(days=n) for n in range((end - first).days + 1)]
    steps = sorted(set(days) | set(timers) | {t - dt.timedelta(seconds=1) for t in timers} | {end})
    steps = [s for s in steps if s >= first]
    patients = sorted({e.patient_id for e in events})

    # With the default re-drive grace (30 s on the wall clock): each fold clears the fired
    # mark, so a patient's next timer fires at its own time, however fast the clock moves.
    set_clock(services, first)
    post(api, worker, *bodies)
    # Only what has happened by the clock counts: the first event.
    at_first = current_decisions(api, patients)
    assert at_first == expected_decisions(services.pack, bodies, first)
    assert {d["trigger"] for d in at_first} <= {
        e.event_id for e in events if e.occurred_at <= first
    }

    lease = SchedulerLease(services.sessions, ttl_s=60)
    seen_timers = 0
    for moment in steps:
        set_clock(services, moment)
        counts = run_jobs(services, lease)
        assert counts is not None
        assert worker.wait_idle()
        got = current_decisions(api, patients)
        assert got == expected_decisions(services.pack, bodies, moment), moment
        # no decision dated after the clock, and every event after it still waiting
        assert all(instant(x["at"]) <= moment for x in got), moment
        seen_timers = sum(1 for x in got if x["trigger"].startswith("timer:"))
    assert seen_timers == len(fired)
    lease.release()


def test_a_patients_next_timer_fires_without_waiting_for_the_grace_period(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    """Two due instants of one patient, the second a clock step after the first was fired and
    processed: the second is fired when due (default grace of 30 s on the wall clock)."""
    enrolled = f.enrollment(FIXED_NOW, patient="PT-4", event_id="pt4-e0")
    future = f.assessment(FIXED_NOW + dt.timedelta(days=5), patient="PT-4", event_id="pt4-a5")
    post(api, worker, enrolled, future)
    set_clock(services, FIXED_NOW + dt.timedelta(days=5))
    assert fire_due_timers(services) == 1  # the dated-later assessment is due
    assert worker.wait_idle()
    overdue = FIXED_NOW + dt.timedelta(days=5 + 21 + 2)
    state = api.get("/v1/patients/PT-4").json()
    assert state["next_timer_at"] == "2026-10-29T12:00:00Z"
    set_clock(services, overdue)
    assert fire_due_timers(services) == 1
    assert worker.wait_idle()
    assert "reassessment_overdue" in [x["action"] for x in api.decisions("PT-4")]


# --- the lease ------------------------------------------------------------------------------

TTL = 0.3


def test_only_one_replica_holds_the_lease_and_the_holder_renews(services: Services) -> None:
    a = SchedulerLease(services.sessions, ttl_s=TTL)
    b = SchedulerLease(services.sessions, ttl_s=TTL)
    assert a.holder != b.holder
    assert a.hold() is True
    assert b.hold() is False
    # Renewed every tick, well past the ttl: the other never gets it.
    started = time.monotonic()
    while time.monotonic() - started < 3 * TTL:
        assert a.hold() is True
        assert b.hold() is False
        time.sleep(TTL / 5)
    [row] = rows(services, "SELECT holder FROM scheduler_lease")
    assert row["holder"] == a.holder


def test_the_other_replica_takes_over_after_expiry(services: Services) -> None:
    a = SchedulerLease(services.sessions, ttl_s=TTL)
    b = SchedulerLease(services.sessions, ttl_s=TTL)
    assert a.hold() is True
    renewed = time.monotonic()
    assert b.hold() is False
    eventually(b.hold, timeout=5, what="b to take the expired lease")
    assert time.monotonic() - renewed >= TTL * 0.9  # not before the lease expired
    assert a.hold() is False  # a (hung, now back) finds it lost, and does not take it back
    assert b.hold() is True
    [row] = rows(services, "SELECT holder FROM scheduler_lease")
    assert row["holder"] == b.holder


def test_release_lets_the_other_take_at_once(services: Services) -> None:
    a = SchedulerLease(services.sessions, ttl_s=60)
    b = SchedulerLease(services.sessions, ttl_s=60)
    assert a.hold() is True
    assert b.hold() is False
    a.release()
    assert b.hold() is True
    assert a.hold() is False
    b.release()
    b.release()  # harmless twice
    assert rows(services, "SELECT holder FROM scheduler_lease") == []


def test_run_jobs_does_nothing_without_the_lease(
    api: Api, services: Services, worker: InProcessWorker, urgent: dict[str, Any]
) -> None:
    """A due timer (PT-5's assessment dated later comes), a due reminder (PT-2's first watch
    reassessment, due 14 days after the grading) and an unacknowledged urgent alert (PT-2):
    the replica without the lease touches none of it; the holder does it all."""
    later = ASSESSED + dt.timedelta(days=13)
    post(
        api,
        worker,
        f.enrollment(FIXED_NOW, patient="PT-5", event_id="pt5-e0"),
        f.assessment(later, patient="PT-5", event_id="pt5-a13"),
    )
    recorder = Recorder()
    services.dispatcher = recorder
    holder = SchedulerLease(services.sessions, ttl_s=60)
    other = SchedulerLease(services.sessions, ttl_s=60)
    assert holder.hold() is True
    set_clock(services, later + dt.timedelta(hours=12))
    alerts_before = feed(api)
    assert run_jobs(services, other) is None
    assert recorder.sent == []
    assert recorder.deliveries == []
    assert feed(api) == alerts_before
    assert (
        rows(services, "SELECT timer_enqueued_at FROM patient WHERE timer_enqueued_at IS NOT NULL")
        == []
    )
    counts = run_jobs(services, holder)
    assert counts is not None
    assert (counts["fire_due_timers"], counts["send_reminders"], counts["escalate_alerts"]) == (
        1,
        1,
        1,
    )
    assert recorder.sent == ["PT-5"]
    assert sorted(a["kind"] for a in feed(api) if a not in alerts_before) == [
        "escalation",
        "reminder",
    ]
    assert run_jobs(services, other) is None
    assert run_jobs(services, holder) == {
        "redrive_outbox": 0,
        "fire_due_timers": 0,
        "send_reminders": 0,
        "escalate_alerts": 0,
        "open_report_windows": 0,
        "redrive_deliveries": 0,
        "checkpoint_audit": 0,  # the first tick wrote one; nothing new since
    }
