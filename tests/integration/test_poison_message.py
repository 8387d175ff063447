"""A poison message (a task argument no retry can fix) is dead-lettered once, with the reason
`poison_message`, acknowledged (not redelivered in a loop), and the workers keep going."""

from __future__ import annotations

import re
import time

import redis

from monitor.settings import Settings
from tests.integration.conftest import (
    Stack,
    StackFactory,
    current_decisions,
    db_engine,
    evaluate_stored,
    post_batches,
    scalar,
    synthetic_events,
    wait_processed,
    wait_until,
)
from workers.app import create_celery

QUIET_S = 3.0  # how long the dead-letter count must stay put


def received_count(stack: Stack, task_id: str) -> int:
    pattern = re.compile(rf"Task monitor\.process_patient\[{re.escape(task_id)}\] received")
    return sum(len(pattern.findall(w.output())) for w in stack.workers)


def test_a_poison_message_is_dead_lettered_once_and_workers_go_on(
    make_stack: StackFactory,
) -> None:
    stack = make_stack("poison")
    stack.start(workers=2, metrics=True)
    engine = db_engine(stack.database_url)
    celery = create_celery(Settings(database_url=stack.database_url, broker_url=stack.broker_url))
    poisons = [
        celery.send_task("monitor.process_patient", args=[{"x": 1}]),
        celery.send_task("monitor.process_patient", args=["../not a patient id"]),
    ]

    wait_until(
        lambda: scalar(engine, "SELECT count(*) FROM dead_letter") == 2,
        30,
        "two dead letters",
        diagnostics=stack.diagnostics,
    )
    deadline = time.monotonic() + QUIET_S
    while time.monotonic() < deadline:  # a loop would add rows or deliveries within seconds
        assert scalar(engine, "SELECT count(*) FROM dead_letter") == 2
        time.sleep(0.2)
    for poison in poisons:
        assert received_count(stack, poison.id) == 1  # delivered once, never again
    broker = redis.Redis.from_url(stack.broker_url)
    assert broker.llen("monitor") == 0
    assert broker.hlen("unacked") == 0  # acknowledged, not waiting to be restored

    with stack.client() as client:
        listed = client.get("/v1/admin/dead-letters")
        assert listed.status_code == 200, listed.text
        rows = sorted(listed.json()["dead_letters"], key=lambda r: r["patient_id"])
        assert [
            (r["task"], r["reason"], r["attempts"], r["patient_id"], r["error"]) for r in rows
        ] == [
            (
                "monitor.process_patient",
                "poison_message",
                1,
                "../not a patient id",
                # described, not quoted: a malformed id may be anything (issue 11)
                "PoisonMessageError: not a patient id: a str of 19 characters",
            ),
            (
                "monitor.process_patient",
                "poison_message",
                1,
                "{'x': 1}",
                "PoisonMessageError: not a patient id: a dict of 8 characters",
            ),
        ]

        # the workers go on with real work
        events = synthetic_events(patients=10, events_per_patient=6, seed=4)
        post_batches(client, events, batch_size=20)
    wait_processed(engine, len(events), 30, stack.diagnostics)
    assert current_decisions(engine) == evaluate_stored(engine)
    assert scalar(engine, "SELECT count(*) FROM dead_letter") == 2
    assert scalar(engine, "SELECT count(*) FROM outbox WHERE dead_letter_id IS NOT NULL") == 0
    # the workers' /metrics count it all (the tasks ran in their prefork pool children)
    assert stack.worker_counter("monitor_dead_lettered_total") == 2
    assert stack.worker_counter("monitor_tasks_failed_total") == 2
    assert stack.worker_counter("monitor_events_processed_total") == len(events)
    engine.dispose()
