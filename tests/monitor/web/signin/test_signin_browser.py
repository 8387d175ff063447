"""Issue 15, item 5: staff sign in at the hospital's OpenID Connect provider, in Debian's chromium
at desktop width: the page offers "Sign in", the provider (oidc-provider, started here) shows
its login form and consent, the page comes back signed in (the feed loads, the role shown), with
the provider's access token as its bearer; it returns to sign-in when that token expires, and
"Log out" ends the provider's session too."""

from __future__ import annotations

import base64
import json
import pathlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from monitor.auth.roles import Role
from monitor.services import Services
from monitor.settings import Settings
from tests.common import factories as f
from tests.common.service import rows
from tests.monitor.auth.oidc.provider import RunningProvider, running_provider
from tests.monitor.web.site import (
    Site,
    assert_accessible,
    days_ago,
    free_port,
    serving,
    wait_live,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

SERVICE_PORT = free_port()
SERVICE = f"http://127.0.0.1:{SERVICE_PORT}"
ACCOUNTS = {
    "nurse-7": {"groups": ["bipn-nurses"], "units": ["U-A"]},
    "visitor-1": {"groups": ["cafeteria"], "units": ["U-A"]},
}


def web_client(client_id: str) -> dict[str, Any]:
    """The pages' client as a hospital registers it: public (no secret), code flow, PKCE (the
    provider requires it), the service's callback and home page as its redirect URIs."""
    return {
        "client_id": client_id,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "redirect_uris": [f"{SERVICE}/auth/callback"],
        "post_logout_redirect_uris": [f"{SERVICE}/"],
    }


@pytest.fixture(scope="module")
def provider() -> Iterator[RunningProvider]:
    config = {
        "clients": [web_client("bipn-web"), web_client("bipn-web-short")],
        "accounts": ACCOUNTS,
        "machines": {},
        "ttl": {"bipn-web-short": 6},
    }
    with running_provider(free_port(), config) as running:
        yield running


@pytest.fixture
def client_id() -> str:
    return "bipn-web"


@pytest.fixture
def sqlite_settings(
    sqlite_settings: Settings, provider: RunningProvider, client_id: str
) -> Settings:
    return Settings.model_validate(
        {
            **sqlite_settings.model_dump(exclude_unset=True),
            "stream_poll_s": 0.1,
            "oidc_issuer": provider.issuer,
            "oidc_audience": provider.config["audience"],
            "oidc_role_claim": "groups",
            "oidc_role_map": {"bipn-nurses": "nurse"},
            "oidc_leeway_s": 0,
            "oidc_client_id": client_id,
            "oidc_scope": "openid monitor",
            "session_secret": "the-session-secret-of-the-sign-in-tests",
        }
    )


@pytest.fixture
def site(services: Services, tokens: dict[Role, str]) -> Iterator[Site]:
    """The service on the port the provider's client names in its redirect URIs."""
    with serving(services, tokens, SERVICE_PORT) as running:
        yield running


@pytest.fixture(autouse=True)
def no_web_fonts(page: Page) -> None:
    """The provider's development pages link Google's fonts: answered here with nothing (the
    test machine is offline, and the fonts are not the service's)."""
    page.route(
        re.compile(r"^https://fonts\.(googleapis|gstatic)\.com/"),
        lambda route: route.fulfill(status=200, content_type="text/css", body=""),
    )


def sign_in(page: Page, provider: RunningProvider, login: str) -> None:
    """From the page's "Sign in" through the provider's login form and consent."""
    page.locator("#sign-in").click()
    page.wait_for_url(re.compile(re.escape(provider.issuer) + "/interaction/"))
    page.fill('input[name="login"]', login)
    page.fill('input[name="password"]', "any password: the provider's development form")
    page.click('button[type="submit"]')
    if page.locator('button[type="submit"]:has-text("Continue")').count():  # consent
        page.click('button[type="submit"]:has-text("Continue")')


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def test_a_nurse_signs_in_at_the_provider_and_the_feed_loads(
    page: Page, site: Site, provider: RunningProvider, tmp_path: pathlib.Path
) -> None:
    site.post_events(
        f.enrollment(days_ago(10), patient="PT-1", event_id="si-e", unit="U-A"),
        f.assessment(days_ago(1), patient="PT-1", event_id="si-a1", sensory=3),
    )
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(site.url + "/")
    page.locator("#sign-in").wait_for(state="visible")
    assert page.locator("#token").is_hidden()  # no pasting a token when the provider signs in
    assert_accessible(page)

    sign_in(page, provider, "nurse-7")

    page.wait_for_url(site.url + "/")
    page.wait_for_selector("#feed", state="visible")
    wait_live(page)
    page.wait_for_function("document.querySelector('#who')?.textContent === 'nurse · U-A'")
    assert page.locator("#alerts [data-alert-id]").count() >= 1
    page.screenshot(path=str(tmp_path / "signed-in.png"), full_page=True)

    token = page.evaluate("sessionStorage.getItem('bipn-monitor-token')")
    claims = claims_of(token)
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == provider.config["audience"]
    assert claims["sub"] == "nurse-7"
    # the token never went through a URL
    assert "token" not in page.url
    me = httpx.get(f"{site.url}/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["name"] == "oidc:nurse-7"
    audit = rows(site.services, "SELECT actor, action, status_code FROM audit_log ORDER BY id")
    assert {"actor": "oidc:nurse-7", "action": "sign-in", "status_code": 200} in audit
    assert not [row for row in audit if "@" in row["actor"]]  # a subject, never an address

    # Log out: through the provider's end of session (RP-initiated logout) back to the feed
    page.click("#logout")
    confirm = page.locator('button:has-text("Yes, sign me out")')
    confirm.or_(page.locator("#sign-in:visible")).first.wait_for()
    if confirm.count():  # the provider asks first (no ID token named the session)
        confirm.click()
    page.wait_for_url(re.compile("^" + re.escape(site.url) + r"/(\?state=[\w-]+)?$"))
    page.locator("#sign-in").wait_for(state="visible")
    assert page.evaluate("sessionStorage.getItem('bipn-monitor-token')") is None
    # signing in again asks for the login again: no session left at the provider (with one,
    # its development form would send the browser straight back, signed in)
    page.locator("#sign-in").click()
    page.wait_for_selector('input[name="login"]')


@pytest.mark.parametrize("client_id", ["bipn-web-short"])
def test_the_page_returns_to_sign_in_when_the_token_expires(
    page: Page, site: Site, provider: RunningProvider
) -> None:
    page.goto(site.url + "/chair")
    sign_in(page, provider, "nurse-7")
    page.wait_for_url(site.url + "/chair")
    page.wait_for_selector("#chair", state="visible")
    page.wait_for_selector("#sign-in", state="visible", timeout=15_000)  # 6 s tokens
    assert page.inner_text("#login-error") == "Your sign-in has expired: sign in again."
    assert page.locator("#chair").is_hidden()
    assert page.evaluate("sessionStorage.getItem('bipn-monitor-token')") is None
    # its href comes back here
    assert page.get_attribute("#sign-in", "href") == "/auth/login?next=%2Fchair"


def test_a_user_whose_groups_give_no_role_is_told_so(
    page: Page, site: Site, provider: RunningProvider, console: Any
) -> None:
    console.allow("status of 403")
    page.goto(site.url + "/")
    sign_in(page, provider, "visitor-1")
    page.wait_for_url(re.compile(re.escape(site.url) + "/auth/callback"))
    assert page.inner_text("h1") == "Sign-in failed"
    assert "maps to no role of this service" in page.inner_text("[role=alert]")
    assert page.evaluate("sessionStorage.getItem('bipn-monitor-token')") is None
    last = rows(site.services, "SELECT actor, action, status_code FROM audit_log ORDER BY id")[-1]
    assert last == {"actor": "oidc:visitor-1", "action": "sign-in", "status_code": 403}


def test_a_callback_without_the_flows_state_is_refused(site: Site) -> None:
    forged = site.http.get("/auth/callback", params={"code": "stolen", "state": "guessed"})
    assert forged.status_code == 400
    assert "The sign-in did not complete" in forged.text
    assert forged.headers["cache-control"] == "no-store"


def test_login_sends_the_browser_to_the_provider_with_pkce_and_the_audience(
    site: Site, provider: RunningProvider
) -> None:
    answer = site.http.get("/auth/login", params={"next": "https://evil.example/"})
    assert answer.status_code == 302
    target = httpx.URL(answer.headers["location"])
    assert str(target).startswith(f"{provider.issuer}/auth?")
    query = dict(target.params)
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert query["resource"] == provider.config["audience"]
    assert query["redirect_uri"] == f"{SERVICE}/auth/callback"
    assert query["nonce"]
    assert query["state"]
    cookie = answer.headers["set-cookie"]
    assert "path=/auth" in cookie.lower()
    assert "samesite=lax" in cookie.lower()
    assert "httponly" in cookie.lower()
    # what the signed cookie holds: the flow's state, and where to go back: not elsewhere
    value = cookie.split(";")[0].split("=", 1)[1].split(".")[0]
    session = json.loads(base64.b64decode(value + "=" * (-len(value) % 4)))
    assert session["next"] == "/"
    assert any(key.startswith("_state_provider_") for key in session)
