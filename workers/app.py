"""The Celery app (production): Redis broker, JSON only, late acks, one message at a time.

Thin: the task takes a patient id and calls `monitor.processing.jobs.run_process_patient` (load,
fold with the pure engine, persist). Transient errors retry with exponential backoff up to
`task_max_retries`; then, or at once for any other error, a dead-letter row records the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kombu.exceptions
import redis.exceptions
from celery import Celery, Task

from monitor.operations.logsafe import describe_chain
from monitor.processing.jobs import (
    TASK_NAME,
    DeadLetteredError,
    TransientFailureError,
    dead_letter,
    retry_delay,
    run_process_patient,
)
from monitor.services import Services
from monitor.settings import Settings
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


def create_celery(settings: Settings, services: Callable[[], Services] | None = None) -> Celery:
    """The app; `services` (built lazily, once per worker process) is needed only to consume."""
    app = Celery("bipn_monitor", broker=settings.broker_url or "memory://", set_as_current=False)
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
    )
    if services is not None:
        _register_tasks(app, services)
    return app


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


def _register_tasks(app: Celery, services: Callable[[], Services]) -> None:
    marks = QueuedMarks(app.conf.broker_url)

    # shared=False: the tasks belong to this app only (with Celery's default, an app built
    # later in the same process would run this app's closures, over this app's services)
    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True, shared=False)
    def process_patient(self: Task, patient_id: Any) -> dict[str, int]:
        svc = services()
        if isinstance(patient_id, str):
            marks.release([patient_id])  # before reading the outbox: see QueuedMarks
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

    @app.task(
        name=DELIVER_TASK_NAME,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=None,  # retry(max_retries=None) would mean Celery's default of 3
        shared=False,
    )
    def deliver_webhook(self: Task, delivery_id: Any) -> str:
        """One attempt per run; the retry bound is the delivery row's attempt count (so
        Celery's own bound is lifted), and the row says when the next attempt is due."""
        svc = services()
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


class CeleryDispatcher:
    """Publishes `process_patient(patient_id)` to the broker, after the database commit."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._marks = QueuedMarks(app.conf.broker_url)

    def enqueue(self, patient_ids: list[str]) -> int:
        sent = 0
        patient_ids = self._marks.claim(patient_ids)
        try:
            with self._app.producer_or_acquire() as producer:
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
            with self._app.producer_or_acquire() as producer:
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
