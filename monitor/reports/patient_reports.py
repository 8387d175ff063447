"""The adherence report's `patient_reports` section (issue 16): were the weekly patient reports
sent, how many reviews they raised, how fast those were acknowledged, and what became of the
immunotherapy response checks (D8).

Pure, as the audit is (monitor/reports/adherence.py): it reads the same per-patient events and
decisions. The definitions are in the README ("Adherence reports", patient reports).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from monitor.reports.stats import median, p90, rate

if TYPE_CHECKING:
    from monitor.reports.adherence import AuditDecision, AuditEvent, Period

WEEK = dt.timedelta(days=7)
EPISODE = dt.timedelta(days=7)  # POLICY V10: a therapy's events up to 7 days after its first
RESPONSE_CHECK = dt.timedelta(days=28)  # V10's `response_check_days`
PATIENT_REPORTED = "patient_reported_change"
NO_RESPONSE = "immunotherapy_no_response"


@dataclass(frozen=True, slots=True)
class Episode:
    therapy: str
    start: dt.datetime
    last: dt.datetime
    events: int

    @property
    def check_due(self) -> dt.datetime:
        return self.start + RESPONSE_CHECK


def immunotherapy_episodes(therapies: Iterable[tuple[dt.datetime, str]]) -> list[Episode]:
    """The episodes of (time, therapy) pairs: an event and the same therapy's events up to 7 days
    after it, inclusive; a later one starts a new episode."""
    episodes: list[Episode] = []
    open_by_therapy: dict[str, int] = {}
    for at, therapy in sorted(therapies):
        index = open_by_therapy.get(therapy)
        if index is not None and at <= episodes[index].start + EPISODE:
            current = episodes[index]
            episodes[index] = Episode(therapy, current.start, at, current.events + 1)
            continue
        open_by_therapy[therapy] = len(episodes)
        episodes.append(Episode(therapy, at, at, 1))
    return episodes


def is_patient_review(decision: AuditDecision) -> bool:
    return decision.action == "review_required" and decision.reason == PATIENT_REPORTED


@dataclass
class PatientReportTally:
    """One patient's share of the section."""

    expected: int = 0  # weekly windows due in the period
    reported: int = 0  # of which a patient report came in
    reviews: list[tuple[str, dt.datetime]] = field(default_factory=list)  # D9: (id, reported at)
    responses: int = 0
    non_responses: int = 0
    not_done: int = 0  # response checks due in the period without a qualifying assessment
    without_baseline: int = 0  # episodes D8 cannot check (no grading before them)


def tally_patient(
    events: Sequence[AuditEvent], decisions: Sequence[AuditDecision], period: Period
) -> PatientReportTally:
    """The weekly windows (from each enrolment, while the course is monitored: to its
    `course_end`, the watch's `watch_closed`, or the next enrolment), the D9 reviews and the D8
    outcomes of one patient in the period; with the period's unit, that unit's courses only."""
    ordered = sorted((e for e in events if e.at <= period.end), key=lambda e: e.key)
    reports = [e.at for e in ordered if e.type == "assessment" and e.source == "patient"]
    closes = sorted(d.at for d in decisions if d.action == "watch_closed")
    tally = PatientReportTally()
    enrolments = [(i, e) for i, e in enumerate(ordered) if e.type == "enrollment"]
    for number, (position, enrolment) in enumerate(enrolments):
        following = enrolments[number + 1][0] if number + 1 < len(enrolments) else len(ordered)
        if period.unit is not None and enrolment.unit != period.unit:
            continue
        end = ordered[following].at if following < len(ordered) else None
        ended = next(
            (e.at for e in ordered[position + 1 : following] if e.type == "course_end"), None
        )
        closed = next((at for at in closes if at >= enrolment.at), None)
        stops = [t for t in (end, ended, closed) if t is not None]
        _count_windows(tally, enrolment.at, min(stops) if stops else None, reports, period)
    by_id = {e.event_id: e for e in ordered}
    for decision in decisions:
        if not period.holds(decision.at) or not _in_unit(ordered, decision.at, period):
            continue
        if is_patient_review(decision):
            report = by_id.get(decision.trigger)
            tally.reviews.append((decision.decision_id, report.at if report else decision.at))
        elif decision.action == "immunotherapy_response":
            tally.responses += 1
        elif decision.action == "review_required" and decision.reason == NO_RESPONSE:
            tally.non_responses += 1
    gradings = [e.at for e in ordered if e.type == "assessment" and e.source != "patient"]
    therapies = [(e.at, e.therapy or "other") for e in ordered if e.type == "immunotherapy"]
    for episode in immunotherapy_episodes(therapies):
        due = episode.check_due
        if not period.holds(due) or not _in_unit(ordered, episode.start, period):
            continue
        if not any(at < episode.start for at in gradings):
            tally.without_baseline += 1
        elif not any(due <= at <= period.end for at in gradings):
            tally.not_done += 1
    return tally


