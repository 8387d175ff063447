"""Who has not reported this week: `GET /v1/units/{unit}/reports` (the care team), scoped to
the token's units (another unit: 404).

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

from typing import Any

from monitor.api.deps import AUTH_RESPONSES, CareTeam, ClockDep, ServicesDep
from monitor.api.json_body import StrictJsonRouter
from monitor.chair.router import UnitPath, in_unit_scope
from monitor.report_windows.schemas import UnitReports
from monitor.report_windows.service import unit_reports
from policies.decisions import utc_text

router = StrictJsonRouter(tags=["weekly reports"], responses=AUTH_RESPONSES)


@router.get(
    "/v1/units/{unit}/reports",
    summary="The unit's patients asked for weekly symptom reports: who has not reported yet",
    response_model=UnitReports,
)
def get_unit_reports(
    unit: UnitPath, principal: CareTeam, services: ServicesDep, clock: ClockDep
) -> dict[str, Any]:
    now = clock.now()
    in_unit_scope(principal, unit)
    with services.sessions() as session:
        patients = unit_reports(session, unit, now)
    services.audit.record(principal, "GET /v1/units/{unit}/reports", f"unit:{unit}", 200, now)
    return {"unit": unit, "as_of": utc_text(now), "patients": patients}
