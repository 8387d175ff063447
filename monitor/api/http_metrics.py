"""HTTP request metrics: how many requests, and how long they took, by route template, method
and status (`prometheus-fastapi-instrumentator`).

The label is the route template (`/v1/patients/{patient_id}`), never the path: a path holds
patient ids, and one series per patient would grow without bound. Paths no route matches share
the label `none`; a mounted directory (`/static`, `/docs/assets`) is one label. The middleware is
the outermost of the app, so the guard's refusals (401, 413, 422) and the request log's 500s
are counted as the client saw them.

Each app has its own registry (as for the database gauges), served by `/metrics` with the
process's counters: apps built side by side (tests) do not share series.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator, metrics

NAMESPACE = "monitor"  # monitor_http_requests_total, monitor_http_request_duration_seconds
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
UNMATCHED = "none"  # the instrumentator's label for paths no route matches


def instrument_http(app: FastAPI) -> CollectorRegistry:
    """Count the app's requests into a registry of its own (returned; served by `/metrics`).
    Call it after the app's other middleware is added: the last added is the outermost."""
    registry = CollectorRegistry(auto_describe=True)
    instrumentator = Instrumentator(
        should_group_status_codes=False,  # 401 and 413 apart, not "4xx"
        should_group_untemplated=True,
        registry=registry,
    )
    instrumentator.add(
        metrics.requests(metric_namespace=NAMESPACE, registry=registry),
        metrics.latency(
            metric_namespace=NAMESPACE,
            metric_doc="Duration of HTTP requests in seconds, to the end of the answer",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
    )
    instrumentator.instrument(app)
    return registry
