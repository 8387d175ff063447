"""HTTP request metrics on `/metrics` (issue 15, item 6): requests and their latency by route
template, method and status, the guard's refusals included, in the Prometheus text format."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.services import Services
from tests.common import factories as f
from tests.common.factories import at
from tests.common.service import Api

REQUESTS = "monitor_http_requests"  # the family's name, without the counter's _total
LATENCY = "monitor_http_request_duration_seconds"


def scrape(api: Api) -> dict[str, Any]:
    """/metrics parsed by prometheus_client's own parser (it raises on a malformed line)."""
    response = api.get("/metrics", role=None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def counts(families: dict[str, Any]) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["handler"], s.labels["method"], s.labels["status"]): s.value
        for s in families[REQUESTS].samples
        if s.name == f"{REQUESTS}_total"
    }


def test_requests_are_counted_by_route_template_method_and_status(
    api: Api, services: Services
) -> None:
    events = {"events": [f.enrollment(at(0), patient="P-METRICS-1", event_id="m-e0")]}
    assert api.post_events(events).status_code == 202
    for patient in ("P-METRICS-1", "P-METRICS-2"):  # two patients, one series each status
        api.get(f"/v1/patients/{patient}/decisions")
    assert api.get("/v1/patients/P-METRICS-1/decisions", role=None).status_code == 401
    assert api.get("/v1/nothing-here", role=None).status_code == 401  # unmatched
    assert api.get("/v1/nothing/at/all", role="nurse").status_code == 404  # unmatched
    assert api.get("/v1/patients/P1%01", role="nurse").status_code == 422  # the guard's
    services.settings = services.settings.model_copy(update={"max_body_bytes": 2_048})
    assert api.post_raw(b"[" + b" " * 4_096 + b"]").status_code == 413  # the guard's limit
    assert api.get("/static/app.js", role=None).status_code == 200

    seen = counts(scrape(api))
    assert seen[("/v1/events", "POST", "202")] == 1
    assert seen[("/v1/events", "POST", "413")] == 1
    assert seen[("/v1/patients/{patient_id}/decisions", "GET", "200")] == 1
    assert seen[("/v1/patients/{patient_id}/decisions", "GET", "404")] == 1  # unknown patient
    assert seen[("/v1/patients/{patient_id}/decisions", "GET", "401")] == 1
    assert seen[("/v1/patients/{patient_id}", "GET", "422")] == 1
    assert seen[("none", "GET", "401")] == 1
    assert seen[("none", "GET", "404")] == 1
    assert seen[("/static", "GET", "200")] == 1  # a mounted folder is one label
    assert not [key for key in seen if "P-METRICS" in key[0] or "P1" in key[0]]  # no paths


def test_latency_is_a_histogram_with_the_same_labels(api: Api) -> None:
    assert api.get("/healthz", role=None).status_code == 200
    assert api.get("/v1/patients/P1", role=None).status_code == 401
    families = scrape(api)
    latency = families[LATENCY]
    assert latency.type == "histogram"
    by_labels: dict[tuple[str, str, str], dict[str, float]] = {}
    for sample in latency.samples:
        labels = dict(sample.labels)
        le = labels.pop("le", None)
        key = (labels["handler"], labels["method"], labels["status"])
        name = sample.name.removeprefix(LATENCY)
        by_labels.setdefault(key, {})[f"{name}{le or ''}"] = sample.value
    health = by_labels[("/healthz", "GET", "200")]
    assert health["_count"] == 1
    assert health["_bucket+Inf"] == 1
    assert 0 < health["_sum"] < 10
    assert by_labels[("/v1/patients/{patient_id}", "GET", "401")]["_count"] == 1


def test_the_scrape_holds_the_process_counters_the_database_gauges_and_the_requests(
    api: Api,
) -> None:
    api.get("/healthz", role=None)
    families = scrape(api)
    for name in ("monitor_events_accepted", "monitor_database_up", REQUESTS, LATENCY):
        assert name in families, name
    # one family per name: the three registries do not overlap
    text = api.get("/metrics", role=None).text
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))


def test_each_app_counts_its_own_requests(api: Api, services: Services) -> None:
    """Apps built side by side (tests; one per process in production) share no series."""
    from starlette.testclient import TestClient

    from monitor.app import create_app

    api.get("/healthz", role=None)
    api.get("/healthz", role=None)
    with TestClient(create_app(services)) as client:
        other = Api(client, api.tokens)
        other.get("/healthz", role=None)
        assert counts(scrape(other))[("/healthz", "GET", "200")] == 1
    assert counts(scrape(api))[("/healthz", "GET", "200")] == 2


def test_promtool_accepts_the_scrape(api: Api) -> None:
    """Prometheus's own checker (Debian's `prometheus` package), where it is installed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    api.get("/healthz", role=None)
    api.get("/v1/patients/P1", role=None)
    text = api.get("/metrics", role=None).text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""  # no lint warning either
