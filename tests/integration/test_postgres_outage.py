"""PostgreSQL unavailable for a few seconds while tasks run: they retry with backoff and
succeed; nothing is dead-lettered and every accepted event is processed.

The database is a throwaway cluster (initdb into a temp dir, `pg_ctl start` on a free port), so
stopping it touches nothing else. No scheduler runs here: the tasks' own retries (backoff
0.5 s doubling, 5 retries: at least about 7.7 s in all) must carry the work over the outage.
"""

from __future__ import annotations

import re
import time

from tests.integration.conftest import (
    OutboxCounts,
    StackFactory,
    ThrowawayPostgres,
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

OUTAGE_S = 3.0
RETRIED = re.compile(r'"message": "transient error, retrying", "attempt": (\d+)')


def test_postgres_down_for_seconds_tasks_retry_and_succeed(make_stack: StackFactory) -> None:
    database = ThrowawayPostgres()
    try:
        database.start()
        stack = make_stack("pg-outage", database_url=database.url)
        stack.start(workers=2, scheduler=False)
        events = synthetic_events(patients=200, events_per_patient=5, seed=9)
        engine = db_engine(database.url)
        with stack.client() as client:
            post_batches(client, events, batch_size=500)

        def some_processed() -> OutboxCounts | None:
            counts = outbox_counts(engine)
            return counts if counts.open < counts.total else None

        at_stop = wait_until(some_processed, 30, "the workers to start processing", interval=0.01)
        database.stop("fast")
        assert at_stop.open > 0, at_stop  # stopped while there is work left
        stopped = time.monotonic()
        engine.dispose()

        def retrying() -> bool:
            return any(RETRIED.search(w.output()) for w in stack.workers)

        wait_until(retrying, OUTAGE_S, "a task to hit the outage and retry")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))  # the outage itself
        database.start()

        wait_processed(engine, len(events), 90, stack.diagnostics)
        assert scalar(engine, "SELECT count(*) FROM dead_letter") == 0
        assert current_decisions(engine) == evaluate_stored(engine)
        logs = "".join(w.output() for w in stack.workers)
        attempts = [int(a) for a in RETRIED.findall(logs)]
        assert attempts, "no task retried"
        assert max(attempts) < 6  # within the bound (task_max_retries 5): nothing gave up
        assert "work dead-lettered" not in logs
        engine.dispose()
    finally:
        database.close()
