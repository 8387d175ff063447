"""What route handlers ask for, as `Annotated` FastAPI dependencies.

Handlers are module-level functions in each domain's `router.py`; everything they need comes
from here, so a test swaps any piece with `app.dependency_overrides[get_clock] = ...` (the
services, the clock, the principal, a role check) without rebuilding the app.

No `from __future__ import annotations`: FastAPI reads these annotations at run time.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from monitor.api.guard import BodyTooLargeError, route_template
from monitor.api.json_body import InvalidJsonError, parse_json
from monitor.auth.roles import CARE_ROLES, Role
from monitor.auth.tokens import Principal
from monitor.operations.clock import wall_now
from monitor.services import Services
from monitor.storage.models import MAX_ROW_ID
from policies.events import PATIENT_ID_PATTERN

# --- the process's services -----------------------------------------------------------------


# The dependencies below are `async def` though they do not await: FastAPI runs a plain `def`
# dependency in the thread pool, and these run for every request (a dozen thread hand-offs per
# request were a fifth of a small POST's CPU). Anything that blocks is handed to the pool.


async def get_services(request: Request) -> Services:
    """The services the app was built with (`create_app(services)` puts them on `app.state`)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


# --- the clock ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clock:
    """The one clock of a request. `now()` is the service's time (`Settings.now`: the fixed
    time in tests and replays), used for every clinical and audit time; `wall()` is the real
    time, for what is checked against other machines' clocks (JWT expiry, webhook retries)."""

    now: Callable[[], dt.datetime]

    @staticmethod
    def wall() -> dt.datetime:
        return wall_now()


def clock_of(services: Services) -> Clock:
    # read through `services` at each call: a long request (an open stream) sees the settings
    # of the moment, as every other reader does
    return Clock(lambda: services.settings.now())


async def get_clock(services: ServicesDep) -> Clock:
    return clock_of(services)


ClockDep = Annotated[Clock, Depends(get_clock)]


# --- who is calling -------------------------------------------------------------------------

bearer = HTTPBearer(auto_error=False)  # in the OpenAPI document: every protected route's scheme


def principal_of(request: Request) -> Principal:
    """The caller, authenticated by the guard before the application ran (`monitor.api.guard`);
    none here means a CDS Hooks JWT on a route that does not take one."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        raise HTTPException(
            401, "the token is unknown or revoked", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


async def current_principal(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """`principal_of` as a dependency."""
    return principal_of(request)


class require:  # noqa: N801  # read as a verb in signatures: Depends(require("nurse"))
    """A role check: the caller's role is one of `roles` (admin may do everything); a refusal
    is a 403 naming the roles allowed, and is audited."""

    def __init__(self, *roles: Role) -> None:
        self.allowed: tuple[Role, ...] = tuple(dict.fromkeys((*roles, "admin")))

    async def __call__(
        self,
        request: Request,
        principal: Annotated[Principal, Depends(current_principal)],
        services: ServicesDep,
        clock: ClockDep,
    ) -> Principal:
        if principal.role in self.allowed:
            return principal
        # the refusal is audited: a database write, off the event loop
        return await run_in_threadpool(self.check, request, principal, services, clock)

    def check(
        self, request: Request, principal: Principal, services: Services, clock: Clock
    ) -> Principal:
        """The role check, blocking (it may write the audit row): for sync callers."""
        if principal.role not in self.allowed:
            action = f"{request.method} {route_template(request.scope)}"
            services.audit.record(principal, action, "denied", 403, clock.now())
            raise HTTPException(
                403,
                f"role {principal.role!r} may not {action}; allowed: {', '.join(self.allowed)}",
            )
        return principal


Admin = Annotated[Principal, Depends(require("admin"))]
Nurse = Annotated[Principal, Depends(require("nurse"))]
Infusion = Annotated[Principal, Depends(require("infusion"))]
# the care team: the patients and the alert feed (each role its own audiences)
CareTeam = Annotated[Principal, Depends(require(*CARE_ROLES))]
Ingest = Annotated[Principal, Depends(require("ingest"))]
Auditor = Annotated[Principal, Depends(require("auditor"))]


# What every protected route may answer before its handler runs (the guard, the role check).
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or one unknown, revoked or expired"},
    403: {"description": "the token's role may not do this (the roles allowed are named)"},
}
# A public route says so in the document (no security requirement).
PUBLIC: dict[str, Any] = {"security": []}


# --- path parameters shared by several domains ----------------------------------------------

PatientIdPath = Annotated[str, Path(pattern=PATIENT_ID_PATTERN, max_length=64)]
RowIdPath = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


# --- request bodies read by the handler (JSON of a media type, size-limited) ----------------


@dataclass(frozen=True, slots=True)
class BodyProblem:
    """Why a body was not read: 415 (media type), 413 (too large) or 400 (not JSON). Each API
    answers it in its own shape (problem JSON, a FHIR OperationOutcome)."""

    status: int
    detail: str


@dataclass(frozen=True, slots=True)
class JsonBody:
    """The body parsed by the strict reader (`monitor.api.json_body`), or why it was not."""

    value: Any = None
    problem: BodyProblem | None = None


def json_body(*media_types: str, name: str = "application/json") -> Callable[..., Any]:
    """A dependency reading the body as JSON, refusing other media types when `media_types` is
    given. The body is counted as it streams (the guard stops it at `max_body_bytes`), and is
    read only after the dependencies declared before it (the caller's authentication) pass."""

    async def read(request: Request) -> JsonBody:
        if media_types:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type not in media_types:
                return JsonBody(
                    problem=BodyProblem(415, f"Content-Type must be {name}, not {content_type!r}")
                )
        try:
            raw = await request.body()
        except BodyTooLargeError as exc:
            return JsonBody(problem=BodyProblem(413, str(exc.detail)))
        try:
            return JsonBody(value=parse_json(raw))
        except InvalidJsonError as exc:
            return JsonBody(problem=BodyProblem(400, f"the body is not valid JSON: {exc}"))

    return read


async def public_base_url(request: Request, services: ServicesDep) -> str:
    """The service's own address in links it hands out: configured, else as called."""
    return services.settings.public_base_url or str(request.base_url).rstrip("/")


BaseUrl = Annotated[str, Depends(public_base_url)]
