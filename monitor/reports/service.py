"""The audit period, as the HTTP API and the command line both take it."""

from __future__ import annotations

import datetime as dt

from monitor.reports.adherence import Period

DEFAULT_DAYS = 30


def period_of(
    start: dt.datetime | None, end: dt.datetime, unit: str | None
) -> tuple[Period | None, str | None]:
    """The period, or why not: both ends aware, start not after end (default: the 30 days
    before `end`)."""
    begin = start if start is not None else end - dt.timedelta(days=DEFAULT_DAYS)
    if begin > end:
        return None, f"--from {begin.isoformat()} is after --to {end.isoformat()}"
    return Period(begin.astimezone(dt.UTC), end.astimezone(dt.UTC), unit), None