def _count_windows(
    tally: PatientReportTally,
    start: dt.datetime,
    stop: dt.datetime | None,
    reports: Sequence[dt.datetime],
    period: Period,
) -> None:
    """Window k is [start + 7k days, start + 7(k+1) days): due when it begins before the course
    stops being monitored and ends in the period (a window still open is not due yet)."""
    first = max(0, (period.start - start) // WEEK - 1)
    k = first
    while True:
        begins, ends = start + k * WEEK, start + (k + 1) * WEEK
        if ends > period.end or (stop is not None and begins >= stop):
            return
        if ends > period.start:
            tally.expected += 1
            i = bisect.bisect_left(reports, begins)
            if i < len(reports) and reports[i] < ends:
                tally.reported += 1
        k += 1


def _in_unit(ordered: Sequence[AuditEvent], at: dt.datetime, period: Period) -> bool:
    """Without a unit, every course; with one, the latest enrolment up to `at` is in it."""
    if period.unit is None:
        return True
    unit = None
    for event in ordered:
        if event.at > at:
            break
        if event.type == "enrollment":
            unit = event.unit
    return unit == period.unit


@dataclass
class PatientReportSection:
    """Accumulates the tallies; `result()` is the report's `patient_reports` section."""

    expected: int = 0
    reported: int = 0
    reviews: dict[str, dt.datetime] = field(default_factory=dict)
    acknowledged: dict[str, dt.datetime] = field(default_factory=dict)
    responses: int = 0
    non_responses: int = 0
    not_done: int = 0
    without_baseline: int = 0

    def add(self, tally: PatientReportTally) -> None:
        self.expected += tally.expected
        self.reported += tally.reported
        self.reviews.update(tally.reviews)
        self.responses += tally.responses
        self.non_responses += tally.non_responses
        self.not_done += tally.not_done
        self.without_baseline += tally.without_baseline

    def acknowledge(self, decision_id: str, at: dt.datetime) -> None:
        """A review's alert acknowledged at `at` (the earliest acknowledgement counts)."""
        if decision_id in self.reviews:
            earlier = self.acknowledged.get(decision_id)
            self.acknowledged[decision_id] = at if earlier is None else min(earlier, at)

    def hours_to_ack(self) -> list[float]:
        return [
            max((at - self.reviews[d]).total_seconds(), 0) / 3600
            for d, at in sorted(self.acknowledged.items())
        ]

    def result(self, monitored_s: float, with_alerts: bool) -> dict[str, Any]:
        weeks = monitored_s / WEEK.total_seconds()
        hours = self.hours_to_ack()
        total = len(self.reviews)
        return {
            "weekly_reports": {
                "expected": self.expected,
                "reported": self.reported,
                "missed": self.expected - self.reported,
                "completion_rate": rate(self.reported, self.expected),
            },
            "reviews": {
                "total": total,
                "patient_weeks": round(weeks, 2),
                "per_patient_week": round(total / weeks, 3) if weeks else None,
            },
            # from the report to its review's acknowledgement: the database only (as alerts)
            "acknowledgement": {
                "acknowledged": len(hours),
                "unacknowledged": total - len(hours),
                "median_hours_to_ack": median(hours),
                "p90_hours_to_ack": p90(hours),
            }
            if with_alerts
            else None,
            "immunotherapy_response": {
                "responses": self.responses,
                "non_responses": self.non_responses,
                "checks_not_done": self.not_done,
                "without_baseline": self.without_baseline,
            },
        }
