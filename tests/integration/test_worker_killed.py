"""A worker killed with SIGKILL in the middle of a burst: nothing lost, nothing doubled.

2,000 events (200 patients x 10) are posted in batches while two `worker --concurrency 1`
processes and the `scheduler` run. When one worker is inside a task (it logged the task as
received and not as finished), its whole process group (Celery's main process and its pool
child) gets SIGKILL. Its message is never acknowledged (late acks); the outbox re-drive and the
other worker must still fold every event exactly into the decisions `evaluate` gives.
"""

from __future__ import annotations

import json
import re
import threading

import redis

from tests.integration.conftest import (
    ManagedProcess,
    StackFactory,
    current_decisions,
    db_engine,
    evaluate_stored,
    outbox_counts,
    post_batches,
    scalar,
    synthetic_events,
    wait_processed,
    wait_until,
)

RECEIVED = re.compile(r"Task monitor\.process_patient\[([0-9a-f-]+)\] received")
FINISHED = re.compile(r"Task monitor\.process_patient\[([0-9a-f-]+)\] (?:succeeded|raised|retry)")


def task_ids(worker: ManagedProcess) -> tuple[set[str], set[str]]:
    """(received, finished) task ids from the worker's log."""
    log = worker.output()
    return set(RECEIVED.findall(log)), set(FINISHED.findall(log))


def test_sigkill_of_a_worker_mid_burst_loses_and_doubles_nothing(
    make_stack: StackFactory,
) -> None:
    stack = make_stack("sigkill")
    stack.start(workers=2, scheduler=True)
    victim, survivor = stack.workers
    events = synthetic_events(patients=200, events_per_patient=10, seed=11)
    assert len(events) == 2_000
    assert len({e["patient_id"] for e in events}) == 200
    engine = db_engine(stack.database_url)
    broker = redis.Redis.from_url(stack.broker_url)
    failures: list[BaseException] = []

    def post_all() -> None:
        try:
            with stack.client() as client:
                post_batches(client, events, batch_size=250)
        except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
            failures.append(exc)

    poster = threading.Thread(target=post_all, name="poster")
    poster.start()
    try:

        def victim_in_task() -> bool:
            received, finished = task_ids(victim)
            return len(finished) >= 100 and bool(received - finished)

        wait_until(victim_in_task, 60, "the victim worker to be inside a task", interval=0.002)
        victim.kill()
        in_flight = outbox_counts(engine)
        survivor_done_at_kill = len(task_ids(survivor)[1])
    finally:
        poster.join(timeout=120)
    assert not poster.is_alive()
    assert failures == []
    assert in_flight.open > 0, "the kill came after the burst was done"

    wait_processed(engine, 2_000, 120, stack.diagnostics)

    # Nothing lost: every event stored once, every outbox row processed, nothing parked.
    assert scalar(engine, "SELECT count(*) FROM event") == 2_000
    assert scalar(engine, "SELECT count(DISTINCT event_pk) FROM outbox") == 2_000
    assert scalar(engine, "SELECT count(*) FROM dead_letter") == 0
    # Nothing doubled: one row per decision id and per alert, and the current decisions are
    # exactly the pure engine's over the stored events at the fixed clock.
    assert scalar(engine, "SELECT count(*) - count(DISTINCT decision_id) FROM decision") == 0
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM (SELECT decision_id, kind FROM alert "
            "GROUP BY decision_id, kind HAVING count(*) > 1) AS doubled",
        )
        == 0
    )
    expected = evaluate_stored(engine)
    assert sum(len(d) for d in expected.values()) > 200
    assert current_decisions(engine) == expected
    patients_in_state = scalar(
        engine, "SELECT count(*) FROM patient WHERE evaluated_at IS NOT NULL"
    )
    assert patients_in_state == 200

    # The kill did hit work in flight: the victim's last message was never acknowledged
    # (it waits in Redis's `unacked` hash for the visibility timeout), and no worker finished
    # it; its events were folded by the survivor, which kept going after the kill.
    def settled() -> bool:
        received, finished = task_ids(survivor)
        idle = broker.llen("monitor") == 0 and received == finished
        return idle and broker.hlen("unacked") == 1

    wait_until(
        settled,
        30,
        "the queue to drain, leaving only the victim's unacknowledged message",
        interval=0.1,
        diagnostics=lambda: f"queued {broker.llen('monitor')}, unacked {broker.hlen('unacked')}",
    )
    unacked = [json.loads(raw)[0] for raw in broker.hvals("unacked")]
    assert [m["headers"]["task"] for m in unacked] == ["monitor.process_patient"]
    _, victim_finished = task_ids(victim)
    _, survivor_finished = task_ids(survivor)
    assert unacked[0]["headers"]["id"] not in victim_finished | survivor_finished
    assert len(survivor_finished) > survivor_done_at_kill
    assert victim.popen.returncode == -9
    engine.dispose()
