"""The HTTP boundary, as plain ASGI middleware: what every request meets before any handler.

- `RequestLog` (outermost): a request id for every request (`X-Request-ID`: the caller's, when
  it is a sane token, else a new one), one log line per request with the route template (never
  the path: it holds patient ids), and every unhandled error answered as a 500 that names the
  request id, logged once with a sanitised traceback (`monitor.operations.logsafe`), never
  re-raised to the server (whose own log would print exception messages as they are).
- `RequestGuard`: refuses control characters in the path and query (422), authenticates the
  bearer token of every protected route before the application runs (401, audited, without
  reading the body; a staff member's JWT from the OpenID Connect provider too: 403 when it maps
  to no role here), and counts the body as it streams in, chunked or not, stopping it at
  `max_body_bytes` (413) before it is buffered whole.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.api.errors import error_content
from monitor.auth import tokens as auth
from monitor.auth.oidc import OidcRefusedError, OidcVerifier
from monitor.intake.invites import LINK_UNKNOWN, find_invite, is_invite_secret
from monitor.interop.cds.jwt_auth import looks_like_jwt
from monitor.operations.logsafe import current_request_id
from monitor.services import Services

log = logging.getLogger("monitor.api")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# What needs no token: health, metrics, the API description and its pages' assets, the web
# pages (their sign-in too) and their static files; read only: CDS Hooks discovery, FHIR's
# description of the server (what FHIR clients read first) and the patient-report
# Questionnaire. Everything else (the API, FHIR, CDS Hooks calls, unknown paths) does.
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/redoc",
        "/",
        "/chair",
        "/report",  # the patients' report page (its invite link's secret stays in the fragment)
        # the pages' sign-in at the OpenID Connect provider (monitor/web/signin/router.py)
        "/auth/options",
        "/auth/login",
        "/auth/callback",
        "/auth/logout",
    }
)
PUBLIC_PREFIXES = ("/static/", "/patients/", "/docs/assets/")  # the API pages' scripts
CDS_PREFIX = "/cds-services"
INVITE_ROUTE = ("POST", "/v1/patient-reports")  # the one route an invite's secret opens
PUBLIC_READS = frozenset(
    {
        CDS_PREFIX,
        "/fhir/r4/metadata",
        "/fhir/r4/OperationDefinition/monitor-summary",
        "/fhir/r4/Questionnaire/bipn-patient-report",  # the patient report's form: no data
    }
)


def is_public(method: str, path: str) -> bool:
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return True
    return path in PUBLIC_READS and method in ("GET", "HEAD", "OPTIONS")


def is_cds_preflight(method: str, path: str, headers: Headers) -> bool:
    """A CORS preflight of a CDS Hooks route: browsers send it without credentials (Fetch
    standard), so no token is asked of it; it does no work (`CdsCors` answers it, or the app's
    405 when CORS is off), and it is not a refused call for the audit log."""
    return (
        method == "OPTIONS"
        and path.startswith(f"{CDS_PREFIX}/")
        and "origin" in headers
        and "access-control-request-method" in headers
    )


def route_of(scope: Scope) -> str:
    """`/v1/patients/{patient_id}`: the route matched (set by the router), never the path."""
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched")) if route is not None else "unmatched"


class BodyTooLargeError(HTTPException):
    """A body over the limit (413): raised by the guarded `receive` as soon as the count passes
    it (or at once when the declared length does), so no handler buffers more."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body over {limit} bytes")


async def _send_error(
    send: Send,
    path: str,
    status: int,
    detail: str,
    headers: dict[str, str],
    errors: list[dict[str, str]] | None = None,
    **extra: Any,
) -> None:
    """An error answered here, before the app: in the shape of the API it is for
    (`monitor.api.errors.error_content`: an OperationOutcome under /fhir/r4)."""
    body, media_type = error_content(path, status, detail, errors, **extra)
    content = json.dumps(body).encode()
    raw_headers = [
        (b"content-type", media_type.encode()),
        (b"content-length", b"%d" % len(content)),
    ]
    raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": content})


