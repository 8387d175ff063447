"""The pipeline benchmark's pure helpers (tests/perf/bench_pipeline.py): how it orders and
dates the synthetic events, parses the SSE stream, ties an alert to the event that caused it,
and sums up runs against the targets. The benchmark itself is a script, not collected here."""

from __future__ import annotations

import argparse
import datetime as dt
import json

import pytest

from tests.perf import bench_pipeline as bench
from tests.perf.bench_pipeline import AlertSeen, Figure, SseParser, match_alert

NOW = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)


def _events(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines]


def _when(event: dict[str, object]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(event["occurred_at"]))


# --- timelines ---------------------------------------------------------------------------


def test_split_histories_loads_the_first_events_and_keeps_the_later_ones_apart() -> None:
    lines = bench.timelines("H30", patients=3, per_patient=34, seed=5)
    loaded, tails = bench.split_histories(lines, 30)
    assert len(loaded) == 90
    assert [len(tail) for tail in tails] == [4, 4, 4]
    for tail in tails:
        patient = json.loads(tail[0])["patient_id"]
        history = [_when(e) for e in _events(loaded) if e["patient_id"] == patient]
        later = [_when(e) for e in _events(tail)]
        assert later == sorted(later)
        assert min(later) >= max(history)


def test_round_robin_takes_one_patient_after_the_other() -> None:
    tails = [["a1", "a2", "a3"], ["b1"], ["c1", "c2"]]
    assert bench.round_robin(tails, 10) == ["a1", "b1", "c1", "a2", "c2", "a3"]
    assert bench.round_robin(tails, 4) == ["a1", "b1", "c1", "a2"]


def test_interleaved_mixes_patients_but_keeps_each_in_clinical_order() -> None:
    lines = bench.timelines("L1", patients=6, per_patient=20, seed=3)
    mixed = bench.interleaved(lines, seed=1)
    assert sorted(mixed) == sorted(lines)
    assert mixed == bench.interleaved(lines, seed=1)  # seeded
    per_patient: dict[object, list[dt.datetime]] = {}
    for event in _events(mixed):
        per_patient.setdefault(event["patient_id"], []).append(_when(event))
    assert all(times == sorted(times) for times in per_patient.values())
    assert [json.loads(line)["patient_id"] for line in mixed[:20]] != ["L1-000001"] * 20


def test_in_the_past_moves_each_timeline_to_end_days_before_now() -> None:
    lines = bench.timelines("H2000", patients=2, per_patient=400, seed=9)  # runs years ahead
    moved = bench.in_the_past(lines, NOW)
    assert len(moved) == len(lines)
    before, after = _events(lines), _events(moved)
    for patient in {e["patient_id"] for e in before}:
        old = [_when(e) for e in before if e["patient_id"] == patient]
        new = [_when(e) for e in after if e["patient_id"] == patient]
        assert NOW - dt.timedelta(days=3) <= max(new) <= NOW - dt.timedelta(days=2)
        shifts = {b - a for a, b in zip(old, new, strict=True)}
        assert len(shifts) == 1  # the whole timeline, by whole days
        assert next(iter(shifts)) % dt.timedelta(days=1) == dt.timedelta(0)
    for old_event, new_event in zip(before, after, strict=True):  # offsets written as before
        old_text, new_text = str(old_event["occurred_at"]), str(new_event["occurred_at"])
        assert old_text[-1] == new_text[-1] == "Z" or old_text[-6:] == new_text[-6:]
        assert {k: v for k, v in old_event.items() if k != "occurred_at"} == {
            k: v for k, v in new_event.items() if k != "occurred_at"
        }


# --- the alert stream ----------------------------------------------------------------------


def test_sse_parser_reads_frames_comments_and_ids() -> None:
    parser = SseParser()
    lines = [": bipn-monitor alert stream", "retry: 3000", ""]
    lines += ["event: alert", "id: 7", 'data: {"id": 7,', 'data: "kind": "new"}', ""]
    lines += ["data: plain", ""]
    frames = [frame for line in lines if (frame := parser.feed(line)) is not None]
    assert frames == [("alert", '{"id": 7,\n"kind": "new"}'), ("message", "plain")]
    assert parser.comments == 1
    assert parser.last_id == "7"


def _alert(**fields: object) -> AlertSeen:
    base: dict[str, object] = {
        "alert_id": 1,
        "arrived": 10.0,
        "patient_id": "L1-000001",
        "kind": "new",
        "trigger": None,
        "fold_events": (),
    }
    return AlertSeen(**(base | fields))  # type: ignore[arg-type]


