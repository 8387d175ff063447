"""The Celery app (production): Redis broker, JSON only, late acks, one message at a time.

Thin: a task takes an id and calls the service (`process_patient` ->
`monitor.processing.jobs.run_process_patient`: load, fold with the pure engine, persist;
`deliver_webhook` -> `monitor.webhooks.delivery.deliver`). Transient errors retry with
exponential backoff up to `task_max_retries`; then, or at once for any other error, a
dead-letter row records the reason.

The tasks are defined once, here, at module level; every app `create_celery` builds gets its own
instance of each (bound to that app), and `ServiceTask` gives a task the services of its app,
built once per worker process. `celery` below is the app `celery -A workers.app ...` finds
(`worker`, `inspect`, `flower`), configured from the MONITOR_* environment when this module is
imported; `python -m monitor worker` builds its own app from the settings it was given.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import kombu.exceptions
import redis.exceptions
from celery import Celery, Task
from celery._state import get_current_app
from celery.signals import celeryd_init

from monitor.operations import logsafe
from monitor.operations.logsafe import describe_chain
from monitor.operations.tracing import TracingSetupError, start_tracing
from monitor.processing.jobs import (
    TASK_NAME,
    DeadLetteredError,
    TransientFailureError,
    dead_letter,
    retry_delay,
    run_process_patient,
)
from monitor.services import Services, build_services
from monitor.settings import Settings, get_settings
from monitor.webhooks.delivery import TASK_NAME as DELIVER_TASK_NAME
from monitor.webhooks.delivery import deliver

log = logging.getLogger("workers")

# What a publish or a ping raises when the broker is unreachable.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.exceptions.RedisError,
    ConnectionError,
    OSError,
    TimeoutError,
)


MASKED_ARGS = "[patient]"
CLINICAL_QUEUE = "monitor"  # process_patient
WEBHOOK_QUEUE = "webhooks"  # deliver_webhook
QUEUES = (CLINICAL_QUEUE, WEBHOOK_QUEUE)


@dataclass(frozen=True)
class _ProcessServices:
    pid: int
    services: Services


class MonitorCelery(Celery):  # type: ignore[misc]  # Celery has no type hints
    """An app of the service: the settings it was configured from, which its tasks build their
    services from (`ServiceTask`), unless `services` (tests) provides them."""

    def __init__(self, settings: Settings, services: Callable[[], Services] | None = None) -> None:
        super().__init__(
            "bipn_monitor", broker=settings.broker_url or "memory://", set_as_current=False
        )
        self.settings = settings
        self.services_factory = services
        self.process_services: _ProcessServices | None = None  # ServiceTask's, in this process

    @functools.cached_property
    def queued_marks(self) -> QueuedMarks:
        return QueuedMarks(self.conf.broker_url)


def create_celery(
    settings: Settings, services: Callable[[], Services] | None = None
) -> MonitorCelery:
    """An app with the service's configuration and tasks. Nothing connects until it is used.

    Its tasks build their services from `settings`, lazily, once per worker process
    (`ServiceTask`). `services`, when given, is called at every task run instead (the tests
    hand each test's services to one long-running worker this way)."""
    app = MonitorCelery(settings, services)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=CLINICAL_QUEUE,
        # deliveries wait on receivers outside the hospital's control: their own queue and
        # their own worker processes (`worker --queues webhooks`), so no receiver can delay
        # the processing of a patient's events
        task_routes={DELIVER_TASK_NAME: {"queue": WEBHOOK_QUEUE}},
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        enable_utc=True,
        # monitoring (Flower, `celery events`): off unless MONITOR_TASK_EVENTS (Settings)
        worker_send_task_events=settings.task_events,
        task_send_sent_event=settings.task_events,
    )
    for fun, options in _TASKS:  # the module's tasks, this app's own instances of them
        app.task(**options)(fun)
    return app


class ServiceTask(Task):  # type: ignore[misc]  # Celery has no type hints
    """The base of the service's tasks: `self.services`, what a run works with.

    As pypi/warehouse's WarehouseTask finds its Pyramid registry through `self.app`, a task
    finds its services through its app (each app has its own instance of each task). They are
    built from the app's settings on first use in a worker process, so after the prefork pool
    forked (no database connection crosses a fork; a process forked later builds its own), and
    reused by every task of that app in that process. Their dispatcher publishes through the
    same app: the webhook deliveries of the alerts a run raises go to the broker.
    """

    _build_lock: ClassVar[threading.Lock] = threading.Lock()

    @property
    def services(self) -> Services:
        app: MonitorCelery = self.app
        if app.services_factory is not None:
            return app.services_factory()
        built = app.process_services
        if built is None or built.pid != os.getpid():
            with self._build_lock:  # one build per process, even with a thread pool
                built = app.process_services
                if built is None or built.pid != os.getpid():
                    services = build_services(app.settings)
                    services.dispatcher = CeleryDispatcher(app)
                    built = app.process_services = _ProcessServices(os.getpid(), services)
        return built.services


