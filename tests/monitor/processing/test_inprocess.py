"""The embedded mode's worker thread (monitor/inprocess.py): the same retry and dead-letter
rules as the Celery task, one patient at a time, and `wait_idle` that means it."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

import monitor.processing.inprocess
from monitor.ingest.service import store_events
from monitor.processing.inprocess import InProcessWorker
from monitor.processing.jobs import run_process_patient
from monitor.processing.service import ProcessOutcome
from monitor.services import Services
from tests.common import factories as f
from tests.common.service import rows
from tests.conftest import FIXED_NOW


class Scripted:
    """Stands in for `run_process_patient`: raises what it is given, in turn, then runs the
    real one; records every call's patient id."""

    def __init__(self, *failures: BaseException, delay: float = 0.0) -> None:
        self.failures = list(failures)
        self.delay = delay
        self.calls: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, services: Services, patient_id: Any) -> ProcessOutcome:
        with self.lock:
            self.calls.append(patient_id)
            failure = self.failures.pop(0) if self.failures else None
        time.sleep(self.delay)
        if failure is not None:
            raise failure
        return run_process_patient(services, patient_id)


def transient() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception("database is locked"))


@pytest.fixture
def stored(services: Services) -> list[str]:
    bodies = [f.enrollment(patient=p, event_id=f"{p}-e0") for p in ("W1", "W2")]
    return store_events(services.sessions, f.events(*bodies), FIXED_NOW).patients


def open_outbox(services: Services) -> int:
    return int(
        rows(services, "SELECT count(*) AS n FROM outbox WHERE processed_at IS NULL")[0]["n"]
    )


def dead_letters(services: Services) -> list[dict[str, Any]]:
    return rows(services, "SELECT patient_id, reason, attempts, error FROM dead_letter")


def test_enqueued_patients_are_processed(
    services: Services, worker: InProcessWorker, stored: list[str]
) -> None:
    assert worker.enqueue(stored) == 2
    assert worker.wait_idle()
    assert open_outbox(services) == 0
    assert rows(services, "SELECT count(*) AS n FROM decision") == [{"n": 4}]
    assert worker.ping()


def test_transient_errors_are_retried(
    services: Services,
    worker: InProcessWorker,
    stored: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scripted = Scripted(transient(), transient())
    monkeypatch.setattr(monitor.processing.inprocess, "run_process_patient", scripted)
    worker.enqueue(["W1"])
    assert worker.wait_idle()
    assert scripted.calls == ["W1", "W1", "W1"]
    assert dead_letters(services) == []
    assert rows(services, "SELECT count(*) AS n FROM outbox WHERE processed_at IS NULL") == [
        {"n": 1}  # W2's, never enqueued
    ]


def test_retries_are_bounded_then_dead_lettered(
    services: Services,
    worker: InProcessWorker,
    stored: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bound = services.settings.task_max_retries
    scripted = Scripted(*[transient() for _ in range(bound + 5)])
    monkeypatch.setattr(monitor.processing.inprocess, "run_process_patient", scripted)
    worker.enqueue(["W1"])
    assert worker.wait_idle()
    assert scripted.calls == ["W1"] * (bound + 1)
    [dead] = dead_letters(services)
    assert (dead["patient_id"], dead["reason"], dead["attempts"]) == (
        "W1",
        "retries_exhausted",
        bound + 1,
    )
    assert dead["error"].startswith("OperationalError: ")
    parked = rows(services, "SELECT patient_id FROM outbox WHERE dead_letter_id IS NOT NULL")
    assert parked == [{"patient_id": "W1"}]


def test_other_errors_are_dead_lettered_at_once(
    services: Services,
    worker: InProcessWorker,
    stored: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scripted = Scripted(ValueError("a defect"))
    monkeypatch.setattr(monitor.processing.inprocess, "run_process_patient", scripted)
    worker.enqueue(["W1", "bad id"])
    assert worker.wait_idle()
    assert scripted.calls == ["W1", "bad id"]
    assert dead_letters(services) == [
        {
            "patient_id": "W1",
            "reason": "processing_error",
            "attempts": 1,
            "error": "ValueError",  # its message may quote data: the type only (issue 11)
        },
        {
            "patient_id": "bad id",
            "reason": "poison_message",
            "attempts": 1,
            "error": "PoisonMessageError: not a patient id: a str of 6 characters",
        },
    ]
    # The worker goes on with the next work after a dead letter.
    worker.enqueue(["W2"])
    assert worker.wait_idle()
    assert rows(services, "SELECT count(*) AS n FROM decision WHERE patient_id = 'W2'") == [
        {"n": 2}
    ]


def test_a_patient_queued_while_waiting_is_processed_once(
    services: Services,
    worker: InProcessWorker,
    stored: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scripted = Scripted(delay=0.2)
    monkeypatch.setattr(monitor.processing.inprocess, "run_process_patient", scripted)
    worker.enqueue(["W1"])
    time.sleep(0.05)  # W1 is running now
    for _ in range(10):
        worker.enqueue(["W2", "W1"])
    assert worker.wait_idle()
    # W1 once running and once more for what arrived meanwhile; W2 once.
    assert sorted(scripted.calls) == ["W1", "W1", "W2"]


def test_wait_idle_waits_for_a_patient_just_taken_off_the_queue(
    services: Services, stored: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the thread's `get()` and the start of the work the worker is not idle (the
    gap is widened here: clearing the patient's pending mark takes 0.3 s)."""

    class SlowPending(set[str]):
        def discard(self, value: str) -> None:
            time.sleep(0.3)
            super().discard(value)

    worker = InProcessWorker(services)
    worker._pending = SlowPending()
    services.dispatcher = worker
    worker.start()
    try:
        worker.enqueue(["W1"])
        time.sleep(0.15)  # taken off the queue, flag not raised yet
        assert not worker.idle()
        assert worker.wait_idle()
        assert open_outbox(services) == 1  # W1 done, W2 never enqueued
    finally:
        worker.stop()


def test_wait_idle_gives_up_after_its_timeout(
    services: Services,
    worker: InProcessWorker,
    stored: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(monitor.processing.inprocess, "run_process_patient", Scripted(delay=0.5))
    worker.enqueue(["W1"])
    started = time.monotonic()
    assert worker.wait_idle(timeout=0.1) is False
    assert time.monotonic() - started < 0.4
    assert worker.wait_idle()


def test_stop_ends_the_thread_and_leaves_work_in_the_outbox(
    services: Services, stored: list[str]
) -> None:
    worker = InProcessWorker(services)
    worker.start()
    assert worker.ping()
    worker.stop(timeout=2)
    assert not worker.ping()
    worker.enqueue(["W1", "W2"])  # nobody runs it: the outbox keeps it for the re-drive
    time.sleep(0.2)
    assert open_outbox(services) == 2
    assert not worker.idle()
