"""The web pages' sign-in at the hospital's OpenID Connect provider: authorization code with PKCE
(S256), through Authlib's Starlette client.

`/auth/login` sends the browser to the provider (state, nonce and the PKCE verifier kept in a
signed cookie for the flow only, path `/auth`, SameSite=Lax, 10 minutes); `/auth/callback`
checks the state, exchanges the code, checks the ID token's nonce, verifies the access token
as the API will (monitor/auth/oidc.py), then answers a small page whose script puts the access
token in the tab's sessionStorage (where the pasted API token goes too) and replaces itself with
the page the user came from. The API stays bearer-only: a cookie the API accepted would be sent
by the browser on every request, forged ones included (CSRF); a bearer is sent only by the
pages' own script. The token is in that one page's body only (never in a URL, `no-store`).
`/auth/logout` ends the provider's session too (RP-initiated logout), when it offers that.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

import html
import logging
import re
from typing import Annotated, Any
from urllib.parse import quote

import httpx2
from authlib.integrations.starlette_client import OAuth, OAuthError, StarletteOAuth2App
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from monitor.api.deps import ServicesDep
from monitor.api.json_body import StrictJsonRouter
from monitor.auth.oidc import OidcRefusedError, OidcVerifier, discovery_url
from monitor.settings import Settings
from monitor.web.router import PAGE_HEADERS

log = logging.getLogger("monitor.web")
# the provider out of reach, or answering garbage (Authlib's client runs on httpx2)
PROVIDER_ERRORS = (httpx2.HTTPError, ValueError)

router = StrictJsonRouter(include_in_schema=False)  # always: how the pages log in
# the flow itself, included only when the pages sign in (configure_sign_in)
flow_router = StrictJsonRouter(include_in_schema=False)
SESSION_COOKIE = "bipn_signin"
SESSION_MAX_AGE_S = 600  # the flow's state lives this long: a sign-in is done within it
# where the user may be sent back to: a page of this site (no scheme, no host, no `//`)
_LOCAL_PATH = re.compile(r"^/(?![/\\])[A-Za-z0-9._~\-/?=&%]{0,400}$")


def configure_sign_in(app: FastAPI, settings: Settings) -> None:
    """The provider's verifier (the guard's, for every API call) and, when the pages sign in,
    the Authlib client and its session cookie. Called before the guard is added: the session
    middleware runs within it."""
    if not settings.oidc_enabled:
        return
    app.state.oidc_verifier = OidcVerifier(settings)
    if not settings.sign_in_enabled:
        return
    assert settings.oidc_issuer is not None
    assert settings.session_secret is not None
    oauth = OAuth()
    secret = settings.oidc_client_secret
    client_kwargs: dict[str, Any] = {
        "scope": settings.oidc_scope,
        "code_challenge_method": "S256",
        "timeout": 10,
    }
    if secret is None:  # a public client: PKCE alone proves it started the flow
        client_kwargs["token_endpoint_auth_method"] = "none"
    app.include_router(flow_router)
    app.state.oidc_client = oauth.register(
        name="provider",
        client_id=settings.oidc_client_id,
        client_secret=None if secret is None else secret.get_secret_value(),
        server_metadata_url=discovery_url(settings.oidc_issuer),
        client_kwargs=client_kwargs,
    )
    base = settings.public_base_url or ""
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret.get_secret_value(),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_S,
        path="/auth",
        same_site="lax",  # the provider's redirect back is a cross-site navigation
        https_only=base.startswith("https://"),
    )


def _client(request: Request) -> StarletteOAuth2App:
    client: StarletteOAuth2App = request.app.state.oidc_client
    return client


def _base_url(request: Request, settings: Settings) -> str:
    return settings.public_base_url or str(request.base_url).rstrip("/")


def _local(path: str) -> str:
    return path if _LOCAL_PATH.match(path) else "/"


def _html(status: int, title: str, body: str, head: str = "") -> HTMLResponse:
    page = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>{html.escape(title)} · bipn-monitor</title>\n<link rel="icon" href="data:,">\n'
        f'<link rel="stylesheet" href="/static/app.css">\n{head}</head>\n'
        f"<body>\n<main>\n<h1>{html.escape(title)}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    )
    headers = {**PAGE_HEADERS, "Cache-Control": "no-store"}
    return HTMLResponse(page, status_code=status, headers=headers)


def _failed(status: int, why: str, next_path: str = "/") -> HTMLResponse:
    again = html.escape(f"/auth/login?next={quote(next_path, safe='/')}", quote=True)
    body = (
        f'<p class="error" role="alert">{html.escape(why)}</p>\n'
        f'<p><a href="{again}">Sign in again</a> · <a href="/">the alert feed</a></p>'
    )
    return _html(status, "Sign-in failed", body)


@router.get("/auth/options")
def sign_in_options(services: ServicesDep) -> JSONResponse:
    """How the pages log in: at the provider (`sign_in`), else with a pasted API token."""
    return JSONResponse({"sign_in": services.settings.sign_in_enabled})


@flow_router.get("/auth/login")
async def sign_in(
    request: Request,
    services: ServicesDep,
    next_path: Annotated[str, Query(alias="next", max_length=512)] = "/",
) -> Response:
    client = _client(request)
    settings = services.settings
    request.session.clear()  # one flow at a time: an older one's state is dropped
    request.session["next"] = _local(next_path)
    try:
        redirect: Response = await client.authorize_redirect(
            request,
            _base_url(request, settings) + "/auth/callback",
            resource=settings.oidc_audience,  # RFC 8707: the access token is for this API
        )
    except PROVIDER_ERRORS as exc:
        log.warning("the sign-in provider is unreachable", extra={"error_type": type(exc).__name__})
        why = "The sign-in provider cannot be reached: try again shortly."
        return _failed(502, why, _local(next_path))
    return redirect


@flow_router.get("/auth/callback")
async def sign_in_callback(request: Request, services: ServicesDep) -> Response:
    client = _client(request)
    settings = services.settings
    next_path = _local(str(request.session.get("next", "/")))
    try:
        # checks the state against the cookie, sends the PKCE verifier, checks the nonce
        token = await client.authorize_access_token(request, resource=settings.oidc_audience)
    except OAuthError as exc:
        request.session.clear()
        why = exc.description or exc.error or "the provider's answer was not accepted"
        return _failed(400, f"The sign-in did not complete: {why}.", next_path)
    except PROVIDER_ERRORS as exc:
        log.warning("the sign-in provider is unreachable", extra={"error_type": type(exc).__name__})
        return _failed(502, "The sign-in provider cannot be reached: try again shortly.", next_path)
    request.session.clear()
    verifier: OidcVerifier = request.app.state.oidc_verifier
    access_token = str(token.get("access_token", ""))
    now = settings.now()
    try:
        principal = await run_in_threadpool(verifier.principal, access_token)
    except OidcRefusedError as refused:
        audit = services.audit.record_refusal
        await run_in_threadpool(audit, "sign-in", refused.status, now, refused.subject)
        why = refused.detail[:1].upper() + refused.detail[1:]
        return _failed(refused.status, f"{why}.", next_path)
    await run_in_threadpool(services.audit.record, principal, "sign-in", "oidc", 200, now)
    expires = "" if principal.expires_at is None else str(int(principal.expires_at.timestamp()))
    head = (
        f'<meta name="bipn-token" content="{html.escape(access_token, quote=True)}">\n'
        f'<meta name="bipn-token-expires" content="{expires}">\n'
        f'<meta name="bipn-next" content="{html.escape(next_path, quote=True)}">\n'
        '<script src="/static/signin.js" defer></script>\n'
    )
    return _html(200, "Signing in", "<p>Signing in…</p>", head)


@flow_router.get("/auth/logout")
async def sign_out(request: Request, services: ServicesDep) -> Response:
    """The pages have dropped their token; this ends the provider's session too, so the next
    person at the workstation signs in as themselves."""
    request.session.clear()
    client = _client(request)
    home = _base_url(request, services.settings) + "/"
    try:
        metadata = await client.load_server_metadata()
        if not metadata.get("end_session_endpoint"):
            return RedirectResponse("/", status_code=303)
        logout = await client.create_logout_url(
            post_logout_redirect_uri=home, client_id=services.settings.oidc_client_id
        )
    except PROVIDER_ERRORS:
        return RedirectResponse("/", status_code=303)
    return RedirectResponse(str(logout["url"]), status_code=303)
