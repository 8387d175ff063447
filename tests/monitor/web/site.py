"""What the browser tests of the web pages (monitor/web/) share: the service served by uvicorn
on a free port, HTTP calls made as a client would, console errors, logging in, the accessibility
check (axe-core, from the axe-playwright-python package) and the screenshots.

The fixtures that build these are in tests/monitor/web/conftest.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pathlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn
from fastapi import FastAPI

from monitor.app import create_app
from monitor.auth.roles import Role
from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services
from tests.conftest import FIXED_NOW

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Locator, Page

WAIT_MS = 10_000  # for what the page does on its own (the stream polls every 0.1 s here)
# Set MONITOR_SCREENSHOTS=DIR to keep the screenshots for a look (they go nowhere otherwise).
_SHOTS_DIR = os.environ.get("MONITOR_SCREENSHOTS", "")
SHOTS = pathlib.Path(_SHOTS_DIR) if _SHOTS_DIR else None
# the two widths every screen is looked at: a desktop and a phone
VIEWPORTS = [(1280, 900), (390, 844)]
VIEWPORT_IDS = ["desktop", "phone"]
# The patient page asks for the clearance; for the roles other than infusion and admin the
# answer is a 403 (the section stays hidden), which the browser logs as a console error.


def days_ago(days: float) -> dt.datetime:
    return FIXED_NOW - dt.timedelta(days=days)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Uvicorn:
    """uvicorn serving `app` on 127.0.0.1:`port` in a background thread; stop and start again
    on the same port (the browser then sees the server go away and come back)."""

    def __init__(self, app: FastAPI, port: int) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,  # the open SSE stream never ends on its own
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive(), f"uvicorn did not start on port {self.port}"
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            time.sleep(0.01)

    def stop(self) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.should_exit = True
        self._thread.join(10)
        assert not self._thread.is_alive(), "uvicorn did not stop within 10 s"


@dataclass
class Site:
    """The running service: its URL, tokens, and HTTP calls made as a client would."""

    server: Uvicorn
    services: Services
    worker: InProcessWorker
    tokens: dict[Role, str]
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.server.url, timeout=10)

    @property
    def url(self) -> str:
        return self.server.url

    def get(self, path: str, role: Role = "nurse", **params: Any) -> Any:
        response = self.http.get(path, params=params, headers=self.auth(role))
        assert response.status_code == 200, response.text
        return response.json()

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def post_events(self, *bodies: dict[str, Any]) -> None:
        response = self.http.post(
            "/v1/events", json={"events": list(bodies)}, headers=self.auth("ingest")
        )
        assert response.status_code == 202, response.text
        assert self.worker.wait_idle(), "the worker did not finish the events"

    def alerts_after(self, after: int) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.get("/v1/alerts", after=after, limit=500)["alerts"]
        return alerts

    def last_alert_id(self) -> int:
        last: int = self.get("/v1/alerts", limit=1)["last_id"]
        return last


class Console:
    """Console errors and uncaught page errors; `allow` names the expected ones (by regex)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location.get('url')})")

    def on_page_error(self, error: Any) -> None:
        self.errors.append(f"pageerror: {error}")

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


def log_in(page: Page, site: Site, path: str, token: str) -> None:
    page.goto(site.url + path)
    login = page.locator("#login")
    login.wait_for(state="visible")
    page.fill("#token", token)
    page.click("#login button[type=submit]")


def alert_ids_shown(page: Page) -> list[int]:
    values = page.locator("#alerts [data-alert-id]").evaluate_all(
        "nodes => nodes.map(n => Number(n.dataset.alertId))"
    )
    return [int(v) for v in values]


def wait_live(page: Page) -> None:
    page.wait_for_selector("#live.on", state="visible")
    assert page.inner_text("#live") == "live"


def item(page: Page, alert_id: int) -> Locator:
    return page.locator(f'#alerts [data-alert-id="{alert_id}"]')


def keep_screenshot(page: Page, name: str) -> None:
    """A full-page screenshot into MONITOR_SCREENSHOTS (when set), named `name`.png."""
    if SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def assert_fits(page: Page, width: int) -> None:
    """Nothing spills out sideways (a phone would scroll the whole page)."""
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page is {scroll} px wide at a {width} px viewport"


def assert_accessible(page: Page) -> None:
    """axe-core over the page as it is now: no violation of impact serious or critical."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page).response
    bad = [v for v in results["violations"] if v.get("impact") in ("serious", "critical")]
    report = [
        f"{v['id']} ({v['impact']}): {v['help']}: "
        + "; ".join(str(n.get("target")) for n in v["nodes"][:5])
        for v in bad
    ]
    assert not bad, "\n".join(report)


def tab_to(page: Page, selector: str, limit: int = 150) -> None:
    """Press Tab (only the keyboard) until the element matching `selector` has the focus."""
    for _ in range(limit):
        if page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} never got the focus within {limit} Tab presses")


def log_in_by_keyboard(page: Page, site: Site, path: str, token: str) -> None:
    """Log in with the keyboard only: Tab to the token field, type it, Enter."""
    page.goto(site.url + path)
    page.locator("#login").wait_for(state="visible")
    tab_to(page, "#token")
    page.keyboard.type(token)
    page.keyboard.press("Enter")


@contextlib.contextmanager
def serving(services: Services, tokens: dict[Role, str], port: int) -> Iterator[Site]:
    """The app under uvicorn on `port`, its in-process worker folding what it stores."""
    worker = InProcessWorker(services)
    services.dispatcher = worker
    worker.start()
    server = Uvicorn(create_app(services), port)
    server.start()
    running = Site(server, services, worker, tokens)
    try:
        yield running
    finally:
        running.http.close()
        server.stop()
        worker.stop()
        services.dispatcher = None
