"""The sign-in routes without a provider running (monitor/web/signin/router.py): what the pages
are told, the flow's routes only when configured, a provider out of reach answered with a page
(502), never a 500. The flow itself, against a real provider: test_signin_browser.py."""

from __future__ import annotations

from fastapi.testclient import TestClient
from pydantic import SecretStr

from monitor.app import create_app
from monitor.services import Services
from tests.monitor.web.site import free_port

UNREACHABLE = f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_without_sign_in_the_pages_are_told_to_ask_for_a_token(services: Services) -> None:
    client = TestClient(create_app(services))
    assert client.get("/auth/options").json() == {"sign_in": False}
    for path in ("/auth/login", "/auth/callback", "/auth/logout"):
        assert client.get(path, follow_redirects=False).status_code == 404, path


def test_a_provider_out_of_reach_is_a_page_saying_so(services: Services) -> None:
    services.settings = services.settings.model_copy(
        update={
            "oidc_issuer": UNREACHABLE,
            "oidc_audience": "bipn-monitor",
            "oidc_client_id": "bipn-web",
            "session_secret": SecretStr("the-session-secret-of-the-router-tests"),
        }
    )
    client = TestClient(create_app(services))
    assert client.get("/auth/options").json() == {"sign_in": True}
    login = client.get("/auth/login", params={"next": "/chair"})
    assert login.status_code == 502
    assert "The sign-in provider cannot be reached" in login.text
    assert login.headers["content-security-policy"].startswith("default-src 'self'")
    assert 'href="/auth/login?next=/chair"' in login.text
    # logging out still drops the flow and goes home
    logout = client.get("/auth/logout", follow_redirects=False)
    assert (logout.status_code, logout.headers["location"]) == (303, "/")
