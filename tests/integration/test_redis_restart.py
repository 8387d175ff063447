"""Redis restarted during ingest: accepted events are durable in PostgreSQL, so they are all
processed once the broker is back (the scheduler's outbox re-drive sends what was lost).

The broker is a throwaway `redis-server --save "" --appendonly no`: stopping it loses every
queued message, and while it is down the API must still answer 202 (the enqueue failure is
logged, not raised).
"""

from __future__ import annotations

import pathlib
import time

from tests.integration.conftest import (
    StackFactory,
    ThrowawayRedis,
    current_decisions,
    db_engine,
    evaluate_stored,
    post_batches,
    scalar,
    synthetic_events,
    wait_processed,
)

BATCH = 20


def test_redis_restarted_during_ingest_every_accepted_event_is_processed(
    make_stack: StackFactory, tmp_path: pathlib.Path
) -> None:
    broker = ThrowawayRedis(tmp_path)
    broker.start()
    try:
        stack = make_stack("redis-restart", broker_url=broker.url)
        stack.start(workers=2, scheduler=True)
        events = synthetic_events(patients=60, events_per_patient=10, seed=5)
        before, during, after = events[:200], events[200:400], events[400:]
        engine = db_engine(stack.database_url)
        with stack.client() as client:
            post_batches(client, before, BATCH)
            broker.stop()
            stopped = time.monotonic()
            # Broker down: still 202 for every batch (durable in PostgreSQL), each promptly.
            for response in post_batches(client, during, BATCH):
                assert response.elapsed.total_seconds() < 10
            assert "enqueue failed; the outbox re-drive will retry" in stack.api.output()
            assert scalar(engine, "SELECT count(*) FROM outbox WHERE processed_at IS NULL") > 0
            assert time.monotonic() - stopped > 1  # a real outage, not a blip
            broker.start()  # same port, empty: every message queued before the stop is gone
            post_batches(client, after, BATCH)
        wait_processed(engine, len(events), 90, stack.diagnostics)

        assert scalar(engine, "SELECT count(*) FROM dead_letter") == 0
        assert current_decisions(engine) == evaluate_stored(engine)
        assert "outbox re-driven" in stack.scheduler.output()
        engine.dispose()
    finally:
        broker.close()
