"""Two schedulers at once never double-fire (issue 4), on real PostgreSQL.

Many patients are made due at once: a timer come (an overdue reassessment), a reminder due (a
reassessment due within the day) and an urgent alert nobody acknowledged. A recording
dispatcher counts what is enqueued; the alert table counts what was raised.

1. Two lease-holding scheduler loops in threads (each its own engine, as two replicas): every
   due patient is fired once, one reminder and one escalation per source, and only one
   replica acts at any time, including across a hand-over when the holder hangs.
2. The lease bypassed: many threads call the jobs at the same instant (a barrier); row locks
   with SKIP LOCKED and the unique (decision, kind) alert keep it to once each, and no thread
   fails.

The outbox re-drive after a broker outage is covered end to end (real Redis stopped and
restarted under the API, workers and scheduler processes) by test_redis_restart.py.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import text

from monitor.alerts.scheduled import escalate_alerts, send_reminders
from monitor.ingest.service import store_events
from monitor.processing import service as processing
from monitor.processing.scheduled import fire_due_timers
from monitor.scheduler.lease import SchedulerLease
from monitor.scheduler.runner import run_jobs
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from monitor.storage.models import WebhookEndpointRow, WebhookSecretRow
from monitor.webhooks.signing import new_secret
from policies import parse_event
from tests.common import factories as f
from tests.common.service import RecordingDispatcher as Recorder
from tests.conftest import FIXED_NOW
from tests.integration.conftest import (
    PG,
    _create_database,
    _drop_database,
    require_postgres,
    wait_until,
)

NOW = FIXED_NOW  # the scheduler's clock
SEEDED = NOW - dt.timedelta(hours=13)  # the clock when the events were processed
PER_GROUP = 25


def days(n: float) -> dt.timedelta:
    return dt.timedelta(days=n)


@pytest.fixture
def database_url() -> Iterator[str]:
    """A new PostgreSQL database per test (the jobs' effects must not mix between tests)."""
    require_postgres()
    name = _create_database()
    try:
        yield PG.set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_database(name)


@dataclass
class Seeded:
    timers: list[str]  # patients whose overdue timer has come
    reminders: list[str]  # patients whose reassessment is due within the day
    urgent: dict[str, int]  # patient -> its unacknowledged urgent alert id


def seed(url: str) -> Seeded:
    """Events stored and processed 13 hours ago, in three groups of patients; at NOW:
    - T-*: enrolled 23.5 days ago: due 2.5 days ago, overdue (due + 2 days) 12 hours ago;
    - R-*: enrolled 20.5 days ago: due in 12 hours, so reminded from 12 hours ago on;
    - U-*: graded 3 at SEEDED: `discontinue`, urgent, unacknowledged for 13 hours.
    """
    services = build_services(Settings(database_url=url, fixed_now=SEEDED))
    upgrade(services.engine)
    groups: dict[str, list[dict[str, object]]] = {"T": [], "R": [], "U": []}
    for n in range(PER_GROUP):
        groups["T"].append(f.enrollment(NOW - days(23.5), patient=f"T-{n}", event_id=f"t{n}-e"))
        groups["R"].append(f.enrollment(NOW - days(20.5), patient=f"R-{n}", event_id=f"r{n}-e"))
        groups["U"] += [
            f.enrollment(NOW - days(22), patient=f"U-{n}", event_id=f"u{n}-e", unit="onc-b"),
            f.assessment(SEEDED, patient=f"U-{n}", event_id=f"u{n}-a", sensory=3, cycle=1),
        ]
    bodies = [b for group in groups.values() for b in group]
    store_events(services.sessions, [parse_event(b) for b in bodies], SEEDED)
    for patient in sorted({str(b["patient_id"]) for b in bodies}):
        processing.process_patient(services.sessions, services.pack, patient, SEEDED)
    with services.sessions.begin() as session:
        pager = WebhookEndpointRow(
            name="pager",
            url="http://127.0.0.1:9/hook",
            kinds='["reminder", "escalation"]',
            created_at=SEEDED,
        )
        session.add(pager)
        session.flush()
        assert pager.id is not None
        session.add(WebhookSecretRow(endpoint_id=pager.id, secret=new_secret(), created_at=SEEDED))
    with services.engine.connect() as conn:
        urgent = {
            str(patient): int(alert_id)
            for patient, alert_id in conn.execute(
                text("SELECT patient_id, id FROM alert WHERE severity = 'urgent' AND kind = 'new'")
            )
        }
        due = conn.execute(
            text("SELECT patient_id FROM patient WHERE next_timer_at <= :now ORDER BY 1"),
            {"now": NOW},
        ).scalars()
        timers = list(due)
    services.close()
    seeded = Seeded(
        timers=[f"T-{n}" for n in range(PER_GROUP)],
        reminders=[f"R-{n}" for n in range(PER_GROUP)],
        urgent=urgent,
    )
    assert sorted(timers) == sorted(seeded.timers)  # only the T group is due at NOW
    assert sorted(urgent) == sorted(f"U-{n}" for n in range(PER_GROUP))
    return seeded


def replica(url: str, recorder: Recorder, **settings: float) -> Services:
    """One scheduler replica: its own engine and pool, the clock at NOW."""
    services = build_services(Settings(database_url=url, fixed_now=NOW, **settings))
    services.dispatcher = recorder
    return services


def raised(url: str) -> dict[tuple[str, str], list[tuple[str, int | None]]]:
    """(kind, patient) -> [(decision_id, escalates_alert_id)] of the time-raised alerts."""
    services = build_services(Settings(database_url=url))
    found: dict[tuple[str, str], list[tuple[str, int | None]]] = collections.defaultdict(list)
    with services.engine.connect() as conn:
        for kind, patient, decision_id, escalates in conn.execute(
            text(
                "SELECT kind, patient_id, decision_id, escalates_alert_id FROM alert "
                "WHERE kind IN ('reminder', 'escalation') ORDER BY id"
            )
        ):
            found[(kind, patient)].append((decision_id, escalates))
    services.close()
    return found


def per_source(url: str) -> collections.Counter[tuple[str, str]]:
    services = build_services(Settings(database_url=url))
    with services.engine.connect() as conn:
        counts = collections.Counter(
            {
                (decision_id, kind): int(count)
                for decision_id, kind, count in conn.execute(
                    text("SELECT decision_id, kind, count(*) FROM alert GROUP BY 1, 2")
                )
            }
        )
        deliveries = int(conn.execute(text("SELECT count(*) FROM webhook_delivery")).scalar_one())
    services.close()
    counts[("*", "deliveries")] = deliveries
    return counts


def check_raised_once(url: str, seeded: Seeded, recorder: Recorder) -> None:
    """Every due patient fired once, one reminder and one escalation per source, and each of
    their webhook deliveries enqueued once."""
    assert collections.Counter(recorder.sent) == collections.Counter(seeded.timers)
    found = raised(url)
    assert sorted(p for kind, p in found if kind == "reminder") == sorted(seeded.reminders)
    assert sorted(p for kind, p in found if kind == "escalation") == sorted(seeded.urgent)
    for (kind, patient), alerts in found.items():
        assert len(alerts) == 1, (kind, patient, alerts)
        if kind == "escalation":
            assert alerts[0][1] == seeded.urgent[patient]
    counts = per_source(url)
    assert max(n for key, n in counts.items() if key[1] != "deliveries") == 1
    assert counts[("*", "deliveries")] == 2 * PER_GROUP  # one per reminder and escalation
    assert sorted(recorder.deliveries) == sorted(set(recorder.deliveries))
    assert len(recorder.deliveries) == 2 * PER_GROUP


# --- 1. two lease-holding scheduler loops -------------------------------------------------

TTL = 2.0  # several ticks, far longer than the longest (the first, ~0.3 s)
TICK = 0.02


@dataclass
class Tick:
    replica: str
    started: float
    ended: float
    counts: dict[str, int] | None


@dataclass
class Loop:
    """A scheduler replica's loop: `run_jobs` every TICK until stopped; `hang` pauses it
    (a replica stuck in GC or I/O: it neither ticks nor renews its lease)."""

    name: str
    services: Services
    lease: SchedulerLease
    ticks: list[Tick]
    stop: threading.Event = field(default_factory=threading.Event)
    hang: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)

    def run(self, start: threading.Barrier) -> None:
        try:
            start.wait()
            while not self.stop.is_set():
                if self.hang.is_set():
                    time.sleep(TICK)
                    continue
                began = time.monotonic()
                counts = run_jobs(self.services, self.lease)
                self.ticks.append(Tick(self.name, began, time.monotonic(), counts))
                time.sleep(TICK)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    def acted(self) -> list[Tick]:
        return [t for t in self.ticks if t.replica == self.name and t.counts is not None]


