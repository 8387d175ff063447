"""Celery's own tools against the production topology: `celery -A workers.app ...` finds the
service's app (configured from the same MONITOR_* environment as the processes), so
`celery -A workers.app inspect ping` answers from running workers (what operators and Flower
use), a worker started as `celery -A workers.app worker` does the service's work and logs as
`python -m monitor worker` does, and with MONITOR_TASK_EVENTS the processes send the task
events Flower reads, with no patient id in them.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from monitor.processing.jobs import TASK_NAME
from monitor.settings import Settings
from tests.common import factories as f
from tests.integration.conftest import (
    ManagedProcess,
    Stack,
    StackFactory,
    current_decisions,
    db_engine,
    evaluate_stored,
    post_batches,
    wait_processed,
    wait_until,
)
from workers.app import MASKED_ARGS, create_celery

PATIENT = "PCLI-EVENTS-0042"  # must appear in no event and no log line


def celery_command(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`celery -A workers.app ARGS` with the stack's environment, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", *args],
        env=stack.env,
        cwd=stack.workdir,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def celery_worker(stack: Stack, name: str, *args: str) -> ManagedProcess:
    """A worker started with Celery's own command, stopped with the stack."""
    proc = ManagedProcess(
        f"{stack.name}-{name}",
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", *args],
        stack.env,
        stack.workdir,
        stack.log_dir,
    )
    stack.processes.append(proc)
    stack.wait_worker(proc)
    return proc


def json_records(proc: ManagedProcess) -> list[dict[str, Any]]:
    """The process's structured log records (its other output: Celery's start-up banner)."""
    found = []
    for line in proc.output().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
    return found


class BrokerEvents:
    """The Celery events on a broker, received as Flower receives them (a thread)."""

    def __init__(self, stack: Stack) -> None:
        self.app = create_celery(
            Settings(broker_url=stack.broker_url, database_url=stack.database_url)
        )
        self.seen: list[dict[str, Any]] = []
        self.failure: BaseException | None = None
        self._lock = threading.Lock()
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="celery-events")

    def _record(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.seen.append(event)

    def _run(self) -> None:
        try:
            with self.app.connection_for_read() as connection:
                self._receiver = self.app.events.Receiver(connection, handlers={"*": self._record})
                self._receiver.capture(limit=None, timeout=None, wakeup=False)
        except BaseException as exc:  # noqa: BLE001  # reported by the test
            self.failure = exc

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.seen if e.get("type") in types]

    @contextmanager
    def running(self) -> Iterator[BrokerEvents]:
        self._thread.start()
        try:
            yield self
        finally:
            if self._receiver is not None:
                self._receiver.should_stop = True
            self._thread.join(10)


def test_celery_inspect_ping_answers_from_the_running_workers(make_stack: StackFactory) -> None:
    stack = make_stack("inspect")
    stack.start(workers=1, webhook_workers=1)  # `python -m monitor worker`, each queue
    nodes = [f"monitor-{w.popen.pid}@" for w in (*stack.workers, *stack.webhook_workers)]

    ping = celery_command(stack, "inspect", "ping", "--timeout", "5")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    for node in nodes:
        assert f"->  {node}" in ping.stdout, ping.stdout
    assert ping.stdout.count("pong") == 2, ping.stdout
    assert "2 nodes online." in ping.stdout, ping.stdout

    queues = celery_command(stack, "inspect", "active_queues", "--timeout", "5")
    assert queues.returncode == 0, queues.stdout + queues.stderr
    assert "'name': 'monitor'" in queues.stdout
    assert "'name': 'webhooks'" in queues.stdout


def test_a_celery_cli_worker_does_the_work_and_sends_task_events(
    make_stack: StackFactory,
) -> None:
    stack = make_stack("celerycli", extra_env={"MONITOR_TASK_EVENTS": "true"})
    stack.start(workers=0, webhook_workers=0)  # the api only: its dispatcher sends task-sent
    engine = db_engine(stack.database_url)
    events = BrokerEvents(stack)
    with events.running():
        worker = celery_worker(
            stack,
            "celery-worker",
            "--queues",
            "monitor,webhooks",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            "cli-worker@%h",
        )
        # the receiver is subscribed once the worker's heartbeats come through
        wait_until(
            lambda: events.of_type("worker-heartbeat") or events.failure,
            30,
            "a worker heartbeat on the broker",
            diagnostics=stack.diagnostics,
        )
        assert events.failure is None, events.failure

        timeline = [
            f.enrollment(f.at(0), patient=PATIENT, event_id="cli-e0"),
            f.assessment(f.at(21), patient=PATIENT, event_id="cli-a21", sensory=2, pain=1),
        ]
        with stack.client() as client:
            post_batches(client, timeline, batch_size=len(timeline))
        wait_processed(engine, len(timeline), 60, stack.diagnostics)
        assert current_decisions(engine) == evaluate_stored(engine)
        wait_until(
            lambda: events.of_type("task-succeeded"),
            30,
            "the task-succeeded event",
            diagnostics=stack.diagnostics,
        )

        ping = celery_command(stack, "inspect", "ping", "--timeout", "5")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert "->  cli-worker@" in ping.stdout, ping.stdout

    task_events = events.of_type("task-sent", "task-received", "task-started", "task-succeeded")
    kinds = {e["type"] for e in task_events}
    assert kinds == {"task-sent", "task-received", "task-started", "task-succeeded"}
    sent = events.of_type("task-sent")
    assert [(e["name"], e["args"]) for e in sent] == [(TASK_NAME, MASKED_ARGS)]  # from the api
    [received] = events.of_type("task-received")
    assert received["hostname"].startswith("cli-worker@")
    assert received["args"] == MASKED_ARGS
    assert PATIENT not in json.dumps(events.seen)

    # the worker's logs are the service's: JSON lines (sanitised), no patient id
    records = json_records(worker)
    [ready] = [r for r in records if str(r.get("message")).endswith(" ready.")]
    assert (ready["level"], ready["name"]) == ("INFO", "celery.apps.worker")
    assert any(str(r.get("message")).startswith(f"Task {TASK_NAME}[") for r in records)
    assert PATIENT not in worker.output()
    engine.dispose()
