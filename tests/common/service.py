"""Helpers of the service tests: an HTTP client with a token per role, row counts, waiting.

The fixtures that build these are in tests/monitor/conftest.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import pathlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from starlette.testclient import TestClient

from monitor.app import create_app
from monitor.auth.roles import ROLES, Role
from monitor.auth.tokens import create_token
from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from policies import Decision, PolicyPack, evaluate, parse_event

# Where the tests' webhook receivers listen (allowed as a site allows an on-premise receiver).
TEST_RECEIVER_NETWORKS = ["127.0.0.0/8", "::1/128"]
# Tables whose row counts a rejected request must leave unchanged.
DATA_TABLES = ("event", "outbox", "patient", "decision", "alert", "dead_letter")


class Api:
    """The app under test, called as a client would: JSON bodies, bearer tokens by role."""

    def __init__(self, client: TestClient, tokens: dict[Role, str]) -> None:
        self.client = client
        self.tokens = tokens

    def headers(self, role: Role | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}

    def post_events(self, body: Any, role: Role | None = "ingest") -> Any:
        """POST /v1/events with `body` as JSON (one event, a batch, or anything else)."""
        return self.post_raw(json.dumps(body).encode(), role=role)

    def post_raw(
        self,
        content: bytes | Iterable[bytes],
        content_type: str | None = "application/json",
        role: Role | None = "ingest",
    ) -> Any:
        headers = self.headers(role)
        if content_type is not None:
            headers["Content-Type"] = content_type
        return self.client.post("/v1/events", content=content, headers=headers)

    def get(self, path: str, role: Role | None = "nurse", **params: str) -> Any:
        return self.client.get(path, headers=self.headers(role), params=params)

    def decisions(self, patient_id: str, *, superseded: bool = False) -> list[dict[str, Any]]:
        params = {"include": "superseded"} if superseded else {}
        response = self.get(f"/v1/patients/{patient_id}/decisions", **params)
        assert response.status_code == 200, response.text
        assert response.json()["patient_id"] == patient_id
        decisions: list[dict[str, Any]] = response.json()["decisions"]
        return decisions


class RecordingDispatcher:
    """A dispatcher that records what it is given and hands it over to nobody (thread-safe):
    whatever is due stays due, so only the jobs' own bookkeeping prevents a second send."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: list[str] = []
        self.deliveries: list[int] = []

    def enqueue(self, patient_ids: list[str]) -> int:
        with self._lock:
            self.sent.extend(patient_ids)
        return len(patient_ids)

    def enqueue_deliveries(self, delivery_ids: list[int]) -> int:
        with self._lock:
            self.deliveries.extend(delivery_ids)
        return len(delivery_ids)

    def ping(self) -> bool:
        return True


def row_counts(services: Services, tables: Iterable[str] = DATA_TABLES) -> dict[str, int]:
    with services.engine.connect() as connection:
        return {
            table: int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in tables
        }


def rows(services: Services, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Raw SQL, each row as a dict (what the database holds, not what the API says)."""
    with services.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(text(sql), params)]


def eventually(
    predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition"
) -> None:
    """Poll until `predicate()` holds (work on another thread), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"{what} did not hold within {timeout} s")


def expected_decisions(
    pack: PolicyPack, bodies: Iterable[dict[str, Any]], until: dt.datetime
) -> list[dict[str, Any]]:
    """What replay prints for these events at this clock, as the API's JSON."""
    decisions: list[Decision] = evaluate(pack, [parse_event(b) for b in bodies], until)
    return [d.model_dump(mode="json", exclude_none=True) for d in decisions]


def current_decisions(api: Api, patient_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Every current decision of these patients, sorted as replay sorts them."""
    found = [d for p in sorted(set(patient_ids)) for d in api.decisions(p)]
    return sorted(found, key=lambda d: (instant(d["at"]), d["decision_id"]))


def instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class RunningService:
    services: Services
    worker: InProcessWorker
    api: Api


@contextlib.contextmanager
def running_service(directory: pathlib.Path, **overrides: Any) -> Iterator[RunningService]:
    """The embedded service on a new SQLite file in `directory`, for fixtures wider than one
    test (module scope) or one test's several services (one per hypothesis example)."""
    from tests.conftest import FIXED_NOW

    settings = Settings(
        database_url=f"sqlite:///{directory / 'monitor.db'}",
        data_dir=directory,
        **(
            {
                "policy": "default@1",  # the decisions these tests expect are version 1's
                # and every decision with an audience raises an alert, as before issue 14
                # (the quiet default has its own tests)
                "alert_info_decisions": True,
                "fixed_now": FIXED_NOW,
                "task_retry_backoff_s": 0.01,
                "task_retry_backoff_max_s": 0.05,
                # an alert stream ends at once: in-process clients read it whole
                "stream_max_s": 0.2,
                "stream_poll_s": 0.05,
                # the tests' webhook receivers listen on loopback: an on-premise receiver
                "webhook_allow_networks": TEST_RECEIVER_NETWORKS,
            }
            | overrides
        ),
    )
    services = build_services(settings)
    upgrade(services.engine)
    tokens = {
        role: create_token(services.sessions, role, f"test-{role}", FIXED_NOW) for role in ROLES
    }
    worker = InProcessWorker(services)
    services.dispatcher = worker
    worker.start()
    try:
        with TestClient(create_app(services)) as client:
            yield RunningService(services, worker, Api(client, tokens))
    finally:
        worker.stop()
        services.close()
