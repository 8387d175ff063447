"""`/docs` and `/redoc` in chromium with every request to another host refused, as on a
hospital network without a way out: the pages still render the API's operations, and ask for
nothing outside the service."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest

from monitor.app import create_app
from monitor.services import Services
from tests.common.browser import launched_browser
from tests.monitor.web.site import Uvicorn, free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

WAIT_MS = 20_000  # the bundles are over 1 MB each; the machine may be busy
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_browser() as launched:
        yield launched


@pytest.fixture
def server(services: Services) -> Iterator[Uvicorn]:
    running = Uvicorn(create_app(services), free_port())
    running.start()
    yield running
    running.stop()


def operation_count(server: Uvicorn) -> int:
    document = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    return sum(1 for item in document["paths"].values() for method in item if method in METHODS)


class Offline:
    """Refuses (and records) every request to a host other than the service's."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.console: list[str] = []  # errors, Content-Security-Policy refusals among them

    def route(self, route: Route) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.refused.append(route.request.url)
            route.abort("internetdisconnected")


@pytest.fixture
def offline_page(browser: Browser) -> Iterator[tuple[Page, Offline]]:
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    offline = Offline()
    context.route("**/*", offline.route)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: offline.console.append(m.text) if m.type == "error" else None)
    try:
        yield page, offline
    finally:
        context.close()
    assert errors == []


def test_swagger_ui_renders_the_operations_offline(
    server: Uvicorn, offline_page: tuple[Page, Offline]
) -> None:
    page, offline = offline_page
    page.goto(f"{server.url}/docs")
    page.locator(".opblock-summary-path", has_text="/v1/events").first.wait_for()
    # every operation of the document, not an error box
    assert page.locator(".opblock").count() == operation_count(server) > 30
    assert page.locator(".info .title").inner_text().startswith("bipn-monitor")
    assert page.locator(".errors-wrapper").count() == 0
    assert offline.refused == []  # it asked for nothing elsewhere
    assert offline.console == []  # and its policy refused nothing


def test_redoc_renders_the_operations_offline(
    server: Uvicorn, offline_page: tuple[Page, Offline]
) -> None:
    page, offline = offline_page
    page.goto(f"{server.url}/redoc")
    page.get_by_role("heading", name="bipn-monitor").first.wait_for()
    page.locator("[data-section-id^='tag/']").first.wait_for()
    assert page.locator("[data-section-id^='operation/']").count() == operation_count(server)
    assert offline.refused == []
    # Redoc's sidebar links Redocly with their logo from their CDN: the policy keeps it out
    assert len(offline.console) == 1
    assert "Content Security Policy" in offline.console[0]
    assert "https://cdn.redoc.ly/redoc/logo-mini.svg" in offline.console[0]
