"""The Celery path (issue 3, item 3) with a real worker thread: `create_celery` on the
in-process `memory://` broker, `start_worker(pool="solo")`, `CeleryDispatcher` as the API's
dispatcher. Retries of transient errors, the dead letter after the bound, poison messages, and
the admin's retry over HTTP.

One worker serves the module (starting and stopping one takes seconds, STACK-NOTES.md); each
test points it at its own database through `Holder`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

import monitor.processing.jobs
from monitor.app import create_app
from monitor.auth.roles import Role
from monitor.processing.jobs import TASK_NAME
from monitor.processing.service import ProcessOutcome
from monitor.services import Services
from monitor.settings import Settings
from tests.common import factories as f
from tests.common.factories import at
from tests.common.service import Api, eventually, expected_decisions, rows
from tests.conftest import FIXED_NOW
from workers.app import CeleryDispatcher, create_celery

MAX_RETRIES = 5  # above Celery's own default of 3: our bound must be the one applied


class Holder:
    """What the module's worker uses for its next task: the current test's services."""

    services: Services | None = None

    def __call__(self) -> Services:
        assert self.services is not None, "a task arrived between tests"
        return self.services


@pytest.fixture(scope="module")
def celery_worker() -> Iterator[tuple[Celery, Holder]]:
    holder = Holder()
    app = create_celery(
        Settings(broker_url="memory://", database_url="sqlite://", fixed_now=FIXED_NOW), holder
    )
    app.conf.broker_transport_options = {"visibility_timeout": 3600, "polling_interval": 0.01}
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        yield app, holder


@pytest.fixture
def celery_services(services: Services, celery_worker: tuple[Celery, Holder]) -> Iterator[Services]:
    app, holder = celery_worker
    services.settings = services.settings.model_copy(
        update={
            "task_max_retries": MAX_RETRIES,
            "task_retry_backoff_s": 0.01,
            "task_retry_backoff_max_s": 0.05,
        }
    )
    services.dispatcher = CeleryDispatcher(app)
    holder.services = services
    yield services
    holder.services = None
    services.dispatcher = None


@pytest.fixture
def api(celery_services: Services, tokens: dict[Role, str]) -> Iterator[Api]:
    with TestClient(create_app(celery_services)) as client:
        yield Api(client, tokens)


def open_outbox(services: Services) -> int:
    [row] = rows(services, "SELECT count(*) AS n FROM outbox WHERE processed_at IS NULL")
    return int(row["n"])


def dead_letters(services: Services) -> list[dict[str, Any]]:
    return rows(services, "SELECT * FROM dead_letter ORDER BY id")


class Flaky:
    """Stands in for `process_patient`: raises OperationalError `failures` times, then runs
    the real one. Counts calls, so a test can tell a retry from a loop."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.lock = threading.Lock()
        self.real = monitor.processing.jobs.process_patient

    def __call__(self, *args: Any, **kwargs: Any) -> ProcessOutcome:
        with self.lock:
            self.calls += 1
            failing = self.calls <= self.failures
        if failing:
            raise OperationalError("SELECT 1", {}, Exception("database restarting"))
        return self.real(*args, **kwargs)


TIMELINE = [
    f.enrollment(at(0), event_id="c-e0"),
    f.assessment(at(21), event_id="c-a21", sensory=1),
    f.assessment(at(42), event_id="c-a42", sensory=2, pain=1),
]


def test_events_posted_are_processed_by_the_celery_worker(
    api: Api, celery_services: Services
) -> None:
    response = api.post_events({"events": TIMELINE})
    assert response.status_code == 202
    eventually(lambda: open_outbox(celery_services) == 0, what="outbox processed")
    assert api.decisions("P1") == expected_decisions(celery_services.pack, TIMELINE, FIXED_NOW)
    assert dead_letters(celery_services) == []
    assert api.get("/readyz", role=None).json() == {
        "ready": True,
        "database": "ok",
        "queue": "ok",
    }


