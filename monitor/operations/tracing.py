"""OpenTelemetry traces, set up in one place: one trace from the HTTP request that accepted an
event, through the Celery task that folds it, to the SQL that stores the decisions.

Off unless `MONITOR_OTEL_EXPORTER` names an exporter (`console`, or `otlp`: the standard
`OTEL_EXPORTER_OTLP_ENDPOINT`, from the optional `otlp` extra). Each process starts tracing once
(`start_tracing`) under its own service name (`bipn-monitor-api`, `-worker`, `-scheduler`,
`-serve`); then the app (`trace_app`), the engine (`trace_engine`) and Celery's publish and run
signals are instrumented by OpenTelemetry's own instrumentations. The Celery instrumentation
carries the trace context in the task message's headers (W3C `traceparent`), so the worker's
task span is a child of the request's publish span. The embedded mode's worker thread carries
it along its queue (`handover`, `continued`).

No patient data in span attributes: SQL spans hold the statement text with its placeholders,
never the bound values; the HTTP span's URL attributes hold the route template, not the path
(which holds patient ids); the Celery spans hold the task name and id, not the arguments; and
error texts copied from exceptions are left out of what is exported (`RedactingExporter`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from fastapi import FastAPI
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import get_meter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Span, SpanKind, Status
from sqlalchemy import Engine
from starlette.types import Scope

from monitor.settings import Settings

log = logging.getLogger("monitor.tracing")

Process = Literal["api", "worker", "scheduler", "serve"]
SERVICE_PREFIX = "bipn-monitor"
INSTRUMENTATION = "monitor.operations.tracing"

# The HTTP span's attributes that hold the request's path or query: set to the route template.
URL_ATTRIBUTES = ("http.target", "http.url", "url.path", "url.full")
QUERY_ATTRIBUTES = ("url.query",)
# Error texts an exception event carries (they may quote data): left out of exported spans.
REDACTED_EVENT_ATTRIBUTES = frozenset({"exception.message", "exception.stacktrace"})

_provider: TracerProvider | None = None


class TracingSetupError(RuntimeError):
    """The exporter asked for cannot be built (a missing optional dependency)."""


class RedactingExporter(SpanExporter):
    """Exports spans without the error texts instrumentations copy from exceptions: a failed
    statement's span carries the driver's message as its status (PostgreSQL's names the values
    of a violated key), an exception event its message and traceback. Kept: that it failed, and
    the exception's type."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([_redacted(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _redacted(span: ReadableSpan) -> ReadableSpan:
    texts = any(k in REDACTED_EVENT_ATTRIBUTES for e in span.events for k in (e.attributes or {}))
    if not span.status.description and not texts:
        return span
    events = [
        Event(
            event.name,
            {
                k: v
                for k, v in (event.attributes or {}).items()
                if k not in REDACTED_EVENT_ATTRIBUTES
            },
            event.timestamp,
        )
        for event in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def span_exporter(name: str) -> SpanExporter | None:
    """The exporter `MONITOR_OTEL_EXPORTER` names; None for `none`."""
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise TracingSetupError(
                "MONITOR_OTEL_EXPORTER=otlp needs the OTLP exporter: "
                "pip install 'bipn-monitor[otlp]'"
            ) from None
        return OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, headers, timeout
    raise TracingSetupError(f"MONITOR_OTEL_EXPORTER={name!r}: expected none, otlp or console")


def start_tracing(
    settings: Settings,
    process: Process,
    exporter: SpanExporter | None = None,
    *,
    batch: bool = True,
) -> TracerProvider | None:
    """Trace this process, if the settings say so (or `exporter` is given: tests). Returns the
    provider, or None when tracing is off. `batch=False` exports each span as it ends."""
    global _provider
    if exporter is None:
        exporter = span_exporter(settings.otel_exporter)
        if exporter is None:
            return None
    stop_tracing()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name(process)}))
    redacting = RedactingExporter(exporter)
    provider.add_span_processor(
        BatchSpanProcessor(redacting) if batch else SimpleSpanProcessor(redacting)
    )
    # publish and run signals (the instrumentations have no type hints)
    CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _provider = provider
    log.info("tracing started", extra={"service": service_name(process)})
    return provider


def stop_tracing() -> None:
    """Flush and stop: the spans still buffered are exported; nothing is traced after."""
    global _provider
    if _provider is None:
        return
    CeleryInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    EngineTracer.remove_all_event_listeners()  # type: ignore[no-untyped-call]
    _provider.shutdown()
    _provider = None


def service_name(process: Process) -> str:
    return f"{SERVICE_PREFIX}-{process}"


def tracing() -> TracerProvider | None:
    """The process's provider, when tracing is on."""
    return _provider


def trace_engine(engine: Engine) -> None:
    """SQL spans for this engine's statements (children of the current span), if tracing is
    on. One tracer per engine: a process builds one engine (a test, many)."""
    if _provider is None:
        return
    tracer = _provider.get_tracer(INSTRUMENTATION)
    connections = get_meter(INSTRUMENTATION).create_up_down_counter(
        "db.client.connections.usage", unit="connections"
    )
    EngineTracer(tracer, engine, connections)  # type: ignore[no-untyped-call]


def handover() -> otel_context.Context | None:
    """The current trace context, for work another thread does on its behalf (None when this
    process does not trace)."""
    return otel_context.get_current() if _provider is not None else None


@contextlib.contextmanager
def continued(handed: otel_context.Context | None, name: str) -> Iterator[None]:
    """A span named `name` (no attributes: the work's arguments are patient data), in the trace
    `handed` over, current on this thread meanwhile."""
    if _provider is None or handed is None:
        yield
        return
    tracer = _provider.get_tracer(INSTRUMENTATION)
    kind = SpanKind.CONSUMER if handed else SpanKind.INTERNAL  # handed over; empty: a new trace
    with tracer.start_as_current_span(name, context=handed, kind=kind):
        yield


def new_trace(name: str) -> contextlib.AbstractContextManager[None]:
    """A span named `name` that starts a trace of its own (a scheduler job: its statements and
    the tasks it sends, together), when this process traces."""
    return continued(otel_context.Context() if _provider is not None else None, name)


def trace_app(app: FastAPI, route_of: Callable[[Scope], str]) -> None:
    """A server span per request, named by its route, if tracing is on. `route_of` gives a
    request's route template (the URL attributes are set to it)."""
    if _provider is None:
        return

    def routes_not_paths(span: Span, scope: dict[str, Any]) -> None:
        attributes = getattr(span, "attributes", None)
        if not span.is_recording() or attributes is None:
            return
        template = route_of(scope)
        for key in URL_ATTRIBUTES:
            if key in attributes:
                span.set_attribute(key, template)
        for key in QUERY_ATTRIBUTES:
            if key in attributes:
                span.set_attribute(key, "")

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        server_request_hook=routes_not_paths,
        exclude_spans=["receive", "send"],  # one span per request, not one per ASGI message
    )
