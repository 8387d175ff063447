"""`workers.app` as Celery's own tools see it: the module-level app `celery -A workers.app` finds,
configured from the environment and connecting nowhere at import; the module-level tasks every
app gets; `ServiceTask`, which builds a worker process's services once (after the fork) and
reuses them; and the task-events setting (Flower, `celery events`).

The real worker on a real broker, `celery -A workers.app inspect ping` and the events it sends:
tests/integration/test_celery_inspect.py.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery
from celery.app.utils import find_app
from celery.signals import celeryd_init
from starlette.testclient import TestClient

import monitor.operations.logsafe
import workers.app
from monitor.app import create_app
from monitor.auth.roles import Role
from monitor.processing.jobs import TASK_NAME
from monitor.services import Services
from monitor.settings import Settings
from monitor.webhooks.delivery import TASK_NAME as DELIVER_TASK_NAME
from tests.common import factories as f
from tests.common.factories import at
from tests.common.service import Api, expected_decisions, rows
from tests.conftest import FIXED_NOW
from workers.app import (
    MASKED_ARGS,
    CeleryDispatcher,
    MonitorCelery,
    ServiceTask,
    create_celery,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUR_TASKS = (TASK_NAME, DELIVER_TASK_NAME)


class CountingBuild:
    """Stands in for `workers.app.build_services`: the real one, counted."""

    def __init__(self) -> None:
        self.real = workers.app.build_services
        self.built: list[Services] = []

    def __call__(self, settings: Settings) -> Services:
        services = self.real(settings)
        self.built.append(services)
        return services


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingBuild]:
    counting = CountingBuild()
    monkeypatch.setattr(workers.app, "build_services", counting)
    yield counting
    for services in counting.built:
        services.close()


@pytest.fixture
def worker_settings(sqlite_settings: Settings) -> Settings:
    """The test's database (migrated by the `services` fixture), the in-process broker."""
    return sqlite_settings.model_copy(update={"broker_url": "memory://"})


# --- the app `celery -A workers.app` finds -------------------------------------------------


def test_celery_dash_a_finds_the_module_level_app_with_the_tasks() -> None:
    found = find_app("workers.app")  # what `celery -A workers.app ...` (and Flower) load
    assert found is workers.app.celery
    assert isinstance(found, MonitorCelery)
    for name in OUR_TASKS:  # the names queued messages carry: a contract
        task = found.tasks[name]
        assert isinstance(task, ServiceTask)
        assert task.app is found
        assert task.acks_late
        assert task.reject_on_worker_lost
    assert found.tasks[TASK_NAME].max_retries == 3  # retry(max_retries=...) gives the bound
    assert found.tasks[DELIVER_TASK_NAME].max_retries is None  # the delivery row's count
    assert found.conf.task_routes == {DELIVER_TASK_NAME: {"queue": "webhooks"}}
    assert found.conf.task_default_queue == "monitor"