class RequestLog:
    """One log line per request, a request id on every response, no unlogged 5xx."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER.lower(), "")
        request_id = given if _SANE_REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = current_request_id.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log.error(
                "request failed",
                exc_info=exc,
                extra={
                    "route": route_of(scope),
                    "error_type": type(exc).__name__,
                    "request_id": request_id,
                },
            )
            if status == 0:  # nothing sent yet: the client gets a 500 naming the request
                status = 500
                await _send_error(
                    send,
                    scope["path"],
                    500,
                    "internal error",
                    {REQUEST_ID_HEADER: request_id},
                    request_id=request_id,
                )
        finally:
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": route_of(scope),
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                    "request_id": request_id,
                },
            )
            current_request_id.reset(token)


class RequestGuard:
    """Control characters, authentication and the body limit, before the application."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = Headers(scope=scope)
        if not is_public(method, path) and not is_cds_preflight(method, path, headers):
            refused = await self._authenticate(scope, headers)
            if isinstance(refused, OidcRefusedError) and refused.status != 401:
                # a provider's token that verified but gives no role here (403), or the
                # provider's keys out of reach (503)
                await _send_error(send, path, refused.status, refused.detail, {})
                return
            if isinstance(refused, OidcRefusedError):
                refused = refused.detail
            if refused is not None:
                await _send_error(send, path, 401, refused, {"WWW-Authenticate": "Bearer"})
                return
        problems = _control_characters(path, scope.get("query_string", b""))
        if problems:
            await _send_error(send, path, 422, "invalid request", {}, problems)
            return
        await self.app(scope, self._limited(receive, headers), send)

    async def _authenticate(self, scope: Scope, headers: Headers) -> str | OidcRefusedError | None:
        """None when the caller may go on (the principal is in `scope["state"]`), else why not.

        A CDS Hooks JWT is left to the CDS endpoints, which verify it (its audience is the URL
        called) before they read the body."""
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            refused = "a bearer token is required"
        elif scope["path"].startswith(f"{CDS_PREFIX}/") and looks_like_jwt(credentials):
            return None
        elif is_invite_secret(credentials) and (scope["method"], scope["path"]) == INVITE_ROUTE:
            # a patient's invite link, known before the body is read; the report route checks
            # its state (expired, revoked: said in words for the patient); anywhere else it is
            # an unknown token
            found = await run_in_threadpool(find_invite, self.services.sessions, credentials)
            if found is not None:
                return None
            refused = LINK_UNKNOWN
        elif (oidc := provider_verifier(scope)) is not None and oidc.issued_here(credentials):
            return await self._authenticate_oidc(scope, oidc, credentials)
        else:
            sessions, settings = self.services.sessions, self.services.settings
            now, cache_s = settings.now(), settings.token_cache_s
            # a cached token is answered here, without the thread hop; a miss reads the row
            principal = auth.cached_principal(sessions, credentials, now, cache_s)
            if principal is auth.MISS:
                principal = await run_in_threadpool(
                    functools.partial(auth.authenticate, cache_s=cache_s),
                    sessions,
                    credentials,
                    now,
                )
            if principal is not None:
                scope.setdefault("state", {})["principal"] = principal
                return None
            refused = "the token is unknown or revoked"
        await run_in_threadpool(
            self.services.audit.record_refusal,
            f"{scope['method']} {route_template(scope)}",
            401,
            self.services.settings.now(),
        )
        return refused

    async def _authenticate_oidc(
        self, scope: Scope, oidc: OidcVerifier, credentials: str
    ) -> OidcRefusedError | None:
        """A staff member's access token from the OpenID Connect provider (monitor/auth/oidc):
        its principal, or the refusal, audited (naming the subject once it verified)."""
        try:
            principal = await run_in_threadpool(oidc.principal, credentials)
        except OidcRefusedError as refused:
            action = f"{scope['method']} {route_template(scope)}"
            now = self.services.settings.now()
            record = self.services.audit.record_refusal
            await run_in_threadpool(record, action, refused.status, now, refused.subject)
            return refused
        scope.setdefault("state", {})["principal"] = principal
        return None

    def _limited(self, receive: Receive, headers: Headers) -> Receive:
        limit = self.services.settings.max_body_bytes
        declared = headers.get("content-length", "")
        too_large = declared.isdigit() and int(declared) > limit
        received = 0

        async def guarded() -> Message:
            nonlocal received
            if too_large:
                raise BodyTooLargeError(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        return guarded


def leaf_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """The app's routes, those of included routers too (FastAPI includes a router as one
    entry that holds its routes; the domain routers have no prefix: their paths are whole)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from leaf_routes(included.routes)
        else:
            yield route


def provider_verifier(scope: Scope) -> OidcVerifier | None:
    """The app's verifier of the OpenID Connect provider's tokens (None: sign-in is off)."""
    state = getattr(scope.get("app"), "state", None)
    verifier: OidcVerifier | None = getattr(state, "oidc_verifier", None)
    return verifier


def route_template(scope: Scope) -> str:
    """The route a request is for, before the router ran (logs name routes, never paths)."""
    router = getattr(scope.get("app"), "router", None)
    for route in leaf_routes(getattr(router, "routes", ())):
        matched, _ = route.matches(scope)
        if matched is Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


def _control_characters(path: str, query: bytes) -> list[dict[str, str]]:
    """Each path segment or query parameter holding a control character (U+0000-U+001F,
    U+007F): refused, as no identifier, filter or date this API takes can hold one."""
    problems = []
    found = _CONTROL.search(path)
    if found:
        problems.append({"field": "path", "message": _control_message(found.group())})
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        found = _CONTROL.search(name) or _CONTROL.search(value)
        if found:
            shown = _CONTROL.sub("?", name)[:40]
            problems.append({"field": shown, "message": _control_message(found.group())})
    return problems


def _control_message(char: str) -> str:
    return f"contains the control character U+{ord(char):04X}, which is not allowed"
