"""Issue 11, items 2, 3 and 8: limits before work at the HTTP boundary (`monitor.api.guard`).

The app is called as an ASGI server calls it, with a `receive` that counts what is read, so
"nothing was read" is observed, not assumed: no token, no body read (401); a token and a body
over the limit, streamed without a length, read only up to the limit (413); a declared length
over the limit, nothing read. Control characters in the path or query are a 422; every answer
carries a request id, and an unhandled error is a 500 naming it, logged once without the
error's message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI

from monitor.app import create_app
from monitor.auth.roles import Role
from monitor.operations.logsafe import format_exception
from monitor.services import Services
from tests.common import factories as f
from tests.common.service import Api, rows

CHUNK = 64 * 1024
LEAKY_VALUE = "PX-SECRET-77 sensory 3"  # what a careless exception message would carry


@dataclass
class Received:
    """What the app read of the body: calls to `receive` and bytes handed over."""

    calls: int = 0
    bytes: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)


def call_asgi(
    app: FastAPI,
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    body_chunks: Iterator[bytes] | None = None,
    query: bytes = b"",
) -> tuple[int, dict[str, str], bytes, Received]:
    """One request straight into the ASGI app; the body comes from `body_chunks` (endless
    streams allowed: only what the app asks for is produced)."""
    received = Received()
    chunks = body_chunks or iter(())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        received.calls += 1
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        received.bytes += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], response_headers, body, received


def endless() -> Iterator[bytes]:
    while True:
        yield b" " * CHUNK


@pytest.fixture
def app(services: Services) -> FastAPI:
    return create_app(services)


def bearer(tokens: dict[Role, str], role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[role]}"}


BODY_ROUTES = [
    ("POST", "/v1/events"),
    ("POST", "/v1/alerts/1/ack"),
    ("POST", "/v1/admin/webhooks"),
    ("POST", "/v1/admin/quarantined-events"),
    ("POST", "/fhir/r4"),
    ("POST", "/cds-services/bortezomib-order-check"),
    ("POST", "/cds-services/bortezomib-order-check/feedback"),
]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=[p for _, p in BODY_ROUTES])
@pytest.mark.parametrize("token", ["none", "unknown"])
def test_without_a_valid_token_no_byte_of_the_body_is_read(
    app: FastAPI, services: Services, method: str, path: str, token: str
) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(300 * 1024 * 1024)}
    if token == "unknown":
        headers["Authorization"] = "Bearer bm_not-a-real-token"
    status, response_headers, body, received = call_asgi(
        app, method, path, headers=headers, body_chunks=endless()
    )
    assert status == 401, body
    assert response_headers["www-authenticate"] == "Bearer"
    assert (received.calls, received.bytes) == (0, 0)
    # refused before anyone was known, and recorded so
    [audit] = rows(services, "SELECT actor, role, resource, status_code FROM audit_log")
    assert audit == {"actor": "anonymous", "role": "none", "resource": "-", "status_code": 401}


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=[p for _, p in BODY_ROUTES])
def test_a_streamed_body_over_the_limit_is_read_only_up_to_it(
    app: FastAPI, services: Services, tokens: dict[Role, str], method: str, path: str
) -> None:
    limit = services.settings.max_body_bytes
    headers = {"Content-Type": "application/json"} | bearer(tokens, "admin")  # no length
    status, _, body, received = call_asgi(app, method, path, headers=headers, body_chunks=endless())
    assert status == 413, body
    assert f"body over {limit} bytes" in body.decode()
    assert received.bytes <= limit + CHUNK
    assert rows(services, "SELECT count(*) AS n FROM event") == [{"n": 0}]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=[p for _, p in BODY_ROUTES])
def test_a_declared_length_over_the_limit_reads_nothing(
    app: FastAPI, services: Services, tokens: dict[Role, str], method: str, path: str
) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(200 * 1024 * 1024)}
    status, _, _, received = call_asgi(
        app, method, path, headers=headers | bearer(tokens, "admin"), body_chunks=endless()
    )
    assert status == 413
    assert received.bytes == 0


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/v1/alerts", b"unit=%00", "unit"),
        ("/v1/alerts", b"unit=u7%0A", "unit"),
        ("/v1/reports/adherence", b"unit=%1b%5b31m", "unit"),
        ("/v1/patients/P\x001", b"", "path"),
        ("/v1/alerts", b"%00=1", "?"),
    ],
    ids=["nul", "newline", "escape", "path-nul", "name"],
)
def test_control_characters_in_the_path_or_query_are_422(
    app: FastAPI, tokens: dict[Role, str], path: str, query: bytes, field: str
) -> None:
    status, _, body, _ = call_asgi(app, "GET", path, headers=bearer(tokens, "admin"), query=query)
    assert status == 422, body
    [problem] = json.loads(body)["errors"]
    assert problem["field"] == field
    assert "control character U+00" in problem["message"]


def test_every_answer_carries_a_request_id_and_a_sane_one_given_is_kept(api: Api) -> None:
    first = api.get("/healthz", role=None)
    assert len(first.headers["x-request-id"]) == 32
    given = api.client.get("/healthz", headers={"X-Request-ID": "ward7-42"})
    assert given.headers["x-request-id"] == "ward7-42"
    odd = api.client.get("/healthz", headers={"X-Request-ID": "a b\tc"})
    assert odd.headers["x-request-id"] != "a b\tc"
    refused = api.get("/v1/alerts", role=None)
    assert refused.status_code == 401
    assert "x-request-id" in refused.headers


def test_an_unhandled_error_is_a_500_naming_the_request_logged_without_its_message(
    services: Services, tokens: dict[Role, str], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(services)

    @app.get("/v1/boom")
    def boom() -> None:
        raise KeyError(LEAKY_VALUE)  # the traceback shows this line: the code, not the value

    caplog.set_level(logging.INFO, logger="monitor.api")
    status, headers, body, _ = call_asgi(app, "GET", "/v1/boom", headers=bearer(tokens, "admin"))
    assert status == 500
    answer = json.loads(body)
    assert answer == {"detail": "internal error", "request_id": headers["x-request-id"]}
    failed = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert len(failed) == 1
    assert failed[0].__dict__["route"] == "/v1/boom"
    assert failed[0].__dict__["error_type"] == "KeyError"
    traceback_text = format_exception(failed[0].exc_info)  # type: ignore[arg-type]
    assert "KeyError" in traceback_text
    assert "PX-SECRET" not in traceback_text
    [line] = [r for r in caplog.records if r.getMessage() == "request"]
    assert (line.__dict__["status"], line.__dict__["route"]) == (500, "/v1/boom")


# --- strict JSON everywhere, and acknowledgements that make sense ----------------------------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"note": "a", "note": "b"}', "the key 'note' appears twice"),
        (b'{"note": "\xe9"}', "not UTF-8"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"note": ' + b"[" * 100 + b"]" * 100 + b"}", "nested too deeply"),
    ],
    ids=["duplicate-key", "latin-1", "utf-16", "deep"],
)
def test_a_body_fastapi_parses_is_as_strict_as_the_others(
    api: Api, content: bytes, fragment: str
) -> None:
    """`POST /v1/alerts/{id}/ack` and `POST /v1/admin/webhooks` take a model as their body:
    FastAPI parses it, through the app's strict JSON reader (`StrictJsonRoute`)."""
    for path, role in (("/v1/alerts/1/ack", "nurse"), ("/v1/admin/webhooks", "admin")):
        response = api.client.post(
            path,
            content=content,
            headers=api.headers(role) | {"Content-Type": "application/json"},  # type: ignore[arg-type]
        )
        assert response.status_code == 400, (path, response.text)
        assert fragment in response.json()["detail"]


