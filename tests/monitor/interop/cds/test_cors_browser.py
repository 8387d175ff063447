"""A real browser (Debian's chromium, Playwright) calling the CDS Hooks routes from a page of
another origin, as the sandbox's page does: chromium makes the preflight and enforces CORS
itself, which a test client cannot show. The page is served at http://localhost:<port> by a
plain HTTP server (Playwright's routing would answer the preflights itself), the service by
uvicorn at http://127.0.0.1:<port>; the page of http://127.0.0.1:<page port> is the origin
that is not allowed. The requests are the sandbox's (tests/common/cds_sandbox.py)."""

from __future__ import annotations

import http.server
import logging
import pathlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.common.browser import launched_browser
from tests.common.cds import CHECK, Keys, cds_service
from tests.common.cds_sandbox import sandbox_client, sandbox_jwt, sandbox_order, sandbox_request
from tests.monitor.web.site import Uvicorn, free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.usefixtures("sandbox_jwks_served")

# what the sandbox's axios call amounts to: fetch with its headers and a JSON body
FETCH = """async ([url, method, token, body]) => {
  const headers = {Accept: 'application/json', Authorization: 'Bearer ' + token};
  if (body !== null) headers['Content-Type'] = 'application/json';
  const init = {method, headers, body: body === null ? undefined : JSON.stringify(body)};
  try {
    const r = await fetch(url, init);
    return {status: r.status, json: await r.json(), requestId: r.headers.get('X-Request-ID')};
  } catch (e) {
    return {error: String(e)};
  }
}"""


@pytest.fixture(scope="module")
def page_port() -> Iterator[int]:
    """A blank page on 127.0.0.1:<port>: http://localhost:<port> is the EHR's origin."""
    page = b"<!doctype html><title>EHR</title>"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_args: Any) -> None:
            return

    pages = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=pages.serve_forever, daemon=True)
    thread.start()
    try:
        yield pages.server_address[1]
    finally:
        pages.shutdown()
        pages.server_close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    keys: Keys,
    jwks_url: str,
    sandbox_key: ec.EllipticCurvePrivateKey,
    page_port: int,
) -> Iterator[str]:
    """The service, the sandbox a client, the page's localhost origin allowed, on uvicorn."""
    client, _ = sandbox_client(sandbox_key)
    directory: pathlib.Path = tmp_path_factory.mktemp("cors-browser")
    with cds_service(
        directory,
        keys,
        jwks_url,
        extra_clients=(client,),
        cds_allowed_origins=[f"http://localhost:{page_port}"],
    ) as service:
        served = Uvicorn(service.client.app, free_port())  # type: ignore[arg-type]
        served.start()
        try:
            yield served.url
        finally:
            served.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_browser() as launched:
        yield launched


def page_at(browser: Browser, origin: str) -> Page:
    context = browser.new_context()  # its own cache: no preflight answer kept from another test
    page = context.new_page()
    page.goto(f"{origin}/")
    return page


def fetch(page: Page, url: str, method: str, token: str, body: Any = None) -> Any:
    return page.evaluate(FETCH, [url, method, token, body])


def preflights(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The statuses of the OPTIONS requests the service logged (the browser's preflights)."""
    return [
        r.__dict__["status"]
        for r in caplog.records
        if r.getMessage() == "request" and r.__dict__.get("method") == "OPTIONS"
    ]


def test_an_allowed_origin_gets_discovery_and_cards_in_chromium(
    server: str,
    browser: Browser,
    sandbox_key: ec.EllipticCurvePrivateKey,
    page_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    page = page_at(browser, f"http://localhost:{page_port}")
    with caplog.at_level(logging.INFO, logger="monitor.api"):
        discovery = fetch(
            page,
            f"{server}/cds-services",
            "GET",
            sandbox_jwt(sandbox_key, f"{server}/cds-services"),
        )
        assert discovery.get("status") == 200, discovery
        assert CHECK in {s["id"] for s in discovery["json"]["services"]}
        url = f"{server}/cds-services/{CHECK}"
        body = sandbox_request(
            "order-sign", "P-HELD", sandbox_order("P-HELD", category_as_list=True)
        )
        answer = fetch(page, url, "POST", sandbox_jwt(sandbox_key, url), body)
    assert answer.get("status") == 200, answer
    [card] = answer["json"]["cards"]
    assert card["indicator"] == "critical"
    assert answer["requestId"]  # exposed to the page
    assert preflights(caplog) == [200, 200]  # chromium asked first, for each URL
    page.context.close()


def test_a_refusal_is_readable_by_the_page(
    server: str, browser: Browser, sandbox_key: ec.EllipticCurvePrivateKey, page_port: int
) -> None:
    page = page_at(browser, f"http://localhost:{page_port}")
    url = f"{server}/cds-services/{CHECK}"
    body = sandbox_request("order-sign", "P-HELD", sandbox_order("P-HELD", category_as_list=True))
    wrong_audience = sandbox_jwt(sandbox_key, f"{server}/cds-services/other")
    answer = fetch(page, url, "POST", wrong_audience, body)
    assert answer.get("status") == 401, answer
    assert "audience" in answer["json"]["detail"]
    page.context.close()


def test_another_origin_is_blocked_by_chromium(
    server: str, browser: Browser, sandbox_key: ec.EllipticCurvePrivateKey, page_port: int
) -> None:
    page = page_at(browser, f"http://127.0.0.1:{page_port}")
    url = f"{server}/cds-services/{CHECK}"
    body = sandbox_request("order-sign", "P-HELD", sandbox_order("P-HELD", category_as_list=True))
    answer = fetch(page, url, "POST", sandbox_jwt(sandbox_key, url), body)
    assert answer == {"error": "TypeError: Failed to fetch"}
    page.context.close()
