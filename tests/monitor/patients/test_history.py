"""The chart history's issue-16 parts (monitor/patients/history.py): patient reports among
the grades, immunotherapy episodes with their D8 check, and the response measures.

The D8 decisions are made up here (the core makes them after issue 16's merge): re-check
against real folds then."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from monitor.patients.history import history
from tests.common import factories as f
from tests.common.reviews import patient_report

T0 = f.T0


def bodies(*events: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["event_id"], json.dumps(e)) for e in events]


def d8(decision_id: str, at: dt.datetime, *, response: bool) -> str:
    return json.dumps(
        {
            "decision_id": decision_id,
            "at": f.iso(at),
            "rule": "D8",
            "action": "immunotherapy_response" if response else "review_required",
            **({} if response else {"reason": "immunotherapy_no_response"}),
        }
    )


def test_a_patient_report_is_marked_with_its_answers_and_a_clinician_grading_is_not() -> None:
    events = [
        f.enrollment(T0, event_id="e"),
        f.assessment(T0, event_id="a0", sensory=0, motor=0),
        patient_report(f.at(7), "P1", "pr-1", severity=3, interference=3, new_weakness=True),
    ]
    grades = history("P1", bodies(*events), [])["grades"]
    assert grades[0] == {"at": "2026-01-05T09:00:00Z", "cycle": None, "sensory": 0, "motor": 0}
    assert grades[1] == {
        "at": "2026-01-12T09:00:00Z",
        "cycle": None,
        "sensory": 3,
        "source": "patient",
        "new_weakness": True,
        "pro_ctcae": {"numbness_tingling_severity": 3, "numbness_tingling_interference": 3},
    }


def test_response_measures_come_from_clinician_findings_only() -> None:
    events = [
        f.assessment(T0, event_id="a0", findings={"mrc_sum_score": 48, "incat": 4, "rankin": 3}),
        f.assessment(f.at(1), event_id="a1"),  # no measure: no point
        f.assessment(f.at(30), event_id="a2", findings={"mrc_sum_score": 52}),
        {**f.assessment(f.at(31), event_id="a3", findings={"incat": 1}), "source": "patient"},
    ]
    assert history("P1", bodies(*events), [])["response_measures"] == [
        {"at": "2026-01-05T09:00:00Z", "mrc_sum_score": 48, "incat": 4, "rankin": 3},
        {"at": "2026-02-04T09:00:00Z", "mrc_sum_score": 52},
    ]


def test_an_ivig_course_over_five_days_is_one_episode_and_a_later_one_another() -> None:
    events = [
        f.assessment(T0, event_id="a0", motor=2),
        *(f.immunotherapy(f.at(1 + d), event_id=f"iv{d}") for d in range(5)),
        f.immunotherapy(f.at(8), "plasma_exchange", event_id="px"),  # another therapy
        f.immunotherapy(f.at(9), event_id="iv9"),  # 8 days after the first IVIg: a new one
    ]
    now = f.at(28)
    episodes = history("P1", bodies(*events), [], now)["immunotherapy"]
    assert [(e["therapy"], e["started_at"], e["last_at"], e["events"]) for e in episodes] == [
        ("ivig", "2026-01-06T09:00:00Z", "2026-01-10T09:00:00Z", 5),
        ("plasma_exchange", "2026-01-13T09:00:00Z", "2026-01-13T09:00:00Z", 1),
        ("ivig", "2026-01-14T09:00:00Z", "2026-01-14T09:00:00Z", 1),
    ]
    assert [e["check_due_at"] for e in episodes] == [
        "2026-02-03T09:00:00Z",
        "2026-02-10T09:00:00Z",
        "2026-02-11T09:00:00Z",
    ]
    # on 2 Feb every check is still to come; on 10 Feb the first two are due and not done
    assert [e["outcome"] for e in episodes] == ["pending", "pending", "pending"]
    later = history("P1", bodies(*events), [], f.at(36))["immunotherapy"]
    assert [e["outcome"] for e in later] == ["not_done", "not_done", "pending"]


def test_the_d8_decision_at_or_after_the_check_date_gives_the_outcome() -> None:
    events = [
        f.assessment(T0, event_id="a0", motor=2),
        f.immunotherapy(f.at(1), event_id="iv1"),
        f.immunotherapy(f.at(60), event_id="iv2"),
        f.assessment(f.at(29), event_id="a1", motor=1),
        f.assessment(f.at(88), event_id="a2", motor=1),
    ]
    decisions = [
        d8("d-early", f.at(10), response=True),  # before the first check date: not its outcome
        d8("d-first", f.at(29), response=True),
        d8("d-second", f.at(88), response=False),
    ]
    episodes = history("P1", bodies(*events), decisions, f.at(100))["immunotherapy"]
    assert [(e["outcome"], e["decision_id"], e["checked_at"]) for e in episodes] == [
        ("response", "d-first", "2026-02-03T09:00:00Z"),
        ("no_response", "d-second", "2026-04-03T09:00:00Z"),
    ]


def test_an_episode_without_a_grading_before_it_has_no_check() -> None:
    events = [
        f.immunotherapy(T0, event_id="iv1"),
        patient_report(f.at(-1), "P1", "pr-0", severity=2, interference=2),  # not a baseline
    ]
    [episode] = history("P1", bodies(*events), [], f.at(40))["immunotherapy"]
    assert episode["outcome"] == "no_baseline"