class QueuedMarks:
    """At most one queued-and-not-started task per patient (Redis brokers only).

    Under load, one task per patient per request piles up tasks that fold nothing new: the
    first run already folds every event committed before it starts. A mark (`SET NX`, expiring)
    says "a task for this patient is queued"; the task clears it before reading the outbox, so
    an event committed after that enqueues a new task. Marks are an optimisation only: if Redis
    errs, every task is sent; a lost message is re-sent by the outbox re-drive once its mark
    has expired.
    """

    TTL_S = 60

    def __init__(self, broker_url: str | None) -> None:
        redis_broker = broker_url is not None and broker_url.startswith(("redis://", "rediss://"))
        self._client = redis.Redis.from_url(broker_url) if redis_broker and broker_url else None

    @staticmethod
    def _key(patient_id: str) -> str:
        return f"bipn:queued:{patient_id}"

    def claim(self, patient_ids: list[str]) -> list[str]:
        """The patients with no task queued yet (now marked)."""
        if self._client is None:
            return patient_ids
        try:
            pipe = self._client.pipeline(transaction=False)
            for patient_id in patient_ids:
                pipe.set(self._key(patient_id), 1, nx=True, ex=self.TTL_S)
            fresh = pipe.execute()
        except redis.exceptions.RedisError:
            return patient_ids  # no dedupe: the publish reports the outage
        return [p for p, new in zip(patient_ids, fresh, strict=True) if new]

    def release(self, patient_ids: list[str]) -> None:
        if self._client is None or not patient_ids:
            return
        try:
            self._client.delete(*(self._key(p) for p in patient_ids))
        except redis.exceptions.RedisError:
            log.warning("queued marks not cleared; they expire", extra={"ttl_s": self.TTL_S})


@contextlib.contextmanager
def publishing_from(app: Celery) -> Iterator[None]:
    """`app` as this thread's current Celery app while it publishes. OpenTelemetry's Celery
    instrumentation looks the task being sent up by name in the current app (the service's apps
    are not current: `set_as_current=False`); without it, the publish span is never ended (the
    trace context still travels in the message headers)."""
    previous = get_current_app()
    app.set_current()
    try:
        yield
    finally:
        previous.set_current()


class CeleryDispatcher:
    """Publishes `process_patient(patient_id)` to the broker, after the database commit."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._marks = QueuedMarks(app.conf.broker_url)

    def enqueue(self, patient_ids: list[str]) -> int:
        sent = 0
        patient_ids = self._marks.claim(patient_ids)
        try:
            with publishing_from(self._app), self._app.producer_or_acquire() as producer:
                for patient_id in patient_ids:
                    self._app.send_task(
                        TASK_NAME,
                        args=[patient_id],
                        argsrepr=MASKED_ARGS,  # Celery logs argsrepr: no patient ids in logs
                        producer=producer,
                        retry=True,
                        retry_policy={
                            "max_retries": 2,
                            "interval_start": 0.1,
                            "interval_step": 0.2,
                            "interval_max": 0.5,
                        },
                    )
                    sent += 1
        except BROKER_ERRORS as exc:  # the broker is down: the outbox re-drive sends these
            self._marks.release(patient_ids[sent:])
            log.warning(
                "enqueue failed; the outbox re-drive will retry",
                extra={"not_sent": len(patient_ids) - sent, "error_type": type(exc).__name__},
            )
        return sent

    def enqueue_deliveries(self, delivery_ids: list[int]) -> int:
        sent = 0
        try:
            with publishing_from(self._app), self._app.producer_or_acquire() as producer:
                for delivery_id in delivery_ids:
                    self._app.send_task(
                        DELIVER_TASK_NAME,
                        args=[delivery_id],
                        queue=WEBHOOK_QUEUE,
                        producer=producer,
                        retry=True,
                    )
                    sent += 1
        except BROKER_ERRORS as exc:  # the scheduler re-drives pending deliveries
            log.warning(
                "delivery enqueue failed; the re-drive will retry",
                extra={"not_sent": len(delivery_ids) - sent, "error_type": type(exc).__name__},
            )
        return sent

    def ping(self) -> bool:
        try:
            with self._app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
            return True
        except BROKER_ERRORS:
            return False


# The service's tasks: (function, options). `service_task` adds to it; `create_celery` gives
# every app it builds the same tasks.
_TASKS: list[tuple[Callable[..., Any], dict[str, Any]]] = []


def service_task(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`@celery.task(base=ServiceTask, bind=True, **options)`, for every app: on `celery` now,
    and on each app `create_celery` builds later. `shared=False`: an app built some other way
    (Celery's default app) gets none of them."""
    options = {"base": ServiceTask, "bind": True, "shared": False, **options}

    def define(fun: Callable[..., Any]) -> Any:
        _TASKS.append((fun, options))
        return celery.task(**options)(fun)

    return define


