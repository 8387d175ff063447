"""`GET /v1/sources` (every role): what the source ids in decisions stand for, so a client
can show the reference behind a recommendation without this repository at hand.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

from typing import Annotated, Any

from fastapi import Depends

from monitor.api.deps import AUTH_RESPONSES, ClockDep, ServicesDep, require
from monitor.api.json_body import StrictJsonRouter
from monitor.auth.roles import ROLES
from monitor.auth.tokens import Principal
from monitor.policy.schemas import SourceList
from policies.rules import sources

router = StrictJsonRouter(tags=["policy"], responses=AUTH_RESPONSES)
DOCUMENTATION = "docs/clinical-policy.md"
AnyRole = Annotated[Principal, Depends(require(*ROLES))]


@router.get(
    "/v1/sources",
    summary="The sources behind the rules (the ids in every decision's `sources`)",
    response_model=SourceList,
)
def list_sources(principal: AnyRole, services: ServicesDep, clock: ClockDep) -> dict[str, Any]:
    services.audit.record(principal, "GET /v1/sources", "sources", 200, clock.now())
    return {
        "sources": [
            {**source._asdict(), "cited_by": sources.cited_by(source.id)}
            for source in sources.CATALOGUE
        ],
        "documentation": DOCUMENTATION,
    }