def test_a_transient_error_is_retried_then_succeeds(
    api: Api, celery_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = Flaky(failures=2)
    monkeypatch.setattr(monitor.processing.jobs, "process_patient", flaky)
    assert api.post_events({"events": TIMELINE}).status_code == 202
    eventually(lambda: open_outbox(celery_services) == 0, what="outbox processed")
    assert flaky.calls == 3  # two failures, then the success
    assert dead_letters(celery_services) == []
    assert api.decisions("P1") == expected_decisions(celery_services.pack, TIMELINE, FIXED_NOW)


def test_always_transient_is_dead_lettered_after_the_bound(
    api: Api, celery_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = Flaky(failures=10**6)
    monkeypatch.setattr(monitor.processing.jobs, "process_patient", flaky)
    assert api.post_events({"events": TIMELINE}).status_code == 202
    eventually(lambda: len(dead_letters(celery_services)) == 1, what="a dead letter")
    [dead] = dead_letters(celery_services)
    assert dead["reason"] == "retries_exhausted"
    assert dead["patient_id"] == "P1"
    assert dead["task"] == TASK_NAME
    assert dead["attempts"] == MAX_RETRIES + 1
    # described without the statement or its parameters (issue 11: no patient data)
    assert dead["error"] == "OperationalError: Exception: database restarting"
    time.sleep(0.3)  # nothing runs again by itself
    assert flaky.calls == MAX_RETRIES + 1
    # The patient's outbox rows are parked on the dead letter, not left for the re-drive.
    outbox = rows(celery_services, "SELECT processed_at, dead_letter_id FROM outbox")
    assert outbox == [{"processed_at": None, "dead_letter_id": dead["id"]}] * len(TIMELINE)
    assert rows(celery_services, "SELECT count(*) AS n FROM decision") == [{"n": 0}]


@pytest.mark.parametrize(
    ("argument", "shown"),
    [({"not": "an id"}, "{'not': 'an id'}"), ("P 1", "P 1"), (None, "None"), ("", "")],
    ids=["object", "space", "null", "empty"],
)
def test_a_poison_message_is_dead_lettered_once(
    celery_services: Services,
    celery_worker: tuple[Celery, Holder],
    monkeypatch: pytest.MonkeyPatch,
    argument: Any,
    shown: str,
) -> None:
    app, _holder = celery_worker
    flaky = Flaky(failures=0)
    monkeypatch.setattr(monitor.processing.jobs, "process_patient", flaky)
    app.send_task(TASK_NAME, args=[argument])
    eventually(lambda: len(dead_letters(celery_services)) == 1, what="a dead letter")
    time.sleep(0.3)
    [dead] = dead_letters(celery_services)
    assert dead["reason"] == "poison_message"
    assert dead["patient_id"] == shown
    assert dead["attempts"] == 1
    assert dead["error"].startswith("PoisonMessageError: not a patient id")
    assert flaky.calls == 0  # never reached the database work, never retried


def test_admin_lists_dead_letters_and_retry_reprocesses(
    api: Api, celery_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = Flaky(failures=10**6)
    monkeypatch.setattr(monitor.processing.jobs, "process_patient", flaky)
    assert api.post_events({"events": TIMELINE}).status_code == 202
    eventually(lambda: len(dead_letters(celery_services)) == 1, what="a dead letter")
    [dead] = dead_letters(celery_services)

    listed = api.get("/v1/admin/dead-letters", role="admin")
    assert listed.status_code == 200
    [entry] = listed.json()["dead_letters"]
    assert entry == {
        "id": dead["id"],
        "task": TASK_NAME,
        "patient_id": "P1",
        "reason": "retries_exhausted",
        "error": dead["error"],
        "attempts": MAX_RETRIES + 1,
        "created_at": "2026-10-01T12:00:00Z",
        "retried_at": None,
        "event_id": None,  # a database outage: no event to blame
    }

    flaky.failures = 0  # the database is back
    calls_before = flaky.calls
    retried = api.client.post(
        f"/v1/admin/dead-letters/{dead['id']}/retry", headers=api.headers("admin")
    )
    assert retried.status_code == 202
    assert retried.json() == {"dead_letter_id": dead["id"], "status": "requeued"}
    eventually(lambda: open_outbox(celery_services) == 0, what="outbox processed")
    assert flaky.calls == calls_before + 1
    assert api.decisions("P1") == expected_decisions(celery_services.pack, TIMELINE, FIXED_NOW)
    assert rows(celery_services, "SELECT dead_letter_id FROM outbox") == [
        {"dead_letter_id": None}
    ] * len(TIMELINE)
    # Retried letters leave the default list and stay visible with include_retried.
    assert api.get("/v1/admin/dead-letters", role="admin").json() == {"dead_letters": []}
    [again] = api.get("/v1/admin/dead-letters", role="admin", include_retried="true").json()[
        "dead_letters"
    ]
    assert again["retried_at"] == "2026-10-01T12:00:00Z"
    missing = api.client.post("/v1/admin/dead-letters/999/retry", headers=api.headers("admin"))
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no dead letter 999"}


def test_an_unreachable_broker_leaves_the_work_in_the_outbox(
    services: Services, tokens: dict[Role, str]
) -> None:
    """Enqueue fails (nothing listens on the port): 202 all the same, outbox row open,
    readiness says the queue is unreachable."""
    app = create_celery(
        Settings(broker_url="redis://127.0.0.1:1/0", database_url="sqlite://", fixed_now=FIXED_NOW)
    )
    app.conf.broker_connection_timeout = 0.2
    app.conf.broker_connection_retry = False
    services.dispatcher = CeleryDispatcher(app)
    with TestClient(create_app(services)) as client:
        api = Api(client, tokens)
        started = time.monotonic()
        response = api.post_events(TIMELINE[0])
        assert response.status_code == 202
        assert response.json()["accepted"] == 1
        assert open_outbox(services) == 1
        ready = api.get("/readyz", role=None)
        assert ready.status_code == 503
        assert ready.json() == {"ready": False, "database": "ok", "queue": "unreachable"}
        assert time.monotonic() - started < 20
