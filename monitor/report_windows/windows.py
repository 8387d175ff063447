"""Which week a time falls in, and whether a course is still asked to report. Pure.

Window k of a course enrolled at E is [E + 7k days, E + 7(k+1) days). A course is asked while
it is on treatment or held, and after the drug stopped for as long as the coasting watch runs;
a course that ended (`course_end`) is not.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from policies.decisions import from_utc_text

WEEK = dt.timedelta(days=7)
ON_TREATMENT = ("active", "held")
STOPPED = ("discontinued", "completed")


@dataclass(frozen=True, slots=True)
class Window:
    index: int
    start: dt.datetime
    end: dt.datetime


def window_at(enrolled_at: dt.datetime, at: dt.datetime) -> Window:
    """The window `at` falls in (window 0 for a time before the enrolment)."""
    index = max((at - enrolled_at) // WEEK, 0)
    return window(enrolled_at, index)


def window(enrolled_at: dt.datetime, index: int) -> Window:
    start = enrolled_at + index * WEEK
    return Window(index, start, start + WEEK)


def asked_to_report(state: dict[str, Any]) -> bool:
    """The cached course state (`patient.state`) of a course that is asked for weekly reports."""
    status = state.get("status")
    if status in ON_TREATMENT:
        return True
    watch = state.get("watch") or {}
    return status in STOPPED and watch.get("state") == "active"


def enrolled_at(state: dict[str, Any]) -> dt.datetime | None:
    """The course's enrolment time, which the windows count from (none without a course)."""
    started = state.get("course_started_at")
    return from_utc_text(started) if isinstance(started, str) else None
