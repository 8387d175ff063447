"""Replay equivalence (CONTRACT.md) as properties of `evaluate` over generated timelines.

The strategy builds realistic courses for 1-4 patients: an enrolment (sometimes preceded by a
stray assessment, D7), then months of assessments with random CTCAE grades (optional cycle and
findings and source), patients' own reports (V9), administrations, treatment changes,
immunotherapy episodes (V10), course ends and re-enrolments,
with times written in several UTC offsets. The properties compare the full `model_dump` of the
decisions, so a change in any field (rationale included) counts.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies import DEFAULT, LABEL, Decision, Event, PolicyPack, evaluate, pack_from_mapping
from policies.events import parse_event
from policies.packs import DEFAULT_V2, LABEL_V2
from policies.pro_ctcae import composite_grade
from tests.common import factories as f

# A site pack with other thresholds, so the properties don't hold only for the defaults.
SITE = pack_from_mapping(
    {
        "base": "default",
        "name": "site",
        "version": 3,
        "coasting_window_days": 60,
        "watch_interval_days": 10,
        "overdue_grace_days": 0,
        "escalation_answer_days": 3,
        "missed_escalate_days": 1,  # V5: with no grace, missed 1 day after the due time
    }
)
# V5 (lost to follow-up) switched on a label pack: the third timer kind during holds too
LABEL_V5 = pack_from_mapping({"base": "label@1", "name": "label-v5", "missed_escalate_days": 7})
# V9 and V10 with a site's thresholds on the label rules: a shorter response check
NEURO = pack_from_mapping(
    {
        "base": "label",
        "name": "neuro",
        "response_check_days": 14,
        "mrc_response_points": 3,
        "incat_response_points": 2,
    }
)
PACKS = (DEFAULT, LABEL, DEFAULT_V2, LABEL_V2, SITE, LABEL_V5, NEURO)

OFFSETS = tuple(dt.timezone(dt.timedelta(minutes=m)) for m in (0, 0, 60, 120, -300, 330, 540, -210))
START = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
# each timer kind's trigger and the action it emits
TIMER_TRIGGERS = {
    "timer:reassessment_overdue": "reassessment_overdue",
    "timer:escalation_unanswered": "escalation_unanswered",
    "timer:reassessment_missed": "review_required",
}

PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- the strategy ---------------------------------------------------------------------------


@st.composite
def _moment(draw: st.DrawFn, after: dt.datetime, max_days: int) -> dt.datetime:
    """A time after `after` (0 allowed: same instant), written in a random UTC offset."""
    gap = dt.timedelta(
        days=draw(st.integers(0, max_days)),
        hours=draw(st.integers(0, 23)),
        minutes=draw(st.sampled_from((0, 0, 15, 30, 45))),
    )
    return (after + gap).astimezone(draw(st.sampled_from(OFFSETS)))


@st.composite
def _grades(draw: st.DrawFn, *, low: bool = False) -> dict[str, int]:
    top = {"sensory": 4, "motor": 4, "pain": 3, "autonomic": 4}
    domains = draw(st.lists(st.sampled_from(sorted(top)), min_size=1, max_size=4, unique=True))
    # Mostly low grades (realistic), sometimes anything in range (discontinuation, watch).
    if low or draw(st.integers(0, 3)) > 0:
        return {d: draw(st.integers(0, min(2, top[d]))) for d in domains}
    return {d: draw(st.integers(0, top[d])) for d in domains}


@st.composite
def _findings(draw: st.DrawFn) -> dict[str, Any]:
    findings: dict[str, Any] = {}
    if draw(st.booleans()):
        findings["ncs_pattern"] = draw(
            st.sampled_from(("axonal", "demyelinating", "mixed", "normal"))
        )
    if draw(st.booleans()):
        findings["csf_albuminocytologic_dissociation"] = draw(st.booleans())
    if draw(st.booleans()):
        findings["asymmetric_weakness"] = draw(st.booleans())
    if draw(st.booleans()):
        findings["mrc_sum_score"] = draw(st.integers(0, 60))
    if draw(st.booleans()):
        findings["rankin"] = draw(st.integers(0, 5))
    if draw(st.booleans()):
        findings["incat"] = draw(st.integers(0, 10))
    if draw(st.integers(0, 5)) == 0:
        findings["site_note"] = "recorded by the neurophysiology lab"
    return findings


def _enrollment(draw: st.DrawFn, when: dt.datetime, patient: str, eid: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "dose_mg_m2": draw(st.sampled_from((1.3, 1.3, 1.0, 0.7))),
        "route": draw(st.sampled_from(("IV", "SC"))),
        "schedule": draw(st.sampled_from(("twice_weekly", "weekly"))),
        "cycle_length_days": draw(st.sampled_from((21, 21, 28, 35, 14))),
        "age": draw(st.integers(30, 90)),
        "risk_factors": draw(
            st.lists(
                st.sampled_from(
                    ("diabetes", "baseline_neuropathy", "prior_thalidomide", "alcohol")
                ),
                max_size=2,
                unique=True,
            )
        ),
        "concomitant": draw(
            st.lists(st.sampled_from(("dexamethasone", "thalidomide", "vincristine")), max_size=2)
        ),
        "unit": draw(st.sampled_from(("u1", "u7"))),
    }
    if draw(st.integers(0, 3)) == 0:
        fields["baseline"] = draw(_grades(low=True))
    return f.enrollment(when, patient=patient, event_id=eid, **fields)


def _assessment(draw: st.DrawFn, when: dt.datetime, patient: str, eid: str) -> dict[str, Any]:
    fields: dict[str, Any] = dict(draw(_grades()))
    if draw(st.booleans()):
        fields["cycle"] = draw(st.integers(1, 8))
    if draw(st.integers(0, 2)) == 0:
        fields["findings"] = draw(_findings())
    if draw(st.booleans()):
        fields["source"] = draw(st.sampled_from(("clinician", "nurse", "patient")))
    return f.assessment(when, patient=patient, event_id=eid, **fields)


def _patient_report(draw: st.DrawFn, when: dt.datetime, patient: str, eid: str) -> dict[str, Any]:
    """V9: what the intake sends, a sensory grade from the PRO-CTCAE answers (sometimes more
    domains, as a site's own form might), new weakness, a free-text comment."""
    severity = draw(st.integers(0, 4))
    interference = None if severity == 0 else draw(st.integers(0, 4))
    answers = {"numbness_tingling_severity": severity}
    if interference is not None:
        answers["numbness_tingling_interference"] = interference
    findings: dict[str, Any] = {"pro_ctcae": answers, "new_weakness": draw(st.booleans())}
    if draw(st.booleans()):
        findings["patient_comment"] = "worse at night"
    grades: dict[str, int] = {"sensory": composite_grade(severity, interference)}
    if draw(st.integers(0, 3)) == 0:
        grades |= draw(_grades())
    return f.assessment(
        when, patient=patient, event_id=eid, source="patient", findings=findings, **grades
    )


def _other(draw: st.DrawFn, kind: str, when: dt.datetime, patient: str, eid: str) -> dict[str, Any]:
    if kind == "administration":
        dose = draw(st.sampled_from((1.3, 1.0, 0.7, 1.5)))
        body = f.administration(
            when, dose, patient=patient, event_id=eid, route=draw(st.sampled_from(("IV", "SC")))
        )
        if draw(st.integers(0, 3)) == 0:  # given in mg: converted by a BSA, or not comparable
            del body["dose_mg_m2"]
            body["dose_mg"] = round(dose * 1.8, 2)
            if draw(st.booleans()):
                body["bsa_m2"] = draw(st.sampled_from((1.6, 1.8, 2.1)))
        return body
    if kind == "treatment_change":
        action = draw(
            st.sampled_from(("dose_reduced", "held", "resumed", "discontinued", "completed"))
        )
        extra: dict[str, Any] = {}
        if action in ("dose_reduced", "resumed") and draw(st.booleans()):
            extra["dose_mg_m2"] = draw(st.sampled_from((1.0, 0.7)))
        if draw(st.integers(0, 3)) == 0:
            extra["decision_id"] = "d-0123456789abcdef01234567"
        return f.treatment_change(when, action, patient=patient, event_id=eid, **extra)
    if kind == "immunotherapy":
        therapy = draw(
            st.sampled_from(("ivig", "corticosteroids", "plasma_exchange", "rituximab", "other"))
        )
        return f.immunotherapy(when, therapy, patient=patient, event_id=eid)
    reason = draw(st.sampled_from(("completed", "death", "transferred", "other")))
    return f.course_end(when, reason, patient=patient, event_id=eid)


KINDS = (
    ("assessment", 8),
    ("administration", 4),
    ("treatment_change", 2),
    ("immunotherapy", 1),
    ("patient_report", 2),
    ("course_end", 1),
    ("enrollment", 1),
)
KIND_POOL = tuple(kind for kind, weight in KINDS for _ in range(weight))


@st.composite
def patient_timeline(draw: st.DrawFn, patient: str) -> list[dict[str, Any]]:
    """One patient's events (wire form) in clinical order, spread over months."""
    bodies: list[dict[str, Any]] = []
    counter = iter(range(1000))

    def eid() -> str:
        # Ids that don't sort like times, so same-instant ties are broken by id, not by luck.
        return f"{patient}-{draw(st.sampled_from('abcxyz'))}{next(counter):02d}"

    now = START + dt.timedelta(days=draw(st.integers(0, 60)), hours=draw(st.integers(0, 12)))
    if draw(st.integers(0, 5)) == 0:  # D7: an assessment before any enrolment
        bodies.append(
            _assessment(draw, now.astimezone(draw(st.sampled_from(OFFSETS))), patient, eid())
        )
        now = draw(_moment(now, 10))
    bodies.append(_enrollment(draw, now.astimezone(draw(st.sampled_from(OFFSETS))), patient, eid()))
    for _ in range(draw(st.integers(0, 14))):
        now = draw(_moment(now, 30))
        kind = draw(st.sampled_from(KIND_POOL))
        if kind == "assessment":
            bodies.append(_assessment(draw, now, patient, eid()))
        elif kind == "patient_report":
            bodies.append(_patient_report(draw, now, patient, eid()))
        elif kind == "enrollment":
            bodies.append(_enrollment(draw, now, patient, eid()))
        elif kind == "immunotherapy":  # V10: an episode, sometimes over several days
            first = _other(draw, kind, now, patient, eid())
            bodies.append(first)
            for _ in range(draw(st.sampled_from((0, 0, 1, 3)))):
                now = draw(_moment(now, 4))
                therapy = first["therapy"]
                bodies.append(f.immunotherapy(now, therapy, patient=patient, event_id=eid()))
        else:
            bodies.append(_other(draw, kind, now, patient, eid()))
    return bodies


@st.composite
def timelines(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-4 patients' events, interleaved in file order by time (as an export would be)."""
    count = draw(st.integers(1, 4))
    bodies = [body for n in range(count) for body in draw(patient_timeline(f"P-{n + 1:04d}"))]
    return sorted(bodies, key=lambda b: dt.datetime.fromisoformat(b["occurred_at"]))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[PolicyPack, list[dict[str, Any]], dt.datetime | None]:
    """(pack, events, until): until is None (the latest event) or some days after it."""
    pack = draw(st.sampled_from(PACKS))
    bodies = draw(timelines())
    until: dt.datetime | None = None
    if draw(st.booleans()):
        latest = max(dt.datetime.fromisoformat(b["occurred_at"]) for b in bodies)
        until = latest + dt.timedelta(
            days=draw(st.integers(0, 150)), hours=draw(st.integers(0, 23))
        )
        until = until.astimezone(draw(st.sampled_from(OFFSETS)))
    return pack, bodies, until


# --- helpers --------------------------------------------------------------------------------


def parsed(bodies: list[dict[str, Any]]) -> list[Event]:
    """Fresh event objects: every run parses its own copies, as a new process would."""
    return [parse_event(body) for body in bodies]


def dumped(decisions: list[Decision]) -> list[dict[str, Any]]:
    return [d.model_dump() for d in decisions]


def run(pack: PolicyPack, bodies: list[dict[str, Any]], until: dt.datetime | None) -> list[Any]:
    return dumped(evaluate(pack, parsed(bodies), until))


def latest_time(bodies: list[dict[str, Any]]) -> dt.datetime:
    return max(dt.datetime.fromisoformat(b["occurred_at"]) for b in bodies)


# --- (a)-(f) --------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(scenario=scenarios(), data=st.data())
def test_shuffling_the_events_never_changes_the_decisions(
    scenario: tuple[PolicyPack, list[dict[str, Any]], dt.datetime | None], data: st.DataObject
) -> None:
    pack, bodies, until = scenario
    shuffled = data.draw(st.permutations(bodies), label="shuffled")
    assert run(pack, shuffled, until) == run(pack, bodies, until)


@PROPERTY_SETTINGS
@given(scenario=scenarios(), data=st.data())
def test_duplicating_any_subset_never_changes_the_decisions(
    scenario: tuple[PolicyPack, list[dict[str, Any]], dt.datetime | None], data: st.DataObject
) -> None:
    pack, bodies, until = scenario
    copies = data.draw(st.lists(st.sampled_from(bodies), min_size=1, max_size=10), label="copies")
    with_copies = list(bodies)
    for body in copies:
        # The same body: same id, same fields, the same instant written with the same offset.
        position = data.draw(st.integers(0, len(with_copies)), label="position")
        with_copies.insert(position, dict(body))
    assert len(with_copies) == len(bodies) + len(copies)
    assert run(pack, with_copies, until) == run(pack, bodies, until)


@PROPERTY_SETTINGS
@given(scenario=scenarios(), data=st.data())
def test_resending_events_at_the_end_never_changes_the_decisions(
    scenario: tuple[PolicyPack, list[dict[str, Any]], dt.datetime | None], data: st.DataObject
) -> None:
    pack, bodies, until = scenario
    resent = data.draw(st.lists(st.sampled_from(bodies), min_size=1, max_size=len(bodies)))
    twice = bodies + [dict(b) for b in resent] + [dict(b) for b in bodies]
    assert run(pack, twice, until) == run(pack, bodies, until)


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_decision_ids_are_stable_across_runs_and_unique_within_a_run(
    scenario: tuple[PolicyPack, list[dict[str, Any]], dt.datetime | None],
) -> None:
    pack, bodies, until = scenario
    first = evaluate(pack, parsed(bodies), until)
    second = evaluate(pack, parsed(list(reversed(bodies))), until)
    ids = [d.decision_id for d in first]
    assert ids == [d.decision_id for d in second]
    duplicated = [i for i, n in Counter(ids).items() if n > 1]
    assert duplicated == [], [d.model_dump() for d in first if d.decision_id in duplicated]
    assert all(re.fullmatch(r"d-[0-9a-f]{24}", i) for i in ids)
    # Replay prints them sorted by `at`, then `decision_id`.
    assert [(d.at, d.decision_id) for d in first] == sorted((d.at, d.decision_id) for d in first)


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_no_decision_after_until_and_timers_fire_only_up_to_until(
    scenario: tuple[PolicyPack, list[dict[str, Any]], dt.datetime | None],
) -> None:
    pack, bodies, until = scenario
    clock = until or latest_time(bodies)
    decisions = evaluate(pack, parsed(bodies), until)
    assert decisions  # every enrolment schedules its first reassessment at least
    event_times = {b["event_id"]: dt.datetime.fromisoformat(b["occurred_at"]) for b in bodies}
    for decision in decisions:
        assert decision.at <= clock, decision.model_dump()
        wire = decision.to_json_dict()
        assert str(wire["at"]).endswith("Z")
        if decision.trigger in TIMER_TRIGGERS:
            assert decision.action == TIMER_TRIGGERS[decision.trigger]
        else:  # an event's decision holds at the event's time
            assert decision.at == event_times[decision.trigger], decision.model_dump()


@PROPERTY_SETTINGS
@given(scenario=scenarios(), data=st.data())
def test_timers_fire_only_up_to_an_earlier_until(
    scenario: tuple[PolicyPack, list[dict[str, Any]], dt.datetime | None], data: st.DataObject
) -> None:
    """A clock inside the timeline: no timer fires after it (events after it are still read)."""
    pack, bodies, _ = scenario
    first = min(dt.datetime.fromisoformat(b["occurred_at"]) for b in bodies)
    span = int((latest_time(bodies) - first).total_seconds() // 3600)
    until = first + dt.timedelta(hours=data.draw(st.integers(0, max(span, 0)), label="hours"))
    for decision in evaluate(pack, parsed(bodies), until):
        if decision.trigger in TIMER_TRIGGERS:
            assert decision.at <= until, decision.model_dump()


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_each_patient_alone_gives_the_same_decisions_as_all_together(
    scenario: tuple[PolicyPack, list[dict[str, Any]], dt.datetime | None],
) -> None:
    pack, bodies, until = scenario
    clock = until or latest_time(bodies)  # one clock for everyone, as replay uses
    together = run(pack, bodies, clock)
    patients = sorted({b["patient_id"] for b in bodies})
    for patient in patients:
        alone = run(pack, [b for b in bodies if b["patient_id"] == patient], clock)
        assert alone == [d for d in together if d["patient_id"] == patient]
    assert sum(1 for d in together if d["patient_id"] in patients) == len(together)


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_a_missed_reassessment_follows_its_overdue_once_by_the_setting(
    scenario: tuple[PolicyPack, list[dict[str, Any]], dt.datetime | None],
) -> None:
    """V5: each `reassessment_missed` is `missed_escalate_days` after an overdue of its patient,
    at most one per overdue; a pack without the setting never emits it."""
    pack, bodies, until = scenario
    decisions = evaluate(pack, parsed(bodies), until)
    missed = [d for d in decisions if d.trigger == "timer:reassessment_missed"]
    assert all(d.reason == "reassessment_missed" for d in missed)
    if pack.missed_escalate_days is None:
        assert missed == []
        return
    overdue = {(d.patient_id, d.at) for d in decisions if d.action == "reassessment_overdue"}
    after = dt.timedelta(days=pack.missed_escalate_days)
    follows = [(d.patient_id, d.at - after) for d in missed]
    assert set(follows) <= overdue
    assert len(set(follows)) == len(follows)


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_a_patient_report_never_changes_a_clinician_decision(
    scenario: tuple[PolicyPack, list[dict[str, Any]], dt.datetime | None],
) -> None:
    """V9: with the reports taken out of the timeline, every decision but the D9 reviews is the
    same (dose, schedule, route, due times, rationale: the whole decision); each D9 review
    answers a patient report. The pack's other settings as drawn, V9 switched on."""
    pack, bodies, until = scenario
    pack = pack.model_copy(update={"patient_reports_advise_only": True})
    clock = until or latest_time(bodies)
    reports = {b["event_id"] for b in bodies if b.get("source") == "patient"}
    without = [b for b in bodies if b["event_id"] not in reports]
    with_reports = evaluate(pack, parsed(bodies), clock)
    assert all(d.trigger in reports for d in with_reports if d.rule == "D9")
    assert all(d.reason == "patient_reported_change" for d in with_reports if d.rule == "D9")
    others = dumped([d for d in with_reports if d.rule != "D9"])
    assert others == run(pack, without, clock)
    doses = [(d["trigger"], d["dose_mg_m2"]) for d in others if d["dose_mg_m2"] is not None]
    assert all(trigger not in reports for trigger, _ in doses)


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_a_response_check_answers_a_clinician_grading_after_an_immunotherapy(
    scenario: tuple[PolicyPack, list[dict[str, Any]], dt.datetime | None],
) -> None:
    """V10: D8 decisions only with `response_check_days`; each is triggered by a clinician's or
    nurse's grading at least that long after an immunotherapy event of its patient, and says
    response or no response (at most one of each per grading)."""
    pack, bodies, until = scenario
    decisions = evaluate(pack, parsed(bodies), until)
    checks = [d for d in decisions if d.rule == "D8"]
    if pack.response_check_days is None:
        assert checks == []
        return
    by_id = {b["event_id"]: b for b in bodies}
    wait = dt.timedelta(days=pack.response_check_days)
    for check in checks:
        grading = by_id[check.trigger]
        assert grading["type"] == "assessment"
        assert grading.get("source") != "patient"
        therapies = [
            dt.datetime.fromisoformat(b["occurred_at"])
            for b in bodies
            if b["type"] == "immunotherapy" and b["patient_id"] == check.patient_id
        ]
        assert any(check.at >= moment + wait for moment in therapies), check.model_dump()
        assert (check.action, check.reason) in (
            ("immunotherapy_response", None),
            ("review_required", "immunotherapy_no_response"),
        )
    kinds = Counter((d.trigger, d.action) for d in checks)
    assert all(n == 1 for n in kinds.values())


# --- the strategy itself ----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(bodies=timelines())
def test_generated_timelines_are_valid_contract_events(bodies: list[dict[str, Any]]) -> None:
    events = parsed(bodies)
    assert len({e.event_id for e in events}) == len(events)
    assert 1 <= len({e.patient_id for e in events}) <= 4
    assert all(e.occurred_at.utcoffset() is not None for e in events)


# --- rationale times ------------------------------------------------------------------------


def test_rationale_times_labelled_utc_are_utc() -> None:
    when = dt.datetime(2026, 3, 2, 8, 40, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    decisions = f.run(f.enrollment(when, event_id="e0"))
    scheduled = [d for d in decisions if d.action == "schedule_reassessment"]
    assert [d.to_json_dict()["due_at"] for d in scheduled] == ["2026-03-23T07:40:00Z"]
    assert "due 2026-03-23 07:40 UTC" in scheduled[0].rationale, scheduled[0].rationale