def test_importing_workers_app_reads_the_environment_and_connects_nowhere() -> None:
    """Nothing listens on port 1: an import that connected would fail or hang."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env |= {
        "MONITOR_BROKER_URL": "redis://127.0.0.1:1/3",
        "MONITOR_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "MONITOR_TASK_EVENTS": "true",
        "MONITOR_TASK_MAX_RETRIES": "7",
    }
    script = (
        "import json, workers.app as w\n"
        "app = w.celery\n"
        "print(json.dumps({'broker': app.conf.broker_url,\n"
        "  'events': [app.conf.worker_send_task_events, app.conf.task_send_sent_event],\n"
        "  'retries': app.settings.task_max_retries,\n"
        "  'built': app.process_services is not None,\n"
        "  'tasks': sorted(t for t in app.tasks if t.startswith('monitor.'))}))\n"
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "broker": "redis://127.0.0.1:1/3",
        "events": [True, True],
        "retries": 7,
        "built": False,
        "tasks": sorted(OUR_TASKS),
    }
    assert time.monotonic() - started < 30


def test_every_app_gets_its_own_instances_of_the_same_tasks(worker_settings: Settings) -> None:
    first, second = create_celery(worker_settings), create_celery(worker_settings)
    for name in OUR_TASKS:
        mine, theirs = first.tasks[name], second.tasks[name]
        assert mine is not theirs
        assert (mine.app, theirs.app) == (first, second)
        assert mine.run.__func__ is theirs.run.__func__  # one function, at module level
    assert OUR_TASKS[0] not in Celery("elsewhere", set_as_current=False).tasks  # shared=False


# --- ServiceTask -------------------------------------------------------------------------


def test_services_are_built_on_first_use_once_per_process_and_reused(
    services: Services, worker_settings: Settings, builds: CountingBuild
) -> None:
    app = create_celery(worker_settings)
    app.finalize()
    process, deliver = app.tasks[TASK_NAME], app.tasks[DELIVER_TASK_NAME]
    assert builds.built == []  # not at import, not with the app: in the worker process

    first = process.services
    assert builds.built == [first]
    assert process.services is first
    assert deliver.services is first  # one engine per process for both tasks
    assert first.settings is worker_settings
    assert isinstance(first.dispatcher, CeleryDispatcher)  # the alerts' deliveries: the broker
    assert first.dispatcher._app is app

    # a pool process forked after the build (another pid) builds its own, once
    real_pid = os.getpid()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "getpid", lambda: real_pid + 1)
        child = deliver.services
        assert child is not first
        assert process.services is child
    assert builds.built == [first, child]

    # another app in the same process has its own
    other = create_celery(worker_settings).tasks[TASK_NAME].services
    assert other is not first
    assert len(builds.built) == 3


def test_services_given_to_create_celery_are_asked_at_every_run(
    services: Services, worker_settings: Settings, builds: CountingBuild
) -> None:
    given: list[Services] = [services]
    app = create_celery(worker_settings, lambda: given[-1])
    task = app.tasks[TASK_NAME]
    assert task.services is services
    replacement: Any = SimpleNamespace()  # the next test's services (the tests' Holder)
    given.append(replacement)
    assert task.services is replacement
    assert builds.built == []


def test_the_tasks_run_with_the_services_they_built(
    services: Services,
    worker_settings: Settings,
    builds: CountingBuild,
    tokens: dict[Role, str],
) -> None:
    """What a worker of `celery -A workers.app worker` does: no services handed in."""
    timeline = [
        f.enrollment(at(0), event_id="w-e0"),
        f.assessment(at(21), event_id="w-a21", sensory=2, pain=1),
    ]
    with TestClient(create_app(services)) as client:  # no dispatcher: the outbox stays open
        api = Api(client, tokens)
        assert api.post_events({"events": timeline}).status_code == 202
        app = create_celery(worker_settings)
        outcome = app.tasks[TASK_NAME].apply(args=["P1"], argsrepr=MASKED_ARGS).get()
        assert outcome["inserted"] > 0
        assert api.decisions("P1") == expected_decisions(services.pack, timeline, FIXED_NOW)
    assert rows(services, "SELECT count(*) AS n FROM outbox WHERE processed_at IS NULL") == [
        {"n": 0}
    ]
    assert app.tasks[DELIVER_TASK_NAME].apply(args=["not-an-id"]).get() == "invalid"
    assert len(builds.built) == 1


def test_a_worker_of_the_service_starts_as_the_service_command_does(
    worker_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`celery -A workers.app worker` too: JSON on stderr, tracebacks sanitised (the same
    `configure_logging` as `python -m monitor worker`), a broker required; other apps' workers
    are left alone."""
    configured: list[Settings] = []
    monkeypatch.setattr(monitor.operations.logsafe, "configure_logging", configured.append)
    app = create_celery(worker_settings)
    celeryd_init.send(sender="w@host", instance=SimpleNamespace(app=app), conf=app.conf)
    assert configured == [worker_settings]
    other = Celery("elsewhere", set_as_current=False)
    celeryd_init.send(sender="w@host", instance=SimpleNamespace(app=other), conf=other.conf)
    assert configured == [worker_settings]
    # without a broker (an in-memory one, consuming nothing) it refuses, as the command does
    brokerless = create_celery(worker_settings.model_copy(update={"broker_url": None}))
    with pytest.raises(SystemExit, match="MONITOR_BROKER_URL is required"):
        celeryd_init.send(sender="w@host", instance=SimpleNamespace(app=brokerless), conf={})
    assert configured == [worker_settings]


# --- task events -------------------------------------------------------------------------


def test_task_events_are_off_by_default_and_follow_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().task_events is False
    off = create_celery(Settings(broker_url="memory://", database_url="sqlite://"))
    assert (off.conf.worker_send_task_events, off.conf.task_send_sent_event) == (False, False)
    on = create_celery(Settings(broker_url="memory://", database_url="sqlite://", task_events=True))
    assert (on.conf.worker_send_task_events, on.conf.task_send_sent_event) == (True, True)
    monkeypatch.setenv("MONITOR_TASK_EVENTS", "true")
    assert Settings().task_events is True
    assert "Flower" in (Settings.model_fields["task_events"].description or "")


def sent_events(app: Celery, wait_s: float) -> list[dict[str, Any]]:
    """The events seen on the broker while a task is published (what Flower would see)."""
    seen: list[dict[str, Any]] = []
    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": seen.append})
        ready = threading.Event()
        consume_ready = receiver.on_consume_ready

        def on_consume_ready(*args: Any, **kwargs: Any) -> None:
            consume_ready(*args, **kwargs)
            ready.set()

        receiver.on_consume_ready = on_consume_ready
        thread = threading.Thread(
            target=receiver.capture, kwargs={"wakeup": False}, daemon=True, name="events"
        )
        thread.start()
        assert ready.wait(10), "the event receiver did not start"
        app.send_task(TASK_NAME, args=["P-EVENTS-7"], argsrepr=MASKED_ARGS, queue="events-test")
        deadline = time.monotonic() + wait_s
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        receiver.should_stop = True
        thread.join(10)
    return seen


@pytest.mark.parametrize("enabled", [True, False], ids=["on", "off"])
def test_publishing_sends_a_task_sent_event_only_when_enabled(enabled: bool) -> None:
    app = create_celery(
        Settings(broker_url="memory://", database_url="sqlite://", task_events=enabled)
    )
    seen = sent_events(app, wait_s=5 if enabled else 0.5)
    if not enabled:
        assert seen == []
        return
    [event] = seen
    assert (event["type"], event["name"], event["args"]) == ("task-sent", TASK_NAME, MASKED_ARGS)
    assert "P-EVENTS-7" not in json.dumps(event)  # the patient id stays out of the events
