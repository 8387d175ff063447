"""Incremental folding: the engine's per-patient state after the last applied event, as text,
and the fold resumed from it.

A fold is a left fold: the state after event k depends only on the state after event k-1, the
event and the pack. So a fold stopped after its last applied event (before the timers that fire
between that event and the clock) can go on later with the events that sort after it, and gives
the same decisions, in the same order, as a fold from the start. What must fold from the start
instead: an event that sorts at or before the checkpoint (a late event), another pack, another
engine (`ENGINE_VERSION`), or a clock before the checkpoint. `resume_patient` says so by
returning None.

Pure: standard library and pydantic only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import TypeAdapter

from policies.decisions import Decision
from policies.engine import FoldError, PatientOutcome, evaluate_patient, fold_from, timeline_order
from policies.events import Event
from policies.packs import PolicyPack
from policies.state import PatientState

# Bump with any change to the engine or the rules that may change what a fold decides from the
# same events and pack: stored checkpoints of another version are not resumed (a full fold).
ENGINE_VERSION = "2026-12-02.1"

_STATE = TypeAdapter(PatientState)


def dump_state(state: PatientState) -> str:
    """The state as JSON (times keep their offsets)."""
    return _STATE.dump_json(state).decode()


def load_state(text: str) -> PatientState:
    return _STATE.validate_json(text)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a fold stopped: the pack and engine it ran, the timeline key of its last applied
    event (None: none applied yet), the state right after that event, and the decisions the
    fold made after it (the timers up to its clock), which a resumed fold makes again or not."""

    pack: str
    engine: str
    last_key: tuple[dt.datetime, str] | None
    state: str
    tail: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FoldResult:
    """A fold's outcome with its checkpoint. `decisions` are the fold's own: all of them after
    a full fold; after a resumed one, only those made after the previous checkpoint (the
    earlier ones stand unchanged). `resumed` says which."""

    outcome: PatientOutcome
    checkpoint: Checkpoint
    resumed: bool

    @property
    def decisions(self) -> list[Decision]:
        return self.outcome.decisions


def fold_patient(
    pack: PolicyPack, patient_id: str, events: Sequence[Event], until: dt.datetime
) -> FoldResult:
    """A full fold (`evaluate_patient`) that also returns its checkpoint."""
    return _run(pack, PatientState(patient_id=patient_id), None, events, until, resumed=False)


def resume_patient(
    pack: PolicyPack,
    checkpoint: Checkpoint,
    events: Sequence[Event],
    until: dt.datetime,
) -> FoldResult | None:
    """The fold continued from `checkpoint` with `events` (those not folded into it: new ones,
    and any dated after the previous clock), or None when only a full fold is right: another
    pack or engine, an event at or before the checkpoint's key, or `until` before it."""
    if checkpoint.pack != pack.label or checkpoint.engine != ENGINE_VERSION:
        return None
    last = checkpoint.last_key
    if last is not None:
        if until < last[0]:
            return None
        if any(timeline_order(event) <= last for event in events):
            return None
    state = load_state(checkpoint.state)
    return _run(pack, state, last, events, until, resumed=True)


def _run(
    pack: PolicyPack,
    state: PatientState,
    last_key: tuple[dt.datetime, str] | None,
    events: Sequence[Event],
    until: dt.datetime,
    *,
    resumed: bool,
) -> FoldResult:
    snapshot: list[tuple[tuple[dt.datetime, str] | None, str, int]] = []

    def after_last_event(
        key: tuple[dt.datetime, str] | None, patient: PatientState, n: int
    ) -> None:
        snapshot.append((key, dump_state(patient), n))

    outcome = fold_from(pack, state, events, until, last_key, on_events_done=after_last_event)
    [(key, text, made)] = snapshot
    tail = tuple(d.decision_id for d in outcome.decisions[made:])
    checkpoint = Checkpoint(
        pack=pack.label, engine=ENGINE_VERSION, last_key=key, state=text, tail=tail
    )
    return FoldResult(outcome=outcome, checkpoint=checkpoint, resumed=resumed)


__all__ = [
    "ENGINE_VERSION",
    "Checkpoint",
    "FoldError",
    "FoldResult",
    "dump_state",
    "evaluate_patient",
    "fold_patient",
    "load_state",
    "resume_patient",
]
