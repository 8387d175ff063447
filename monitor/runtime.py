"""Starting the processes: `serve` (all in one), `api`, `worker`, `scheduler`."""

from __future__ import annotations

import datetime as dt
import logging
import os
import pathlib
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import func
from sqlmodel import col, select

from monitor.auth.audit import AuditKeyError
from monitor.operations.clock import wall_now
from monitor.operations.logsafe import configure_logging
from monitor.operations.tracing import Process, TracingSetupError, start_tracing
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from monitor.storage.models import ApiTokenRow

if TYPE_CHECKING:
    from monitor.processing.inprocess import InProcessWorker

log = logging.getLogger("monitor")


def traced(settings: Settings, process: Process) -> None:
    """Start tracing this process if `MONITOR_OTEL_EXPORTER` says so, before anything that is
    traced is built (a worker starts its own: `workers.app`)."""
    try:
        start_tracing(settings, process)
    except TracingSetupError as exc:
        raise SystemExit(f"settings: {exc}") from None


def first_admin_token(services: Services) -> str | None:
    """On a database without tokens, create an admin token (printed once, stored hashed)."""
    from monitor.auth.tokens import create_token

    with services.sessions() as session:
        count = session.execute(select(func.count(col(ApiTokenRow.id)))).scalar_one()
    if count:
        return None
    return create_token(services.sessions, "admin", "first-admin", services.settings.now())


def serve(settings: Settings, host: str, port: int) -> int:
    """The embedded default: API, in-process worker and scheduler in one process."""
    configure_logging(settings)
    traced(settings, "serve")
    services = build_services(settings)
    upgrade(services.engine)
    token = first_admin_token(services)
    if token:
        print(f"First start: admin token (shown once, keep it safe): {token}", flush=True)
    return _serve_embedded(services, host, port)