def test_two_lease_holding_schedulers_never_double_fire(database_url: str) -> None:
    seeded = seed(database_url)
    recorder = Recorder()
    ticks: list[Tick] = []
    loops = []
    for name in ("a", "b"):
        services = replica(database_url, recorder, outbox_redrive_after_s=3600)
        loops.append(Loop(name, services, SchedulerLease(services.sessions, ttl_s=TTL), ticks))
    start = threading.Barrier(len(loops))
    threads = [threading.Thread(target=loop.run, args=(start,), daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    try:
        # Both loops run; the due work is done once, by whichever took the lease.
        wait_until(
            lambda: len(recorder.sent) >= PER_GROUP and len(recorder.deliveries) >= 2 * PER_GROUP,
            30,
            "the due work to be done",
        )
        wait_until(lambda: sum(1 for t in ticks if t.counts is None) >= 20, 10, "idle ticks")
        [first] = [loop for loop in loops if loop.acted()]
        [second] = [loop for loop in loops if loop is not first]
        assert not second.acted()  # it ticked all along, and never acted
        check_raised_once(database_url, seeded, recorder)

        # The holder hangs: after the lease expires the other takes over, finds everything
        # already done (the fired patients are still due: the recorder processed nothing),
        # and sends nothing again.
        first.hang.set()
        wait_until(lambda: len(second.acted()) >= 10, 10 + TTL, "the hand-over")
        first.hang.clear()  # back: the lease is lost, it no longer acts
        resumed = time.monotonic()
        wait_until(
            lambda: sum(1 for t in ticks if t.replica == first.name and t.started > resumed) >= 10,
            10,
            "the old holder to tick again",
        )
    finally:
        for loop in loops:
            loop.stop.set()
        for thread in threads:
            thread.join(10)
        for loop in loops:
            loop.lease.release()
            loop.services.close()
    assert [e for loop in loops for e in loop.errors] == []
    assert not [t for t in first.acted() if t.started > resumed]
    check_raised_once(database_url, seeded, recorder)
    after_hand_over = second.acted()
    assert [t.counts for t in after_hand_over if t.counts and any(t.counts.values())] == []

    # One replica acts at a time: the acting ticks form two runs (first, then second), they
    # never overlap, and the second took over no sooner than the ttl after the last renewal.
    acting = sorted((t for t in ticks if t.counts is not None), key=lambda t: t.started)
    runs = [t.replica for n, t in enumerate(acting) if n == 0 or acting[n - 1].replica != t.replica]
    assert runs == [first.name, second.name]
    for earlier, later in itertools.pairwise(acting):
        assert later.started >= earlier.ended
    last_of_first = max(t.started for t in first.acted())
    first_of_second = min(t.ended for t in second.acted())
    assert first_of_second - last_of_first >= TTL


# --- 2. the lease bypassed: the jobs at the same instant from many threads ---------------

THREADS = 8
JOBS: tuple[Callable[[Services], int], ...] = (fire_due_timers, send_reminders, escalate_alerts)


def test_jobs_run_concurrently_without_the_lease_raise_each_thing_once(database_url: str) -> None:
    seeded = seed(database_url)
    recorder = Recorder()
    replicas = [
        replica(database_url, recorder, outbox_redrive_after_s=3600) for _ in range(THREADS)
    ]
    start = threading.Barrier(THREADS)
    returned: dict[str, list[int]] = collections.defaultdict(list)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def scheduler(services: Services) -> None:
        try:
            for _ in range(2):  # the second round finds nothing left
                for job in JOBS:
                    start.wait(timeout=30)
                    count = job(services)
                    with lock:
                        returned[job.__name__].append(count)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            with lock:
                errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=scheduler, args=(s,), daemon=True) for s in replicas]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for services in replicas:
            services.close()
    assert errors == []
    assert not [t for t in threads if t.is_alive()]
    assert {name: len(counts) for name, counts in returned.items()} == {
        job.__name__: 2 * THREADS for job in JOBS
    }
    # What the threads say they did adds up to exactly one of each.
    assert sum(returned["fire_due_timers"]) == PER_GROUP
    assert sum(returned["send_reminders"]) == PER_GROUP
    assert sum(returned["escalate_alerts"]) == PER_GROUP
    check_raised_once(database_url, seeded, recorder)
