"""Audit reports over HTTP (role `auditor`): `GET /v1/reports/adherence`.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

from collections.abc import Iterator
from typing import IO, Annotated, Literal

from fastapi import HTTPException, Query
from fastapi.responses import Response, StreamingResponse

from monitor.api.deps import AUTH_RESPONSES, Auditor, ClockDep, ServicesDep
from monitor.api.json_body import StrictJsonRouter
from monitor.reports.render import MEDIA_TYPES, run_report
from monitor.reports.service import period_of
from monitor.reports.sources import report_from_database
from policies.events import NO_CONTROL, ClinicalTime

router = StrictJsonRouter(tags=["reports"], responses=AUTH_RESPONSES)
CHUNK = 64 * 1024
# The HTML report is one self-contained page: its own inline style and SVG, nothing to load,
# no script (a value that slipped past escaping could still run nothing), never framed.
REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
TEXT = {"schema": {"type": "string"}}


@router.get(
    "/v1/reports/adherence",
    summary="The adherence audit: recommendations followed, reassessments on time, ...",
    response_class=Response,
    responses={
        200: {
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/csv": TEXT,
                "text/html": TEXT,
            },
            "description": "the report in the asked format",
        }
    },
)
def adherence_report(
    principal: Auditor,
    services: ServicesDep,
    clock: ClockDep,
    start: Annotated[
        ClinicalTime | None,
        Query(alias="from", description="period start (default: 30 days before `to`)"),
    ] = None,
    end: Annotated[
        ClinicalTime | None, Query(alias="to", description="period end (default: now)")
    ] = None,
    unit: Annotated[str | None, Query(min_length=1, max_length=64, pattern=NO_CONTROL)] = None,
    format: Literal["json", "csv", "html"] = "json",
) -> Response:
    now = clock.now()
    if principal.units is not None:  # a token bound to units reports on them only
        if unit is None and len(principal.units) == 1:
            (unit,) = principal.units
        elif unit is None:
            raise HTTPException(
                422,
                f"unit: this token is bound to units {', '.join(sorted(principal.units))}; "
                "give unit= one of them",
            )
        elif unit not in principal.units:
            services.audit.record(principal, "GET /v1/reports/adherence", "report", 404, now)
            raise HTTPException(404, f"no unit {unit!r} in this token's scope")
    period, problem = period_of(start, end or now, unit)
    if period is None:
        raise HTTPException(422, problem)
    text = run_report(
        lambda on_item, drill_down: report_from_database(
            services, period, on_item, drill_down=drill_down
        ),
        format,
    )
    services.audit.record(
        principal, "GET /v1/reports/adherence", f"report:adherence:{format}", 200, now
    )
    name = f"adherence-{period.start:%Y%m%d}-{period.end:%Y%m%d}.{format}"
    headers = {"Content-Disposition": f'inline; filename="{name}"', **REPORT_HEADERS}
    return StreamingResponse(_chunks(text), media_type=MEDIA_TYPES[format], headers=headers)


def _chunks(text: IO[str]) -> Iterator[str]:
    try:
        while chunk := text.read(CHUNK):
            yield chunk
    finally:
        text.close()
