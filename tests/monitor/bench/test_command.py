"""Smoke tests of the benchmark and its generator (fast, untimed: no performance assertion)."""

from __future__ import annotations

import argparse
import collections
import io
import json

import pytest

from monitor.bench.command import run_bench
from monitor.bench.synthetic import generate
from monitor.cli import build_parser
from policies import parse_event

FIGURES = (
    "events_per_s",
    "total_s",
    "validation_s",
    "evaluation_s",
    "output_s",
    "replay_command_events_per_s",
    "short_eval_us_per_event",
    "long_eval_us_per_event",
    "eval_ratio",
    "short_validation_us_per_event",
    "long_validation_us_per_event",
    "validation_ratio",
    "short_decisions_per_event",
    "long_decisions_per_event",
    "eval_ratio_per_decision",
    "events",
    "decisions",
)


def test_run_bench_tiny_prints_a_table_and_a_json_line() -> None:
    argv = "bench --patients 50 --events-per-patient 20 --long 200 --repeat 1 --seed 3"
    args = build_parser().parse_args(argv.split())
    out = io.StringIO()

    assert run_bench(args, out) == 0

    lines = out.getvalue().splitlines()
    assert "events/s" in out.getvalue()
    figures = json.loads(lines[-1])
    for key in FIGURES:
        assert isinstance(figures[key], int | float), key
        assert figures[key] > 0, key
    assert figures["events"] == 50 * 20
    assert figures["shape_events"] == 5 * 200
    assert (figures["short_patients"], figures["long_patients"]) == (50, 5)
    assert isinstance(figures["throughput_met"], bool)
    assert isinstance(figures["ratio_met"], bool)


def test_run_bench_rejects_empty_sizes() -> None:
    args = argparse.Namespace(patients=0, events_per_patient=20, long=200, repeat=1, seed=1)
    with pytest.raises(ValueError, match="must be >= 1"):
        run_bench(args, io.StringIO())


def test_generate_is_deterministic_per_seed() -> None:
    first = list(generate(30, 20, seed=11))

    assert first == list(generate(30, 20, seed=11))
    assert first != list(generate(30, 20, seed=12))


@pytest.mark.parametrize(("patients", "per_patient"), [(40, 20), (3, 150), (5, 1)])
def test_generate_yields_exactly_patients_x_events_of_valid_events(
    patients: int, per_patient: int
) -> None:
    lines = list(generate(patients, per_patient, seed=5))

    assert len(lines) == patients * per_patient
    events = [parse_event(line) for line in lines]
    per_patient_count = collections.Counter(e.patient_id for e in events)
    assert len(per_patient_count) == patients
    assert set(per_patient_count.values()) == {per_patient}
    assert len({e.event_id for e in events}) == len(events)
    for patient_id in per_patient_count:
        mine = sorted((e for e in events if e.patient_id == patient_id), key=lambda e: e.event_id)
        assert mine[0].type == "enrollment"


def test_generate_is_realistic_enough_to_exercise_the_rules() -> None:
    lines = list(generate(200, 40, seed=7))
    events = [parse_event(line) for line in lines]

    kinds = collections.Counter(e.type for e in events)
    assert {"enrollment", "assessment", "administration", "treatment_change"} <= set(kinds)
    offsets = {json.loads(line)["occurred_at"][19:] for line in lines}
    assert {"Z", "+01:00", "-05:00"} <= offsets
    # shuffled: the file is not in time order, so a replay must sort
    times = [e.occurred_at for e in events]
    assert times != sorted(times)
