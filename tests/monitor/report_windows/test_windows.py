"""The weekly windows and who is asked to report (h16-common.md's definition), pure."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from monitor.report_windows.windows import asked_to_report, enrolled_at, window, window_at

ENROLLED = dt.datetime(2026, 9, 1, 8, 30, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SECOND = dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("offset", "index"),
    [
        (dt.timedelta(0), 0),
        (7 * DAY - SECOND, 0),
        (7 * DAY, 1),  # a window includes its start, not its end
        (20 * DAY, 2),
        (-DAY, 0),  # before the enrolment: the first window
    ],
)
def test_window_k_counts_seven_days_from_the_enrolment(offset: dt.timedelta, index: int) -> None:
    found = window_at(ENROLLED, ENROLLED + offset)
    assert found.index == index
    assert found.start == ENROLLED + 7 * index * DAY
    assert found.end == found.start + 7 * DAY
    assert window(ENROLLED, index) == found


def test_window_bounds_keep_the_enrolment_time_of_day() -> None:
    in_paris = ENROLLED.astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert window_at(in_paris, ENROLLED + 9 * DAY).start == ENROLLED + 7 * DAY


def _state(status: str, watch: str = "none") -> dict[str, Any]:
    return {
        "status": status,
        "watch": {"state": watch},
        "course_started_at": "2026-09-01T08:30:00Z",
    }


@pytest.mark.parametrize(
    ("state", "asked"),
    [
        (_state("active"), True),
        (_state("held"), True),
        (_state("discontinued", "active"), True),  # the coasting watch runs
        (_state("completed", "active"), True),
        (_state("discontinued", "closed"), False),
        (_state("completed", "closed"), False),
        ({"status": "ended", "courses_ended": 1}, False),  # course_end
        ({"status": "none"}, False),
    ],
)
def test_asked_on_treatment_held_and_in_the_watch_only(state: dict[str, Any], asked: bool) -> None:
    assert asked_to_report(state) is asked


def test_the_enrolment_time_is_read_from_the_cached_state() -> None:
    assert enrolled_at(_state("active")) == ENROLLED
    assert enrolled_at({"status": "ended"}) is None