def demo(
    settings: Settings, host: str, port: int, data_dir: pathlib.Path, events: pathlib.Path
) -> int:
    """`serve` on a demo directory of its own, wiped and rebuilt at each start, with the
    example timeline moved to the present and a token per role printed once."""
    from monitor.demo.loader import (
        DemoDirError,
        demo_settings,
        demo_tokens,
        load_timeline,
        reset_data_dir,
    )

    try:
        settings = demo_settings(settings, data_dir)
        reset_data_dir(data_dir)
    except DemoDirError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    traced(settings, "serve")
    services = build_services(settings)
    upgrade(services.engine)
    now = settings.now()
    tokens = demo_tokens(services, now)

    def load(worker: InProcessWorker) -> None:
        try:
            loaded = load_timeline(services, events, now)
        except (OSError, ValueError) as exc:
            print(f"demo: cannot load {events}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        worker.wait_idle(timeout=120)
        lines = [
            loaded.describe(),
            f"Data: {data_dir} (wiped and rebuilt at every start of the demo)",
            f"Open http://{host}:{port}/ and log in with one of these tokens (shown once):",
            *(f"  {role:<9} {token}" for role, token in tokens.items()),
        ]
        print("\n".join(lines), flush=True)

    return _serve_embedded(services, host, port, before=load)


def _serve_embedded(
    services: Services,
    host: str,
    port: int,
    before: Callable[[InProcessWorker], None] | None = None,
) -> int:
    """Worker, scheduler and HTTP in this process; `before` runs once the worker has started."""
    from monitor.app import create_app
    from monitor.processing.inprocess import InProcessWorker
    from monitor.processing.scheduled import enqueue_all_open
    from monitor.scheduler.runner import start_background

    worker = InProcessWorker(services)
    services.dispatcher = worker
    worker.start()
    try:
        if before is not None:
            before(worker)
        scheduler, lease = start_background(services)
    except BaseException:
        worker.stop()
        services.close()
        raise
    enqueue_all_open(services)
    try:
        _run_http(create_app(services), host, port)
    finally:
        scheduler.shutdown(wait=False)
        worker.stop()
        lease.release()
        services.close()
    return 0


# Open alert streams (SSE) never end by themselves: on SIGTERM/Ctrl-C uvicorn waits this long
# for them, then closes them (clients reconnect elsewhere with Last-Event-ID).
GRACEFUL_SHUTDOWN_S = 5


def exit_cleanly_on_signals() -> None:
    """SIGTERM and SIGINT end the process through `SystemExit(0)`, so `finally` blocks run
    (the scheduler releases its lease, the embedded worker stops). Uvicorn handles both during
    its run and re-raises the signal once it has shut down: this handler then takes it."""

    def stop(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)


def _run_http(app: Any, host: str, port: int) -> None:
    import uvicorn

    exit_cleanly_on_signals()
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


def _production_services(settings: Settings) -> Services:
    from workers.app import CeleryDispatcher, create_celery

    if settings.broker_url is None:
        raise SystemExit("MONITOR_BROKER_URL is required for the api/worker/scheduler processes")
    services = build_services(settings)
    try:
        services.audit.require_key()  # before serving: the audit chain is keyed
    except AuditKeyError as exc:
        services.close()
        raise SystemExit(f"settings: {exc}") from None
    services.dispatcher = CeleryDispatcher(create_celery(settings))
    return services


def api(settings: Settings, host: str, port: int) -> int:

    from monitor.app import create_app

    configure_logging(settings)
    traced(settings, "api")
    services = _production_services(settings)
    _run_http(create_app(services), host, port)
    return 0


def worker(
    settings: Settings, concurrency: int, metrics_port: int | None, queues: str = "monitor"
) -> int:
    """A Celery worker: `monitor` (the patients' events, the default) or `webhooks` (alert
    deliveries, in processes of their own), or both (`monitor,webhooks`)."""
    configure_logging(settings)
    if settings.broker_url is None:
        raise SystemExit("MONITOR_BROKER_URL is required for the worker process")
    if metrics_port is not None:
        _serve_pool_metrics(metrics_port)

    from workers.app import create_celery  # after _serve_pool_metrics

    # the module's tasks; each builds its services lazily in each pool process (after the
    # fork), once, with this app as the dispatcher of the alerts' deliveries (ServiceTask)
    app = create_celery(settings)
    app.worker_main(
        [
            "worker",
            "--loglevel",
            settings.log_level,
            "--concurrency",
            str(concurrency),
            "--queues",
            queues,
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"monitor-{os.getpid()}@%h",  # unique per process, even with several per host
        ]
    )
    return 0


def _serve_pool_metrics(port: int) -> None:
    """Serve the counters of the whole worker: tasks run in prefork pool children, so each
    process writes its values to files in PROMETHEUS_MULTIPROC_DIR (prometheus_client's
    multiprocess mode, chosen when the library is first imported: hence before any metric
    exists) and this process's server adds them up."""
    import atexit
    import shutil
    import tempfile

    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        if "prometheus_client" in sys.modules:
            raise RuntimeError("prometheus_client was imported before its multiprocess mode")
        values = tempfile.mkdtemp(prefix="monitor-worker-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = values
        atexit.register(shutil.rmtree, values, ignore_errors=True)
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, registry=registry)


def scheduler(settings: Settings) -> int:
    from apscheduler.schedulers.blocking import BlockingScheduler

    from monitor.scheduler.runner import add_jobs, make_lease

    configure_logging(settings)
    traced(settings, "scheduler")
    services = _production_services(settings)
    lease = make_lease(services)
    blocking = BlockingScheduler(timezone=dt.UTC)
    add_jobs(blocking, services, lease)
    for job in blocking.get_jobs():
        job.modify(next_run_time=wall_now())  # a tick at once, then every interval
    log.info(
        "scheduler started",
        extra={"interval_s": settings.scheduler_interval_s, "holder": lease.holder},
    )
    exit_cleanly_on_signals()
    try:
        blocking.start()
    finally:
        if blocking.running:
            blocking.shutdown(wait=False)
        lease.release()  # another replica takes over at its next tick
    return 0