def test_an_acknowledgement_dated_before_its_alert_or_out_of_range_is_refused(
    api: Api, services: Services, worker: Any
) -> None:
    body = f.enrollment(f.at(0), patient="PA", event_id="pa-e", risk_factors=["diabetes"])
    body |= {"route": "IV", "schedule": "twice_weekly"}
    assert api.post_events(body).status_code == 202
    assert worker.wait_idle()
    [first, *_] = api.get("/v1/alerts").json()["alerts"]
    raised = first["created_at"]
    for at, fragment in (
        ("2026-10-01T11:59:00Z", "is before the alert was raised"),
        ("0001-01-01T00:00:00+14:00", "out of range"),
        ("9999-12-31T23:59:59-01:00", "out of range"),
        ("1899-12-31T23:59:59Z", "out of range"),
    ):
        response = api.client.post(
            f"/v1/alerts/{first['id']}/ack", json={"at": at}, headers=api.headers("nurse")
        )
        assert response.status_code == 422, (at, response.text)
        assert fragment in response.text, at
    assert rows(services, "SELECT id FROM alert_ack") == []
    ok = api.client.post(
        f"/v1/alerts/{first['id']}/ack", json={"at": raised}, headers=api.headers("nurse")
    )
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/static/app.js"])
def test_the_api_description_and_static_files_need_no_token(api: Api, path: str) -> None:
    assert api.get(path, role=None).status_code == 200


def test_an_unknown_path_without_a_token_is_401_not_404(api: Api) -> None:
    """Which paths exist is not told to strangers."""
    assert api.get("/v1/nothing-here", role=None).status_code == 401
    assert api.get("/v1/nothing-here", role="nurse").status_code == 404
