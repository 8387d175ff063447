"""Fixtures of the service tests: the embedded service (SQLite, in-process worker) over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from monitor.app import create_app
from monitor.auth.roles import Role
from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services
from tests.common.service import Api


@pytest.fixture
def worker(services: Services) -> Iterator[InProcessWorker]:
    """The embedded mode's worker thread, as `services.dispatcher`."""
    running = InProcessWorker(services)
    services.dispatcher = running
    running.start()
    yield running
    running.stop()
    services.dispatcher = None


@pytest.fixture
def api(services: Services, worker: InProcessWorker, tokens: dict[Role, str]) -> Iterator[Api]:
    """`create_app(services)` with the in-process worker, called through Starlette's client."""
    with TestClient(create_app(services)) as client:
        yield Api(client, tokens)
