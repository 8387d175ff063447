"""`GET /v1/me` (every role): who the token is, so a page shows what its user may do (the
clearance for the infusion chair, the audiences of the feed) instead of trying and failing.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

from typing import Annotated, Any

from fastapi import Depends
from pydantic import BaseModel

from monitor.api.deps import AUTH_RESPONSES, ClockDep, ServicesDep, require
from monitor.api.json_body import StrictJsonRouter
from monitor.auth.roles import ROLES, audiences_of
from monitor.auth.tokens import Principal

router = StrictJsonRouter(tags=["auth"], responses=AUTH_RESPONSES)
AnyRole = Annotated[Principal, Depends(require(*ROLES))]


class Me(BaseModel):
    name: str
    role: str
    units: list[str] | None  # the units the token is bound to; null: every unit
    audiences: list[str] | None  # the alert audiences it answers for; null: all (admin)


@router.get("/v1/me", summary="Who this token is: name, role, units, audiences", response_model=Me)
def who_am_i(principal: AnyRole, services: ServicesDep, clock: ClockDep) -> dict[str, Any]:
    services.audit.record(principal, "GET /v1/me", "token", 200, clock.now())
    audiences = audiences_of(principal.role)
    return {
        "name": principal.name,
        "role": principal.role,
        "units": None if principal.units is None else sorted(principal.units),
        "audiences": None if audiences is None else list(audiences),
    }
