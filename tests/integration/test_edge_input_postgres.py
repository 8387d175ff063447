"""Issue 11, item 3: no 5xx on edge input, against PostgreSQL (where they were found: it refuses
an int4 comparison with 2^31, a NUL in text, a date beyond year 9999), and every answer in the
service's own request log with its request id.

The service runs in-process on a fresh PostgreSQL database (the embedded worker), called over
Starlette's client; the request log is read from the `monitor.app` logger.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from monitor.app import create_app
from monitor.auth.tokens import create_token
from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from tests.common import factories as f
from tests.conftest import FIXED_NOW


@pytest.fixture(scope="module")
def on_postgres(
    fresh_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, str], Services]]:
    settings = Settings(
        database_url=fresh_database,
        data_dir=tmp_path_factory.mktemp("edge"),
        fixed_now=FIXED_NOW,
    )
    services = build_services(settings)
    upgrade(services.engine)
    worker = InProcessWorker(services)
    services.dispatcher = worker
    worker.start()
    headers = {
        "Authorization": f"Bearer {create_token(services.sessions, 'admin', 'a', FIXED_NOW)}"
    }
    try:
        with TestClient(create_app(services)) as client:
            body = {"events": [f.enrollment(f.at(0), patient="PE", event_id="pe-0")]}
            assert client.post("/v1/events", json=body, headers=headers).status_code == 202
            assert worker.wait_idle()
            yield client, headers, services
    finally:
        worker.stop()
        services.close()


BIG = str(2**31)
NESTED = {"events": [f.enrollment(f.at(1), patient="PE", event_id="pe-deep")]}

EDGE: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/alerts", {"params": {"after": BIG}}),
    ("GET", "/v1/alerts", {"params": {"cursor": BIG}}),
    ("GET", "/v1/alerts", {"params": {"after": str(2**63)}}),
    ("GET", "/v1/alerts", {"params": {"unit": "\x00"}}),
    ("GET", "/v1/alerts", {"params": {"unit": "a\x00b", "severity": "urgent"}}),
    ("GET", "/v1/alerts/stream", {"headers": {"Last-Event-ID": BIG}}),
    ("POST", f"/v1/alerts/{BIG}/ack", {"json": {}}),
    ("POST", "/v1/alerts/1/ack", {"json": {"at": "0001-01-01T00:00:00+14:00"}}),
    ("POST", "/v1/alerts/1/ack", {"json": {"at": "9999-12-31T23:59:59-01:00"}}),
    ("DELETE", f"/v1/admin/webhooks/{BIG}", {}),
    ("GET", "/v1/admin/webhook-deliveries", {"params": {"webhook_id": BIG}}),
    ("POST", f"/v1/admin/webhook-deliveries/{BIG}/retry", {}),
    ("POST", f"/v1/admin/dead-letters/{BIG}/retry", {}),
    ("POST", f"/v1/admin/tokens/{BIG}/revoke", {}),
    ("GET", "/v1/reports/adherence", {"params": {"from": "0001-01-01T00:00:00+14:00"}}),
    ("GET", "/v1/reports/adherence", {"params": {"to": "9999-12-31T23:59:59-01:00"}}),
    ("GET", "/v1/reports/adherence", {"params": {"unit": "\x00"}}),
    ("GET", "/v1/patients/PE%00", {}),
    ("POST", "/v1/admin/quarantined-events", {"json": {"event_id": "a\x00", "reason": "x"}}),
    ("DELETE", "/v1/admin/quarantined-events", {"params": {"event_id": "\x00"}}),
]


def _nested(levels: int) -> bytes:
    return b'{"events": [' + b'{"k": ' * levels + b"1" + b"}" * levels + b"]}"


@pytest.mark.parametrize(("method", "path", "options"), EDGE, ids=[f"{m} {p}" for m, p, _ in EDGE])
def test_edge_input_is_a_4xx_and_in_the_request_log(
    on_postgres: tuple[TestClient, dict[str, str], Services],
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    options: dict[str, Any],
) -> None:
    client, headers, _ = on_postgres
    caplog.set_level(logging.INFO, logger="monitor.api")
    response = client.request(method, path, headers=headers | options.pop("headers", {}), **options)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    logged = [r for r in caplog.records if r.getMessage() == "request"]
    assert [r.__dict__["status"] for r in logged] == [response.status_code]
    assert logged[0].__dict__["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("levels", [256, 500, 990, 5000])
def test_bodies_nested_hundreds_of_levels_are_400(
    on_postgres: tuple[TestClient, dict[str, str], Services], levels: int
) -> None:
    client, headers, _ = on_postgres
    for path in ("/v1/events", "/v1/alerts/1/ack", "/v1/admin/webhooks", "/fhir/r4"):
        response = client.post(
            path, content=_nested(levels), headers=headers | {"Content-Type": "application/json"}
        )
        assert response.status_code == 400, (path, levels, response.text)
