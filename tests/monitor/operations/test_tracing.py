"""OpenTelemetry traces (issue 15, item 6): one trace from `POST /v1/events` through the Celery
task to the SQL that stores the decisions, caught by the in-memory exporter.

The pipeline runs in this process as tests/workers/test_app.py runs it: `create_celery` on the
`memory://` broker, a worker thread (`start_worker`, solo pool), `CeleryDispatcher` as the API's
dispatcher. The API and the worker share one provider here (one process); in production each
process has its own, under its own service name, and the context crosses in the message headers
exactly as it does here.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace

import celery._state
import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import before_task_publish, celeryd_init
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import ValidationError
from starlette.testclient import TestClient

from monitor.app import create_app
from monitor.auth.roles import ROLES
from monitor.auth.tokens import create_token
from monitor.operations import tracing
from monitor.processing.inprocess import PROCESS_SPAN, InProcessWorker
from monitor.processing.jobs import TASK_NAME
from monitor.scheduler.runner import make_lease, run_jobs
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from monitor.webhooks.delivery import TASK_NAME as DELIVER_TASK_NAME
from tests.common import factories as f
from tests.common.factories import at
from tests.common.service import Api, RecordingDispatcher, eventually
from tests.conftest import FIXED_NOW
from workers.app import CeleryDispatcher, create_celery

PATIENT = "P-TRACE-7"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    tracing.start_tracing(Settings(), "api", spans, batch=False)
    yield spans
    tracing.stop_tracing()


@pytest.fixture
def traced_services(
    exporter: InMemorySpanExporter, sqlite_settings: Settings
) -> Iterator[Services]:
    """Built once tracing has started, as the processes do: the engine is traced."""
    services = build_services(sqlite_settings)
    upgrade(services.engine)
    yield services
    services.close()


def names(spans: tuple[ReadableSpan, ...]) -> list[str]:
    return [s.name for s in spans]


def attribute_values(span: ReadableSpan) -> list[str]:
    return [
        json.dumps(v) if not isinstance(v, str) else v for v in (span.attributes or {}).values()
    ]


def test_one_trace_from_the_request_through_the_task_to_the_stored_decisions(
    traced_services: Services, exporter: InMemorySpanExporter
) -> None:
    services = traced_services
    tokens = {r: create_token(services.sessions, r, f"trace-{r}", FIXED_NOW) for r in ROLES}
    app = create_celery(
        Settings(broker_url="memory://", database_url="sqlite://", fixed_now=FIXED_NOW),
        lambda: services,
    )
    app.conf.broker_transport_options = {"visibility_timeout": 3600, "polling_interval": 0.01}
    timeline = [
        f.enrollment(at(0), patient=PATIENT, event_id="trace-e0"),
        f.assessment(at(21), patient=PATIENT, event_id="trace-a21", sensory=2, pain=1),
    ]
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        services.dispatcher = CeleryDispatcher(app)
        with TestClient(create_app(services)) as client:
            api = Api(client, tokens)
            exporter.clear()  # the set-up's SQL
            assert api.post_events({"events": timeline}).status_code == 202
            eventually(
                lambda: f"run/{TASK_NAME}" in names(exporter.get_finished_spans()),
                what="the task's span ended",
            )
            assert api.decisions(PATIENT)  # stored
            read = api.client.get(
                f"/v1/patients/{PATIENT}/decisions?include=superseded",
                headers=api.headers("nurse"),
            )
            assert read.status_code == 200
        services.dispatcher = None

    spans = exporter.get_finished_spans()
    [ingest] = [s for s in spans if s.name == "POST /v1/events"]
    assert ingest.kind is SpanKind.SERVER
    assert ingest.resource.attributes["service.name"] == "bipn-monitor-api"
    assert ingest.context is not None
    trace_id = ingest.context.trace_id
    in_trace = [s for s in spans if s.context is not None and s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in in_trace if s.context is not None}

    def ancestors(span: ReadableSpan) -> list[str]:
        chain = []
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            chain.append(span.name)
        return chain

    [publish] = [s for s in in_trace if s.name == f"apply_async/{TASK_NAME}"]
    assert publish.kind is SpanKind.PRODUCER
    assert ancestors(publish)[-1] == "POST /v1/events"
    [run] = [s for s in in_trace if s.name == f"run/{TASK_NAME}"]
    assert run.kind is SpanKind.CONSUMER
    assert run.parent is not None
    assert publish.context is not None
    assert run.parent.span_id == publish.context.span_id
    assert ancestors(run) == [publish.name, *ancestors(publish)]

    # the request's own SQL (the event and its outbox row), and the task's (the decisions)
    sql = [
        s for s in in_trace if s.kind is SpanKind.CLIENT and "db.statement" in (s.attributes or {})
    ]
    stored_by = {
        str((s.attributes or {})["db.statement"]).split("(")[0].strip(): ancestors(s)[0]
        for s in sql
        if str((s.attributes or {})["db.statement"]).startswith("INSERT INTO")
    }
    assert stored_by["INSERT INTO event"] == "POST /v1/events"
    assert stored_by["INSERT INTO decision"] == f"run/{TASK_NAME}"

    # no patient data: the patient id is a bound value, never in a statement, and the paths
    # that hold it are reported as their route templates
    leaked = [(s.name, v) for s in spans for v in attribute_values(s) if PATIENT in v]
    assert leaked == []
    reads = [s for s in spans if s.name == "GET /v1/patients/{patient_id}/decisions"]
    assert len(reads) == 2
    for read_span in reads:
        attributes = read_span.attributes or {}
        assert attributes["http.route"] == "/v1/patients/{patient_id}/decisions"
        url_keys = [k for k in tracing.URL_ATTRIBUTES if k in attributes]
        assert url_keys  # the check above looked at them
        assert {attributes[k] for k in url_keys} == {"/v1/patients/{patient_id}/decisions"}


def test_the_embedded_worker_continues_the_requests_trace(
    traced_services: Services, exporter: InMemorySpanExporter
) -> None:
    """`serve` has no broker: the in-process worker carries the context along its queue."""
    services = traced_services
    tokens = {r: create_token(services.sessions, r, f"trace-{r}", FIXED_NOW) for r in ROLES}
    worker = InProcessWorker(services)
    services.dispatcher = worker
    worker.start()
    try:
        with TestClient(create_app(services)) as client:
            exporter.clear()
            events = {"events": [f.enrollment(at(0), patient=PATIENT, event_id="trace-e1")]}
            assert Api(client, tokens).post_events(events).status_code == 202
            assert worker.wait_idle()
    finally:
        worker.stop()
        services.dispatcher = None
    spans = exporter.get_finished_spans()
    [ingest] = [s for s in spans if s.name == "POST /v1/events"]
    [work] = [s for s in spans if s.name == PROCESS_SPAN]
    assert ingest.context is not None
    assert work.context is not None
    assert work.context.trace_id == ingest.context.trace_id
    assert work.attributes == {}  # the patient id is not told
    decisions = [
        s
        for s in spans
        if str((s.attributes or {}).get("db.statement", "")).startswith("INSERT INTO decision")
    ]
    assert decisions
    assert {s.parent.span_id for s in decisions if s.parent} == {work.context.span_id}


def test_a_publish_span_lasts_until_the_message_is_sent(exporter: InMemorySpanExporter) -> None:
    """In the API process the service's app is neither Celery's current nor its default one
    (start_worker, above, makes its app the default). The instrumentation finds the task being
    sent by name in the current app: `publishing_from` makes it current, else the publish span
    is dropped at once and ends before the message is even handed to the broker."""
    handed_over: list[int] = []  # after the instrumentation's own receiver, before the send

    def mark(**_: object) -> None:
        handed_over.append(time.time_ns())

    before_task_publish.connect(mark, weak=False)
    default_app = celery._state.default_app
    celery._state.set_default_app(Celery("elsewhere", set_as_current=False))
    try:
        app = create_celery(Settings(broker_url="memory://", database_url="sqlite://"))
        sent = CeleryDispatcher(app).enqueue(["P-PUBLISH-1", "P-PUBLISH-2"])
        sent += CeleryDispatcher(app).enqueue_deliveries([41])
    finally:
        celery._state.set_default_app(default_app)
        before_task_publish.disconnect(mark)
    assert sent == 3
    published = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert [s.name for s in published] == [f"apply_async/{TASK_NAME}"] * 2 + [
        f"apply_async/{DELIVER_TASK_NAME}"
    ]
    ends = [s.end_time or 0 for s in published]
    assert all(end > mark for end, mark in zip(ends, handed_over, strict=True))
    assert celery._state.get_current_app() is not app  # current only while publishing


def test_tracing_is_off_by_default(sqlite_settings: Settings) -> None:
    assert Settings().otel_exporter == "none"
    assert tracing.start_tracing(Settings(), "api") is None
    assert tracing.tracing() is None
    services = build_services(sqlite_settings)
    try:
        app = create_app(services)
        assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    finally:
        services.close()


def test_the_exporters_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracing.span_exporter("none") is None
    assert isinstance(tracing.span_exporter("console"), ConsoleSpanExporter)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.example:4318")
    otlp = tracing.span_exporter("otlp")
    assert isinstance(otlp, OTLPSpanExporter)
    assert otlp._endpoint == "http://collector.example:4318/v1/traces"  # the standard variable
    with pytest.raises(tracing.TracingSetupError, match="expected none, otlp or console"):
        tracing.span_exporter("jaeger")
    with pytest.raises(ValidationError, match="otel_exporter"):
        Settings(otel_exporter="jaeger")  # type: ignore[arg-type]
    monkeypatch.setenv("MONITOR_OTEL_EXPORTER", "console")
    assert Settings().otel_exporter == "console"


def test_otlp_without_its_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(tracing.TracingSetupError, match=r"pip install 'bipn-monitor\[otlp\]'"):
        tracing.span_exporter("otlp")


def test_a_worker_traces_under_its_own_name_when_the_settings_say_so(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("monitor.operations.logsafe.configure_logging", lambda _settings: None)
    default_app = celery._state.default_app
    settings = sqlite_settings.model_copy(
        update={"broker_url": "memory://", "otel_exporter": "console"}
    )
    app = create_celery(settings)
    try:
        celeryd_init.send(sender="w@host", instance=SimpleNamespace(app=app), conf=app.conf)
        provider = tracing.tracing()
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "bipn-monitor-worker"
        assert celery._state.default_app is app  # where the instrumentation finds the tasks
    finally:
        tracing.stop_tracing()
        celery._state.set_default_app(default_app)
    assert tracing.tracing() is None


def test_stopping_flushes_and_nothing_is_traced_after(
    traced_services: Services, exporter: InMemorySpanExporter
) -> None:
    with traced_services.engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
    assert any(s.name.startswith("SELECT") for s in exporter.get_finished_spans())
    tracing.stop_tracing()
    exporter.clear()
    with traced_services.engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
    assert exporter.get_finished_spans() == ()


def test_error_texts_are_left_out_of_exported_spans(exporter: InMemorySpanExporter) -> None:
    """What a failed statement's span would carry on PostgreSQL (the driver's message names the
    key's values), and an exception's message and traceback: not exported; the failure and the
    exception's type are."""
    provider = tracing.tracing()
    assert provider is not None
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("INSERT monitor") as span:
        span.set_status(
            Status(StatusCode.ERROR, f"duplicate key: Key (patient_id)=({PATIENT}) already exists")
        )
        span.record_exception(ValueError(f"the grading of {PATIENT}"))
        span.set_attribute("db.statement", "INSERT INTO patient (patient_id) VALUES (%s)")
    [exported] = exporter.get_finished_spans()
    assert exported.status.status_code is StatusCode.ERROR
    assert not exported.status.description
    [event] = exported.events
    assert event.name == "exception"
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "ValueError"
    assert set(attributes) <= {"exception.type", "exception.escaped"}
    assert exported.attributes == {"db.statement": "INSERT INTO patient (patient_id) VALUES (%s)"}
    assert PATIENT not in repr(exported.to_json())


def test_each_scheduler_job_is_a_trace_of_its_own(
    traced_services: Services, exporter: InMemorySpanExporter
) -> None:
    traced_services.dispatcher = RecordingDispatcher()
    exporter.clear()
    counts = run_jobs(traced_services, make_lease(traced_services))
    assert counts is not None
    spans = exporter.get_finished_spans()
    jobs = {s.name: s for s in spans if s.name.startswith("scheduler/")}
    assert sorted(jobs) == sorted(f"scheduler/{name}" for name in counts)
    assert len({s.context.trace_id for s in jobs.values() if s.context}) == len(jobs)
    assert all(s.parent is None for s in jobs.values())
    redrive = jobs["scheduler/redrive_outbox"].context
    assert redrive is not None
    assert [s for s in spans if s.parent is not None and s.parent.span_id == redrive.span_id]
