"""The route dependencies (monitor/api/deps.py): every handler takes its services, clock and
caller from them, so a test swaps one with `app.dependency_overrides` (issue 12, item 2)."""

from __future__ import annotations

import datetime as dt
import typing

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRouter

import monitor.app
from monitor.api.deps import CareTeam, Clock, clock_of, get_clock, require
from monitor.app import create_app
from monitor.auth.tokens import Principal
from monitor.services import Services
from tests.common.service import Api, rows
from tests.conftest import FIXED_NOW

LATER = FIXED_NOW + dt.timedelta(days=3, hours=2)


def app_of(api: Api) -> FastAPI:
    app = api.client.app
    assert isinstance(app, FastAPI)
    return app


def test_the_clock_is_overridden_for_every_route(api: Api, services: Services) -> None:
    app_of(api).dependency_overrides[get_clock] = lambda: Clock(lambda: LATER)
    try:
        assert api.client.get("/v1/alerts", headers=api.headers("nurse")).status_code == 200
    finally:
        app_of(api).dependency_overrides.clear()
    [audited] = rows(services, "SELECT at FROM audit_log WHERE action = 'GET /v1/alerts'")
    assert str(audited["at"]).startswith(LATER.strftime("%Y-%m-%d %H:%M"))


def test_the_clock_reads_the_settings_of_the_moment(api: Api, services: Services) -> None:
    """A long request (an open stream) sees a settings change: the clock is not a snapshot."""
    clock = clock_of(services)
    assert clock.now() == FIXED_NOW
    services.settings = services.settings.model_copy(update={"fixed_now": LATER})
    assert clock.now() == LATER
    assert clock.wall().tzinfo is dt.UTC


def test_a_role_check_is_overridden(api: Api) -> None:
    """`CareTeam` is `Depends(require(*CARE_ROLES))`: its check is a dependency like any
    other."""
    check = typing.get_args(CareTeam)[1].dependency
    assert isinstance(check, require)
    assert api.client.get("/v1/alerts", headers=api.headers("auditor")).status_code == 403
    app_of(api).dependency_overrides[check] = lambda: Principal(name="stand-in", role="nurse")
    try:
        assert api.client.get("/v1/alerts", headers=api.headers("auditor")).status_code == 200
    finally:
        app_of(api).dependency_overrides.clear()


def test_admin_passes_every_role_check() -> None:
    assert require("nurse", "infusion").allowed == ("nurse", "infusion", "admin")
    assert require("admin").allowed == ("admin",)


def test_a_router_without_the_strict_route_class_is_refused(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every JSON body is read strictly (duplicate keys, depth, encoding): a domain router made
    with FastAPI's plain APIRouter would quietly read them leniently, so the app refuses it."""
    lenient = APIRouter()

    @lenient.post("/v1/lenient")
    def _lenient(body: dict[str, int]) -> dict[str, int]:
        return body

    monkeypatch.setattr(monitor.app, "ROUTERS", (*monitor.app.ROUTERS, lenient))
    with pytest.raises(RuntimeError, match="/v1/lenient"):
        create_app(services)