def test_an_alert_is_tied_to_its_decisions_trigger_when_its_fold_processed_it() -> None:
    sent = {"e1": 9.0, "e2": 9.5}
    alert = _alert(trigger="e2", fold_events=("e1", "e2"))
    assert match_alert(alert, sent, {}) == ("trigger", "e2")


def test_else_to_the_first_posted_event_of_its_fold() -> None:
    sent = {"e1": 9.0, "e2": 9.5, "old": 1.0}
    alert = _alert(trigger="old", fold_events=("e2", "e1"))
    assert match_alert(alert, sent, {}) == ("fold", "e1")


def test_else_to_the_patients_latest_event_before_it_arrived() -> None:
    by_patient = {"L1-000001": [(8.0, "e0"), (9.0, "e1"), (11.0, "e2")]}
    assert match_alert(_alert(), {}, by_patient) == ("patient", "e1")
    assert match_alert(_alert(kind="reminder"), {}, by_patient) is None  # not an event's
    assert match_alert(_alert(patient_id="other"), {}, by_patient) is None


def test_an_event_posted_after_the_alert_arrived_is_not_its_cause() -> None:
    alert = _alert(trigger="e3", fold_events=("e3",), kind="reminder")
    assert match_alert(alert, {"e3": 12.0}, {}) is None


# --- runs, targets -------------------------------------------------------------------------


def test_summarize_gives_min_median_max_of_every_number_all_runs_have() -> None:
    runs = [
        {"a": {"b": 1.0, "c": [1, 2]}, "flag": True, "only": 5},
        {"a": {"b": 3.0, "c": [3, 4]}, "flag": False},
        {"a": {"b": 2.0, "c": [5, 6]}, "flag": True, "text": "x"},
    ]
    summary = bench.summarize(runs)
    assert summary == {
        "a.b": {"min": 1.0, "median": 2.0, "max": 3.0},
        "a.c.0": {"min": 1.0, "median": 3.0, "max": 5.0},
        "a.c.1": {"min": 2.0, "median": 4.0, "max": 6.0},
    }


def test_verdicts_judge_the_median_and_count_the_runs_that_met_the_target() -> None:
    runs = [
        {"x": {"ms": 2.0, "load_avg_1m": [1.0, 1.5]}},
        {"x": {"ms": 4.0, "load_avg_1m": [2.0, 2.5]}},
        {"x": {"ms": 2.5, "load_avg_1m": [1.0, 1.0]}},
    ]
    wanted = [
        Figure("cpu", "x.ms", "ms", "x.load_avg_1m", ("<=", 3.0)),
        Figure("none", "x.missing", "ms", "x.load_avg_1m", ("<=", 3.0)),
        Figure("plain", "x.ms", "ms", "x.load_avg_1m"),
    ]
    cpu, none, plain = bench.verdicts(runs, wanted)
    assert (cpu["min"], cpu["median"], cpu["max"]) == (2.0, 2.5, 4.0)
    assert cpu["met"] is True
    assert cpu["met_in_runs"] == 2
    assert cpu["load_avg_1m"] == [[1.0, 1.5], [2.0, 2.5], [1.0, 1.0]]
    assert none["met"] is None
    assert "target" not in plain
    table = bench.table([cpu, none, plain], runs=3)
    assert "met 2/3" in table[1]
    assert "no figure" in table[2]


def test_every_target_of_the_issue_is_among_the_figures() -> None:
    wanted = bench.figures([20, 200, 2000], [50.0, 100.0])
    targets = {f.path: f.target for f in wanted if f.target is not None}
    assert targets == {
        "ratio_pipeline_to_noop": (">=", 1.5),
        **{
            f"single_event.histories.{h}.worker_cpu_ms_per_event": ("<=", 3.0)
            for h in (20, 200, 2000)
        },
        **{f"single_event.histories.{h}.api_cpu_ms_per_post": ("<=", 3.0) for h in (20, 200, 2000)},
        "single_event.worker_cpu_ratio_largest_to_smallest": ("<=", 1.5),
        "latency.100.decision_p99_ms": ("<=", 100.0),
        "latency.100.alert_p99_ms": ("<=", 250.0),
    }


def test_spread_and_lists() -> None:
    assert bench.spread([], "alert_") == {
        "alert_p50_ms": None,
        "alert_p95_ms": None,
        "alert_p99_ms": None,
        "alert_max_ms": None,
    }
    assert bench.spread([float(v) for v in range(1, 101)])["p99_ms"] == 99.0
    assert bench.numbers_list("20,200,2000", int) == [20, 200, 2000]
    with pytest.raises(argparse.ArgumentTypeError):
        bench.numbers_list("20,x", int)
    with pytest.raises(argparse.ArgumentTypeError):
        bench.numbers_list("0", float)
