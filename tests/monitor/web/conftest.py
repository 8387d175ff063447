"""Fixtures of the browser tests: a headless chromium per module, the service served by
uvicorn per test, a fresh browser context (its own sessionStorage) per test."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from monitor.auth.roles import Role
from monitor.services import Services
from tests.common.browser import launched_browser
from tests.monitor.web.site import WAIT_MS, Console, Site, free_port, serving

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_browser() as launched:
        yield launched


@pytest.fixture
def site(services: Services, tokens: dict[Role, str]) -> Iterator[Site]:
    services.settings = services.settings.model_copy(update={"stream_poll_s": 0.1})
    with serving(services, tokens, free_port()) as running:
        yield running


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: Browser, site: Site, console: Console, tmp_path: pathlib.Path) -> Iterator[Page]:
    """A fresh browser context (its own sessionStorage) per test; every test ends with no
    unexpected console error (a Content-Security-Policy violation is one)."""
    # times show in UTC, as the tests expect them (the page formats in the browser's zone)
    context = browser.new_context(timezone_id="UTC", locale="en-GB")
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    opened.on("console", console.on_console)
    opened.on("pageerror", console.on_page_error)
    try:
        yield opened
    finally:
        # what the page looked like at the end, for a failure (tmp_path only, not the repo)
        opened.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        context.close()
    assert console.unexpected() == [], console.errors
