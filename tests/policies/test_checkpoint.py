"""Incremental folding (policies/checkpoint.py) equals a full fold, decision for decision.

The property plays the worker's part: events of one patient arrive in batches, in an order
that is mostly clinical but with late events and duplicates, the clock moves (sometimes
behind the latest event), and the pack changes now and then. Each batch is folded by resuming
the previous checkpoint when `resume_patient` allows it (the decisions before the checkpoint
stand, the checkpoint's tail is replaced by the resumed fold's), from the start otherwise. After
every batch the current decisions must equal a full fold's, in order and in every field.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies import DEFAULT, Decision, Event, evaluate_patient
from policies.checkpoint import (
    ENGINE_VERSION,
    Checkpoint,
    dump_state,
    fold_patient,
    load_state,
    resume_patient,
)
from policies.engine import timeline_order
from policies.packs import DEFAULT_V2, LABEL_V2
from tests.common import factories as f
from tests.policies.test_properties import OFFSETS, PACKS, parsed, patient_timeline

PATIENT = "P-0001"
RESUMED: list[int] = []  # resumed folds per example: the property must exercise them
INCREMENTAL_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """One patient's events and the batches they arrive in (indexes into the events, in
    clinical order): each event is put `lateness` batches back now and then; some are sent
    twice."""
    bodies = draw(patient_timeline(PATIENT))
    count = len(bodies)
    slots: dict[int, list[int]] = {}
    position = 0
    for index in range(count):
        position += draw(st.sampled_from((0, 1, 1, 1, 2)))
        late = draw(st.sampled_from((0, 0, 0, 0, 0, 1, 3)))
        slots.setdefault(position + late, []).append(index)
        if draw(st.integers(0, 9)) == 0:  # a duplicate, later
            slots.setdefault(position + late + draw(st.integers(0, 4)), []).append(index)
    return bodies, [slots[k] for k in sorted(slots)]


def _key(event: Event) -> tuple[dt.datetime, str]:
    return timeline_order(event)


@INCREMENTAL_SETTINGS
@given(case=arrivals(), data=st.data())
def test_resuming_the_checkpoint_gives_the_full_folds_decisions(
    case: tuple[list[dict[str, Any]], list[list[int]]], data: st.DataObject
) -> None:
    bodies, batches = case
    events = parsed(bodies)
    pack = data.draw(st.sampled_from(PACKS), label="first pack")
    stored: dict[str, Event] = {}
    current: dict[str, Decision] = {}
    checkpoint: Checkpoint | None = None
    resumed = 0
    for batch in batches:
        if data.draw(st.integers(0, 7), label="change pack") == 0:
            pack = data.draw(st.sampled_from(PACKS), label="pack")
        new = [events[i] for i in batch if events[i].event_id not in stored]
        stored.update((e.event_id, e) for e in new)
        latest = max(e.occurred_at for e in stored.values())
        until = latest + dt.timedelta(
            days=data.draw(st.integers(-20, 60), label="clock days"),
            hours=data.draw(st.integers(0, 23), label="clock hours"),
        )
        until = until.astimezone(data.draw(st.sampled_from(OFFSETS), label="clock offset"))
        result = None
        if checkpoint is not None:
            last = checkpoint.last_key
            # what the worker loads: the new events, and those not yet folded (dated after
            # the checkpoint's last event: the clock had not reached them)
            pending = {e.event_id: e for e in new}
            pending |= {e.event_id: e for e in stored.values() if last is None or _key(e) > last}
            result = resume_patient(pack, checkpoint, list(pending.values()), until)
        if result is None:
            result = fold_patient(pack, PATIENT, list(stored.values()), until)
            current = {d.decision_id: d for d in result.decisions}
        else:
            assert checkpoint is not None
            resumed += 1
            for decision_id in checkpoint.tail:
                current.pop(decision_id, None)
            current.update((d.decision_id, d) for d in result.decisions)
        checkpoint = result.checkpoint
        full = evaluate_patient(pack, PATIENT, list(stored.values()), until)
        assert [d.model_dump() for d in current.values()] == [
            d.model_dump() for d in full.decisions
        ]
        assert dump_state(result.outcome.state) == dump_state(full.state)
    RESUMED.append(resumed)


def _timeline() -> list[Event]:
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    return parsed(
        [
            f.enrollment(start, patient=PATIENT, event_id="e1"),
            f.assessment(start + dt.timedelta(days=21), patient=PATIENT, event_id="e2", sensory=1),
            f.assessment(start + dt.timedelta(days=42), patient=PATIENT, event_id="e3", sensory=3),
        ]
    )


def test_a_late_event_another_pack_or_engine_or_an_earlier_clock_needs_a_full_fold() -> None:
    events = _timeline()
    until = events[1].occurred_at
    first = fold_patient(DEFAULT_V2, PATIENT, events[:2], until)
    assert first.checkpoint.last_key == _key(events[1])
    later = events[2].occurred_at
    assert resume_patient(DEFAULT_V2, first.checkpoint, [events[2]], later) is not None
    assert resume_patient(DEFAULT_V2, first.checkpoint, [events[0], events[2]], later) is None
    assert resume_patient(DEFAULT, first.checkpoint, [events[2]], later) is None
    assert resume_patient(LABEL_V2, first.checkpoint, [events[2]], later) is None
    old_engine = Checkpoint(
        pack=first.checkpoint.pack,
        engine=ENGINE_VERSION + "-old",
        last_key=first.checkpoint.last_key,
        state=first.checkpoint.state,
        tail=first.checkpoint.tail,
    )
    assert resume_patient(DEFAULT_V2, old_engine, [events[2]], later) is None
    before = events[0].occurred_at
    assert resume_patient(DEFAULT_V2, first.checkpoint, [], before) is None


def test_the_state_survives_its_text_form_with_offsets_kept() -> None:
    events = _timeline()
    outcome = evaluate_patient(DEFAULT_V2, PATIENT, events, events[-1].occurred_at)
    text = dump_state(outcome.state)
    again = load_state(text)
    assert again == outcome.state
    assert again.course is not None
    assert again.course.started_at.utcoffset() == dt.timedelta(hours=1)
    assert dump_state(again) == text


def test_the_tail_names_the_timer_decisions_made_after_the_last_event() -> None:
    events = _timeline()[:2]
    # weeks after the grading: the reassessment it scheduled is overdue by then
    until = events[1].occurred_at + dt.timedelta(days=60)
    result = fold_patient(DEFAULT_V2, PATIENT, events, until)
    tail = [d for d in result.decisions if d.decision_id in result.checkpoint.tail]
    assert tail, "the overdue timer fired after the last event"
    assert all(d.trigger.startswith("timer:") for d in tail)
    assert result.decisions[-len(tail) :] == tail


def test_the_property_above_resumed_folds_and_not_only_full_ones() -> None:
    """Runs after the property (file order): most of its folds must have been resumed ones,
    or it would show nothing about them."""
    if not RESUMED:
        test_resuming_the_checkpoint_gives_the_full_folds_decisions()
    assert sum(RESUMED) > len(RESUMED), RESUMED
