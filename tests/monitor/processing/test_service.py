"""Processing (issue 3, item 3; CONTRACT.md, "Replay equivalence").

Events go in over HTTP, the in-process worker folds each patient's timeline, and the stored
current decisions (`GET /v1/patients/{id}/decisions`) must equal `policies.evaluate` over the
same events at the service clock: for the shared scenarios, for a timeline built here, and for
generated timelines sent in random order, random batches, with duplicates. A late event
recomputes; what it no longer supports is marked superseded, with a correction alert.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import pathlib
import random
import tempfile
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.processing.inprocess import InProcessWorker
from monitor.processing.service import process_patient
from monitor.services import Services
from monitor.storage.models import PatientRow
from policies import LABEL, builtin_pack
from tests.common import factories as f
from tests.common.factories import at
from tests.common.service import (
    Api,
    current_decisions,
    expected_decisions,
    instant,
    row_counts,
    rows,
    running_service,
)
from tests.common.shared_scenarios import SCENARIO_FILES, SCENARIOS, scenario_policy
from tests.conftest import FIXED_NOW
from tests.policies.test_properties import timelines


def send_in_batches(api: Api, bodies: list[dict[str, Any]], sizes: list[int]) -> None:
    """POST the bodies in consecutive batches of the given sizes (the rest in one last batch)."""
    start = 0
    for size in [*sizes, len(bodies)]:
        chunk = bodies[start : start + size]
        if not chunk:
            continue
        response = api.post_events({"events": chunk})
        assert response.status_code == 202, response.text
        start += size
        if start >= len(bodies):
            break


def patients_of(bodies: list[dict[str, Any]]) -> list[str]:
    return sorted({b["patient_id"] for b in bodies})


# --- the shared scenarios ----------------------------------------------------------------------


def _scenario_checker() -> Callable[[dict[str, Any], dict[str, Any]], bool]:
    spec = importlib.util.spec_from_file_location("shared_scenario_check", SCENARIOS / "check.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    matches: Callable[[dict[str, Any], dict[str, Any]], bool] = module._matches
    return matches


@pytest.mark.shared
@pytest.mark.skipif(not SCENARIO_FILES, reason=f"shared scenarios not present at {SCENARIOS}")
@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[p.stem for p in SCENARIO_FILES])
@pytest.mark.parametrize("clock", ["fixed-now", "scenario"])
def test_shared_scenario_decisions_equal_replay(
    tmp_path: pathlib.Path, path: pathlib.Path, clock: str
) -> None:
    """Sent shuffled in two batches (plus a re-send), the stored current decisions equal
    `evaluate` at the service clock: FIXED_NOW, or the scenario's own clock (its `until`, else
    its latest event), where they also meet the scenario's expectations."""
    scenario = json.loads(path.read_text())
    bodies: list[dict[str, Any]] = scenario["events"]
    own_clock = instant(scenario["until"]) if scenario.get("until") else None
    if own_clock is None:
        own_clock = max(instant(b["occurred_at"]) for b in bodies)
    now = FIXED_NOW if clock == "fixed-now" else own_clock
    policy = scenario_policy(scenario)
    shuffled = random.Random(path.stem).sample(bodies, len(bodies))
    with running_service(tmp_path, policy=policy, fixed_now=now) as running:
        send_in_batches(running.api, shuffled, [len(bodies) // 2])
        send_in_batches(running.api, shuffled[:2], [])  # duplicates
        assert running.worker.wait_idle()
        stored = current_decisions(running.api, patients_of(bodies))
    expected = expected_decisions(builtin_pack(policy), bodies, now)
    assert stored == expected
    assert stored, "a scenario gives at least one decision"
    if clock == "scenario":
        matches = _scenario_checker()
        for partial in scenario.get("expect", []):
            assert any(matches(partial, d) for d in stored), partial
        for partial in scenario.get("forbid", []):
            assert not any(matches(partial, d) for d in stored), partial


# --- a timeline of our own (always runs) ---------------------------------------------------------


def own_timeline() -> list[dict[str, Any]]:
    """Two patients: dose reductions, a hold and resume, grade 3 with the coasting watch and
    an escalation; a third whose events arrive before its enrolment (D7); one event dated
    after the service clock (not applied yet)."""
    p1 = [
        f.enrollment(at(0), patient="T1", event_id="t1-enr", unit="u7"),
        f.assessment(at(0, 2), patient="T1", event_id="t1-a0", sensory=0, cycle=1),
        f.administration(at(1), 1.3, patient="T1", event_id="t1-d1"),
        f.assessment(at(21), patient="T1", event_id="t1-a1", sensory=1, cycle=2),
        f.treatment_change(
            at(21, 3), "dose_reduced", patient="T1", event_id="t1-tc1", dose_mg_m2=1.0
        ),
        f.assessment(at(42), patient="T1", event_id="t1-a2", sensory=2, pain=1, cycle=3),
        f.treatment_change(at(42, 3), "held", patient="T1", event_id="t1-tc2"),
        f.assessment(at(56), patient="T1", event_id="t1-a3", sensory=1, cycle=3),
        f.treatment_change(at(56, 3), "resumed", patient="T1", event_id="t1-tc3", dose_mg_m2=0.7),
        f.assessment(at(77), patient="T1", event_id="t1-a4", sensory=3, motor=2, cycle=4),
        f.assessment(at(91), patient="T1", event_id="t1-a5", sensory=3, motor=3),
        f.immunotherapy(at(95), "ivig", patient="T1", event_id="t1-ivig"),
    ]
    p2 = [
        f.enrollment(
            at(10),
            patient="T2",
            event_id="t2-enr",
            route="IV",
            schedule="twice_weekly",
            risk_factors=["diabetes"],
        ),
        f.assessment(at(31), patient="T2", event_id="t2-a1", sensory=2, cycle=2),
        f.assessment(at(52), patient="T2", event_id="t2-a2", sensory=2, cycle=3),
        f.treatment_change(at(60), "completed", patient="T2", event_id="t2-done"),
        f.assessment(at(80), patient="T2", event_id="t2-a3", sensory=3),
        f.course_end(at(120), patient="T2", event_id="t2-end"),
    ]
    p3 = [
        f.assessment(at(5), patient="T3", event_id="t3-a0", sensory=1),
        f.enrollment(at(6), patient="T3", event_id="t3-enr"),
        f.assessment(FIXED_NOW + dt.timedelta(days=3), patient="T3", event_id="t3-future"),
    ]
    return p1 + p2 + p3


def test_own_timeline_in_shuffled_batches_equals_replay(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    bodies = own_timeline()
    expected = expected_decisions(services.pack, bodies, FIXED_NOW)
    actions = [d["action"] for d in expected]
    # The timeline reaches the rules it was written for (so this test can't pass vacuously).
    for action in (
        "reduce_dose",
        "discontinue",
        "coasting_watch_started",
        "coasting_worsening",
        "escalate_immunotherapy",
        "review_required",
        "reassessment_overdue",
    ):
        assert action in actions, actions
    shuffled = random.Random(7).sample(bodies, len(bodies))
    send_in_batches(api, shuffled, [1, 4, 2, 5])
    send_in_batches(api, random.Random(8).sample(bodies, 6), [3])  # duplicates
    assert worker.wait_idle()
    assert current_decisions(api, patients_of(bodies)) == expected
    # Every event was folded: no open outbox row, nothing dead-lettered.
    assert rows(services, "SELECT count(*) AS n FROM outbox WHERE processed_at IS NULL") == [
        {"n": 0}
    ]
    assert row_counts(services, ["dead_letter"]) == {"dead_letter": 0}
    # The event after the clock is stored, not applied, and sets the patient's next timer.
    with services.sessions() as session:
        t3 = session.get(PatientRow, "T3")
        assert t3 is not None
        assert t3.next_timer_at == FIXED_NOW + dt.timedelta(days=3)


def test_processing_a_patient_again_changes_nothing(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    bodies = own_timeline()
    send_in_batches(api, bodies, [])
    assert worker.wait_idle()
    tables = ("decision", "alert", "outbox", "event", "dead_letter")
    before = {t: rows(services, f"SELECT * FROM {t} ORDER BY id") for t in tables}
    patients_before = rows(services, "SELECT * FROM patient ORDER BY patient_id")
    for patient_id in patients_of(bodies):
        outcome = process_patient(services.sessions, services.pack, patient_id, FIXED_NOW)
        changes = (outcome.inserted, outcome.superseded, outcome.revived, outcome.revised)
        assert changes == (0, 0, 0, 0)
        assert outcome.outbox_done == 0
    assert {t: rows(services, f"SELECT * FROM {t} ORDER BY id") for t in tables} == before
    # Nothing new, no timer come, same pack: the run ends before folding; not even the row's
    # bookkeeping moves.
    assert rows(services, "SELECT * FROM patient ORDER BY patient_id") == patients_before


def test_a_changed_pack_or_a_due_timer_folds_again(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    bodies = own_timeline()
    send_in_batches(api, bodies, [])
    assert worker.wait_idle()
    patient_id = "T3"  # has an event dated after the clock: its next timer
    with services.sessions() as session:
        row = session.get(PatientRow, patient_id)
        assert row is not None
        version, next_timer = row.version, row.next_timer_at
    assert next_timer == FIXED_NOW + dt.timedelta(days=3)
    label = LABEL
    process_patient(services.sessions, label, patient_id, FIXED_NOW)
    with services.sessions() as session:
        row = session.get(PatientRow, patient_id)
        assert row is not None
        assert (row.version, row.evaluated_policy) == (version + 1, "label@1")
    process_patient(services.sessions, label, patient_id, next_timer)  # the clock reaches it
    with services.sessions() as session:
        row = session.get(PatientRow, patient_id)
        assert row is not None
        assert row.version == version + 2


# --- late events -----------------------------------------------------------------------------


def test_a_late_event_recomputes_and_supersedes_with_a_correction(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    on_time = [
        f.enrollment(at(0), event_id="e0", unit="u7"),
        f.assessment(at(21), event_id="a21", sensory=2),
        f.assessment(at(42), event_id="a42", sensory=2),
    ]
    send_in_batches(api, on_time, [])
    assert worker.wait_idle()
    first = api.decisions("P1")
    assert first == expected_decisions(services.pack, on_time, FIXED_NOW)
    reduce_at_21 = next(d for d in first if d["action"] == "reduce_dose")
    assert reduce_at_21["trigger"] == "a21"
    # One decision that never had an alert (as if its audience were empty): no correction.
    overdue = next(d for d in first if d["action"] == "reassessment_overdue")
    with services.engine.begin() as connection:
        from sqlalchemy import text

        connection.execute(
            text("DELETE FROM alert WHERE decision_id = :d"), {"d": overdue["decision_id"]}
        )

    # An hour later, an assessment from day 14 arrives: grade 2 there, so the reduction
    # belongs to day 14 and day 21 is "stable".
    later = FIXED_NOW + dt.timedelta(hours=1)
    services.settings = services.settings.model_copy(update={"fixed_now": later})
    late = f.assessment(at(14), event_id="a14", sensory=2)
    assert api.post_events(late).status_code == 202
    assert worker.wait_idle()

    everything = [*on_time, late]
    current = api.decisions("P1")
    assert current == expected_decisions(services.pack, everything, later)
    current_ids = {d["decision_id"] for d in current}
    first_ids = {d["decision_id"] for d in first}
    gone = first_ids - current_ids
    assert reduce_at_21["decision_id"] in gone
    assert [d["trigger"] for d in current if d["action"] == "reduce_dose"] == ["a14"]

    with_superseded = api.decisions("P1", superseded=True)
    superseded = [d for d in with_superseded if "superseded_at" in d]
    assert {d["decision_id"] for d in superseded} == gone
    assert {d["superseded_at"] for d in superseded} == {"2026-10-01T13:00:00Z"}
    # The superseded ones keep their body; the current ones are exactly `current`.
    assert [d for d in with_superseded if "superseded_at" not in d] == current
    for d in superseded:
        assert d["superseded_reason"] == "later_events"
        assert "superseded_by" not in d
        body = {k: v for k, v in d.items() if k not in ("superseded_at", "superseded_reason")}
        assert body in first

    alerts = rows(services, "SELECT decision_id, kind, message FROM alert ORDER BY id")
    corrections = [a for a in alerts if a["kind"] == "correction"]
    had_alert = gone - {overdue["decision_id"]}
    assert sorted(a["decision_id"] for a in corrections) == sorted(had_alert)
    reduce_correction = next(
        a for a in corrections if a["decision_id"] == reduce_at_21["decision_id"]
    )
    assert reduce_correction["message"] == (
        "Correction: the earlier reduce dose advice no longer applies after later "
        "information; see the current decisions."
    )
    # New decisions got their alerts; processing again adds no second correction.
    news = {a["decision_id"] for a in alerts if a["kind"] == "new"}
    assert current_ids - first_ids <= news
    process_patient(services.sessions, services.pack, "P1", later)
    assert rows(services, "SELECT decision_id, kind, message FROM alert ORDER BY id") == alerts


def test_an_event_before_the_first_one_recomputes_the_whole_timeline(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    """Assessments first, the enrolment last: D7 advice, then the real course."""
    assessments = [f.assessment(at(d), event_id=f"a{d}", sensory=1) for d in (21, 42)]
    send_in_batches(api, assessments, [])
    assert worker.wait_idle()
    assert api.decisions("P1") == expected_decisions(services.pack, assessments, FIXED_NOW)
    enrollment = f.enrollment(at(0), event_id="e0")
    assert api.post_events(enrollment).status_code == 202
    assert worker.wait_idle()
    everything = [enrollment, *assessments]
    assert api.decisions("P1") == expected_decisions(services.pack, everything, FIXED_NOW)


# --- property: any order, any batching, duplicates -------------------------------------------


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[int]]:
    """(events, what is sent in which order incl. duplicates, batch sizes)."""
    bodies = draw(timelines())
    order = draw(st.permutations(bodies))
    resent = draw(st.lists(st.sampled_from(bodies), max_size=5))
    sent = list(order)
    for body in resent:  # each duplicate goes somewhere after... or before: anywhere
        sent.insert(draw(st.integers(0, len(sent))), dict(reversed(list(body.items()))))
    sizes = draw(st.lists(st.integers(1, 6), max_size=len(sent)))
    return bodies, sent, sizes


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(deliveries())
def test_any_order_batches_and_duplicates_give_replays_decisions(
    delivery: tuple[list[dict[str, Any]], list[dict[str, Any]], list[int]],
) -> None:
    bodies, sent, sizes = delivery
    with (
        tempfile.TemporaryDirectory() as directory,
        running_service(pathlib.Path(directory)) as running,
    ):
        send_in_batches(running.api, sent, sizes)
        assert running.worker.wait_idle()
        stored = current_decisions(running.api, patients_of(bodies))
        pack = running.services.pack
        dead = row_counts(running.services, ["dead_letter"])
    assert dead == {"dead_letter": 0}
    assert stored == expected_decisions(pack, bodies, FIXED_NOW)


def test_a_late_event_that_changes_a_decisions_content_updates_it(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    """Same decision id, other content (found by the property test below): a dose_reduced
    arriving late makes day 21's reduction go 1.0 -> 0.7 instead of 1.3 -> 1.0."""
    on_time = [f.enrollment(at(0), event_id="e0"), f.assessment(at(21), event_id="a21", sensory=2)]
    send_in_batches(api, on_time, [])
    assert worker.wait_idle()
    [reduce] = [d for d in api.decisions("P1") if d["action"] == "reduce_dose"]
    assert reduce["dose_mg_m2"] == 1.0
    late = f.treatment_change(at(10), "dose_reduced", event_id="tc10", dose_mg_m2=1.0)
    assert api.post_events(late).status_code == 202
    assert worker.wait_idle()
    expected = expected_decisions(services.pack, [*on_time, late], FIXED_NOW)
    [wanted] = [d for d in expected if d["action"] == "reduce_dose"]
    assert (wanted["decision_id"], wanted["dose_mg_m2"]) == (reduce["decision_id"], 0.7)
    assert api.decisions("P1") == expected
    # Whoever was told "reduce to 1.0" hears that it no longer holds.
    corrections = rows(
        services, "SELECT decision_id FROM alert WHERE kind = 'correction' ORDER BY id"
    )
    assert corrections == [{"decision_id": reduce["decision_id"]}]