def celery_from_environment() -> MonitorCelery:
    """The app `celery -A workers.app` finds: the MONITOR_* settings of the process
    (`get_settings()`, the one place configuration is read at import). Builds nothing else and
    opens no connection: services come with the first task a worker process runs."""
    return create_celery(get_settings())


celery = celery_from_environment()


@service_task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)
def process_patient(self: ServiceTask, patient_id: Any) -> dict[str, int]:
    svc = self.services
    if isinstance(patient_id, str):
        self.app.queued_marks.release([patient_id])  # before reading the outbox: see QueuedMarks
    try:
        outcome = run_process_patient(svc, patient_id)
    except Exception as exc:  # classified: retried, or dead-lettered and reported
        # Celery logs the message of what it is given: the error described without patient
        # data (monitor.operations.logsafe); the traceback goes through the sanitising log
        # formatter
        delay = retry_delay(svc, exc, self.request.retries)
        if delay is not None:
            raise self.retry(
                exc=TransientFailureError(describe_chain(exc)),
                countdown=delay,
                # our bound, not Celery's default of 3 (past it, retry() re-raises exc)
                max_retries=svc.settings.task_max_retries,
                argsrepr=MASKED_ARGS,
            ) from exc
        dead_id = dead_letter(svc, patient_id, exc, self.request.retries + 1)
        raise DeadLetteredError(f"dead letter {dead_id}: {describe_chain(exc)}") from exc
    return {"inserted": outcome.inserted, "superseded": outcome.superseded}


@service_task(
    name=DELIVER_TASK_NAME,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # retry(max_retries=None) would mean Celery's default of 3
)
def deliver_webhook(self: ServiceTask, delivery_id: Any) -> str:
    """One attempt per run; the retry bound is the delivery row's attempt count (so
    Celery's own bound is lifted), and the row says when the next attempt is due."""
    svc = self.services
    if not isinstance(delivery_id, int) or isinstance(delivery_id, bool):
        log.error("not a delivery id; dropped", extra={"value": str(delivery_id)[:40]})
        return "invalid"
    try:
        result = deliver(svc, delivery_id)
    except Exception as exc:  # classified: transient database errors retry, others raise
        delay = retry_delay(svc, exc, self.request.retries)
        described = TransientFailureError(describe_chain(exc))
        if delay is None:
            # the row stays pending: the scheduler's re-drive tries it later
            raise described from exc
        raise self.retry(exc=described, countdown=delay) from exc
    if result.retry_in_s is not None:
        raise self.retry(countdown=result.retry_in_s)
    return result.outcome


@celeryd_init.connect
def _as_a_service_worker(instance: Any, **_: Any) -> None:
    """A worker of this service, `celery -A workers.app worker` too, starts as
    `python -m monitor worker` does: it needs a broker, it logs JSON on stderr with
    sanitised tracebacks (`monitor.operations.logsafe.configure_logging`; Celery then keeps
    that root handler and sets only its level, `--loglevel`), and it traces when
    `MONITOR_OTEL_EXPORTER` says so (`monitor.operations.tracing`)."""
    app = getattr(instance, "app", None)
    if not isinstance(app, MonitorCelery):
        return
    if app.settings.broker_url is None:
        raise SystemExit("MONITOR_BROKER_URL is required for the worker process")

    logsafe.configure_logging(app.settings)
    try:  # before the pool forks: its processes inherit the provider (and re-start its thread)
        traced = start_tracing(app.settings, "worker")
    except TracingSetupError as exc:
        raise SystemExit(f"settings: {exc}") from None
    if traced is not None:
        # a task's retry publishes from inside the task: the instrumentation finds the task by
        # name in the current app, which is the default app in the worker's threads
        app.set_default()
