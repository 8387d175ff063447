"""Shared fixtures: an embedded-mode service on a temporary SQLite file, tokens per role, and
the reachability of the machine's PostgreSQL and Redis for integration tests."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import socket
from collections.abc import Iterator

import pytest

from monitor.auth.roles import ROLES, Role
from monitor.auth.tokens import create_token
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade

PG_URL = os.environ.get(
    "MONITOR_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("MONITOR_TEST_BROKER_URL", "redis://127.0.0.1:6379/15")
FIXED_NOW = dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.UTC)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Integration tests run when the server is reachable; with CI set they must."""
    if reachable(host, port):
        return
    if os.environ.get("CI"):
        pytest.fail(f"{name} at {host}:{port} is unreachable, and CI is set: it must run")
    pytest.skip(f"{name} at {host}:{port} is unreachable (start it, or set CI to insist)")


@pytest.fixture
def sqlite_settings(tmp_path: pathlib.Path) -> Settings:
    return Settings(
        # the service tests were written for version 1's decisions: they name it (version 2's
        # rules have their own tests, tests/policies/test_v2_*.py)
        policy="default@1",
        alert_info_decisions=True,  # every decision with an audience alerts, as before issue 14
        database_url=f"sqlite:///{tmp_path / 'monitor.db'}",
        data_dir=tmp_path,
        fixed_now=FIXED_NOW,
        task_retry_backoff_s=0.01,
        task_retry_backoff_max_s=0.05,
        # the tests' webhook receivers listen on loopback: an on-premise receiver
        webhook_allow_networks=["127.0.0.0/8", "::1/128"],
    )


@pytest.fixture
def services(sqlite_settings: Settings) -> Iterator[Services]:
    svc = build_services(sqlite_settings)
    upgrade(svc.engine)
    yield svc
    svc.close()


@pytest.fixture
def tokens(services: Services) -> dict[Role, str]:
    """One token per role."""
    return {
        role: create_token(services.sessions, role, f"test-{role}", FIXED_NOW) for role in ROLES
    }
