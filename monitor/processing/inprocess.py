"""The embedded default's worker: a thread in the serving process, no broker needed.

Durability does not depend on it: accepted events are in the database with their outbox rows,
and the scheduler's re-drive hands open rows to this worker again after a restart.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time

from opentelemetry.context import Context

from monitor.operations import tracing
from monitor.processing.jobs import dead_letter, retry_delay, run_process_patient
from monitor.services import Services
from monitor.webhooks.delivery import deliver

log = logging.getLogger("monitor.inprocess")

PROCESS_SPAN = "inprocess/process_patient"  # its trace span (monitor.operations.tracing)


class InProcessWorker:
    """A `Dispatcher` that runs `process_patient` on its own thread, one patient at a time,
    and webhook deliveries on a second thread (a slow endpoint never delays clinical work)."""

    def __init__(self, services: Services) -> None:
        self._services = services
        # each patient with the trace context of the request that queued it (when tracing)
        self._queue: queue.Queue[tuple[str, Context | None]] = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor-worker", daemon=True)
        self._deliveries = _DeliveryThread(services, self._stop)

    def start(self) -> None:
        self._thread.start()
        self._deliveries.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._deliveries.join(timeout)

    def enqueue_deliveries(self, delivery_ids: list[int]) -> int:
        for delivery_id in delivery_ids:
            self._deliveries.submit(delivery_id, 0.0)
        return len(delivery_ids)

    def enqueue(self, patient_ids: list[str]) -> int:
        handed = tracing.handover()
        with self._lock:
            fresh = [p for p in patient_ids if p not in self._pending]
            self._pending.update(fresh)
        for patient_id in fresh:
            self._queue.put((patient_id, handed))
        return len(patient_ids)

    def ping(self) -> bool:
        return self._thread.is_alive() and self._deliveries.is_alive()

    def idle(self) -> bool:
        # Counted by the queue itself (put +1, task_done -1): "empty and not busy" had a gap
        # between the thread's get() and its busy flag, where a queued patient looked done.
        return self._queue.unfinished_tasks == 0 and self._deliveries.idle()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """For tests and shutdown: wait until nothing is queued or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.01)
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                patient_id, handed = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            with self._lock:
                self._pending.discard(patient_id)  # events arriving from now on queue it again
            try:
                with tracing.continued(handed, PROCESS_SPAN):
                    self._process(patient_id)
            except Exception:
                # not marked done: its outbox rows stay open and the re-drive sends it again
                log.exception("work failed and could not be dead-lettered")
            finally:
                self._queue.task_done()

    def _process(self, patient_id: str) -> None:
        retries = 0
        while True:
            try:
                run_process_patient(self._services, patient_id)
                return
            except Exception as exc:  # noqa: BLE001  (classified: retried, or dead-lettered)
                delay = retry_delay(self._services, exc, retries)
                if delay is None:
                    dead_letter(self._services, patient_id, exc, retries + 1)
                    return
                if self._stop.wait(delay):
                    return  # shutting down: the outbox keeps the work
                retries += 1


class _DeliveryThread(threading.Thread):
    """Sends webhook deliveries; a retry waits in a heap until its time (the delivery row
    keeps `next_attempt_at` too, so after a restart the scheduler's re-drive sends it)."""

    def __init__(self, services: Services, stop: threading.Event) -> None:
        super().__init__(name="monitor-webhooks", daemon=True)
        self._services = services
        self._stop_event = stop
        self._due: list[tuple[float, int]] = []
        self._wake = threading.Condition()
        self._running = 0

    def submit(self, delivery_id: int, delay_s: float) -> None:
        with self._wake:
            heapq.heappush(self._due, (time.monotonic() + delay_s, delivery_id))
            self._wake.notify()

    def idle(self) -> bool:
        """Nothing due now and nothing being sent (retries waiting for later do not count)."""
        with self._wake:
            now = time.monotonic()
            return self._running == 0 and not any(at <= now for at, _ in self._due)

    def run(self) -> None:
        while not self._stop_event.is_set():
            with self._wake:
                now = time.monotonic()
                if not self._due or self._due[0][0] > now:
                    wait = min(self._due[0][0] - now, 0.2) if self._due else 0.2
                    self._wake.wait(wait)
                    continue
                _, delivery_id = heapq.heappop(self._due)
                self._running += 1
            try:
                result = deliver(self._services, delivery_id)
                if result.retry_in_s is not None:
                    self.submit(delivery_id, result.retry_in_s)
            except Exception:
                # left pending in the database: the scheduler's re-drive sends it again
                log.exception("webhook delivery could not be attempted")
            finally:
                with self._wake:
                    self._running -= 1
