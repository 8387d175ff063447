"""Debian's chromium driven by Playwright, for the tests that need a real browser (the web page,
the HTML report). Without chromium or playwright they skip; with CI set they fail instead."""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = pathlib.Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def require_browser() -> ModuleType:
    """`playwright.sync_api`; skips when it or chromium is missing, fails when CI is set (the
    policy of `tests.conftest.require_server`)."""
    problem = None
    try:
        from playwright import sync_api
    except ImportError as exc:
        problem = f"the playwright module is not installed ({exc}; pip install -e '.[dev]')"
    else:
        if not os.access(CHROMIUM, os.X_OK):
            problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    if problem is None:
        return sync_api
    if os.environ.get("CI"):
        pytest.fail(f"{problem}, and CI is set: the browser test must run")
    pytest.skip(f"{problem}: browser test skipped (set CI to insist)")


@contextlib.contextmanager
def launched_browser() -> Iterator[Browser]:
    """A headless chromium for a module's tests, closed with its Playwright afterwards."""
    sync_api = require_browser()
    playwright = sync_api.sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield launched
        launched.close()
    finally:
        playwright.stop()
