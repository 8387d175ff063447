"""Issue 11, item 6: tokens are listed, revoked (CLI and admin API) and may expire; an open
alert stream checks its token at each poll and ends on revocation or expiry."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import time
from collections.abc import Callable

import httpx

from monitor.auth.roles import Role
from monitor.auth.tokens import authenticate, create_token
from monitor.services import Services
from tests.common.service import Api, rows
from tests.conftest import FIXED_NOW
from tests.monitor.alerts.test_router import Live, live  # noqa: F401  (the fixture)
from tests.monitor.test_cli_service import monitor


def test_the_cli_creates_lists_and_revokes_tokens(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    created = monitor(url, tmp_path, "token", "create", "--role", "nurse", "--name", "ward-7")
    assert created.returncode == 0, created.stderr
    expiring = monitor(
        url,
        tmp_path,
        "token",
        "create",
        "--role",
        "auditor",
        "--name",
        "audit",
        "--expires-in",
        "2d",
    )
    assert expiring.returncode == 0, expiring.stderr
    listed = monitor(url, tmp_path, "token", "list")
    views = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(v["id"], v["name"], v["role"], v["state"]) for v in views] == [
        (1, "ward-7", "nurse", "active"),
        (2, "audit", "auditor", "active"),
    ]
    assert views[0]["expires_at"] is None
    assert views[1]["expires_at"] is not None
    assert created.stdout.strip() not in listed.stdout  # never the token, nor its hash
    assert "token_hash" not in views[0]

    revoked = monitor(url, tmp_path, "token", "revoke", "1")
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["state"] == "revoked"
    again = monitor(url, tmp_path, "token", "revoke", "1")
    assert (again.returncode, again.stderr.strip()) == (1, "token: no active token 1")
    by_name = monitor(url, tmp_path, "token", "revoke", "--name", "audit")
    assert [json.loads(line)["id"] for line in by_name.stdout.splitlines()] == [2]
    assert monitor(url, tmp_path, "token", "list").stdout == ""
    everything = monitor(url, tmp_path, "token", "list", "--all").stdout.splitlines()
    assert [json.loads(line)["state"] for line in everything] == ["revoked", "revoked"]
    bad = monitor(url, tmp_path, "token", "create", "--role", "nurse", "--expires-in", "soon")
    assert bad.returncode == 2
    assert "is not a duration" in bad.stderr


def test_an_expired_token_is_refused(services: Services) -> None:
    token = create_token(
        services.sessions, "nurse", "short", FIXED_NOW, FIXED_NOW + dt.timedelta(hours=1)
    )
    assert authenticate(services.sessions, token, FIXED_NOW) is not None
    assert authenticate(services.sessions, token, FIXED_NOW + dt.timedelta(hours=1)) is None


def test_admin_lists_and_revokes_tokens_over_the_api(
    api: Api, services: Services, tokens: dict[Role, str]
) -> None:
    listed = api.get("/v1/admin/tokens", role="admin")
    assert listed.status_code == 200
    names = {t["name"]: t for t in listed.json()["tokens"]}
    assert set(names) >= {"test-nurse", "test-admin"}
    fields = {"id", "name", "role", "units", "state", "created_at", "expires_at", "revoked_at"}
    assert all(set(t) == fields for t in names.values())
    nurse_id = names["test-nurse"]["id"]
    revoked = api.client.post(f"/v1/admin/tokens/{nurse_id}/revoke", headers=api.headers("admin"))
    assert revoked.status_code == 200
    assert (revoked.json()["state"], revoked.json()["already_revoked"]) == ("revoked", False)
    assert api.get("/v1/alerts", role="nurse").status_code == 401
    again = api.client.post(f"/v1/admin/tokens/{nurse_id}/revoke", headers=api.headers("admin"))
    assert again.json()["already_revoked"] is True
    assert (
        api.client.post("/v1/admin/tokens/9999/revoke", headers=api.headers("admin")).status_code
        == 404
    )
    assert api.get("/v1/admin/tokens", role="auditor").status_code == 403
    actions = [r["action"] for r in rows(services, "SELECT action FROM audit_log ORDER BY id")]
    assert actions.count("POST /v1/admin/tokens/{token_id}/revoke") == 3
    assert "GET /v1/admin/tokens" in actions


def stream_after(site: Live, token: str, meanwhile: Callable[[], None]) -> list[str]:
    """Open the alert stream with `token`, run `meanwhile` once it is open, and return the
    lines that came until the server ended it."""
    with (
        httpx.Client(base_url=site.base, timeout=httpx.Timeout(10.0)) as client,
        client.stream(
            "GET", "/v1/alerts/stream", headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines).startswith(":")  # the stream's opening comment
        meanwhile()
        return list(lines)  # returns only because the server ends the stream


def test_an_open_stream_ends_when_its_token_is_revoked(live: Live, services: Services) -> None:  # noqa: F811
    token = create_token(services.sessions, "nurse", "streaming", FIXED_NOW)
    [found] = rows(services, "SELECT id FROM api_token WHERE name = 'streaming'")

    def revoke() -> None:
        response = live.api.client.post(
            f"/v1/admin/tokens/{found['id']}/revoke", headers=live.api.headers("admin")
        )
        assert response.status_code == 200

    started = time.monotonic()
    rest = stream_after(live, token, revoke)
    assert any("no longer valid" in line for line in rest), rest
    assert time.monotonic() - started < 5  # at the next poll, not at stream_max_s
    with httpx.Client(base_url=live.base, timeout=10) as client:
        again = client.get("/v1/alerts/stream", headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 401


def test_an_open_stream_ends_when_its_token_expires(live: Live, services: Services) -> None:  # noqa: F811
    token = create_token(
        services.sessions, "nurse", "expiring", FIXED_NOW, FIXED_NOW + dt.timedelta(minutes=1)
    )

    def pass_the_expiry() -> None:  # the service clock moves on while the stream is open
        services.settings = services.settings.model_copy(
            update={"fixed_now": FIXED_NOW + dt.timedelta(minutes=2)}
        )

    rest = stream_after(live, token, pass_the_expiry)
    assert any("no longer valid" in line for line in rest), rest
