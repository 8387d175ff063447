"""`python -m monitor bench`: replay throughput and per-event cost, on generated timelines.

Three figures, all in this process, on one core:

1. throughput: a generated file of `patients` x `events_per_patient` events is replayed the way
   `replay` does it: read the file and validate every line (`read_timeline`), `evaluate`, and
   serialise each decision (`model_dump_json(exclude_none=True)`) into an in-memory sink.
   Events per second of the best of `repeat` runs, and how that run's time splits. The
   command itself (`run_replay`, output to memory) is timed too, as a cross-check that the
   phases still measure what `replay` does (same number of decisions, similar speed).
2. per-event cost, short versus long patients: the same number of events as many short
   timelines (`events_per_patient` each) and as few long ones (`long` each). Validation and
   `evaluate` are timed separately; the ratio long/short shows whether a patient's cost grows
   faster than its number of events.
3. a readable table, then one JSON line with every figure (the last line of the output), for
   tests and CI. The exit status is 0 whether or not the targets are met: the JSON says.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import pathlib
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from monitor.bench.synthetic import generate
from monitor.operations.clock import wall_now
from monitor.replay.command import run_replay
from monitor.replay.timeline import Timeline, batch_mode, read_timeline
from policies import Event, builtin_pack, evaluate

TARGET_EVENTS_PER_S = 30_000
TARGET_RATIO = 1.5
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReplayRun:
    validation_s: float
    evaluation_s: float
    output_s: float
    cpu_s: float
    events: int
    decisions: int

    @property
    def total_s(self) -> float:
        return self.validation_s + self.evaluation_s + self.output_s


def _write_events(path: pathlib.Path, patients: int, events_per_patient: int, seed: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in generate(patients, events_per_patient, seed))


def _valid(timeline: Timeline, what: str) -> list[Event]:
    if timeline.problems:  # the generator must produce valid events: a bug, not a figure
        raise RuntimeError(f"generated {what} has invalid lines, e.g. {timeline.problems[0]}")
    return timeline.events


def _replay_once(path: pathlib.Path) -> ReplayRun:
    """One full replay of the file, timed by phase (what `replay` does, output to memory)."""
    gc.collect()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    with batch_mode():  # as run_replay does
        with path.open("rb") as handle:
            timeline = read_timeline(handle)
        events = _valid(timeline, "file")
        t1 = time.perf_counter()
        decisions = evaluate(builtin_pack("default"), events, timeline.latest)
        t2 = time.perf_counter()
        sink = io.StringIO()
        sink.writelines(d.model_dump_json(exclude_none=True) + "\n" for d in decisions)
        t3 = time.perf_counter()
    cpu = time.process_time() - cpu0
    return ReplayRun(t1 - t0, t2 - t1, t3 - t2, cpu, len(events), len(decisions))


def _replay_command(path: pathlib.Path) -> int:
    """`replay FILE` itself (`run_replay`), output to memory: a cross-check that the phases
    above still measure what the command does. Returns the number of decisions printed."""

    args = argparse.Namespace(file=str(path), policy=None, policy_file=None, until=None)
    sink, err = io.StringIO(), io.StringIO()
    status = run_replay(args, sink, err)
    if status != 0:
        raise RuntimeError(f"replay of the generated file failed ({status}): {err.getvalue()}")
    return sink.getvalue().count("\n")


def _best_time(repeat: int, work: Callable[[], T]) -> tuple[float, T]:
    """The shortest wall time of `repeat` runs of `work`, and its last result."""
    best = float("inf")
    result: T | None = None
    for _ in range(repeat):
        gc.collect()
        with batch_mode():  # as run_replay does
            start = time.perf_counter()
            result = work()
            best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


@dataclass(frozen=True, slots=True)
class ShapeCost:
    """Validation and evaluation cost of one timeline shape (patients x events)."""

    patients: int
    events_per_patient: int
    events: int
    decisions: int
    validation_s: float
    evaluation_s: float

    def us_per_event(self, seconds: float) -> float:
        return seconds / self.events * 1e6

    @property
    def decisions_per_event(self) -> float:
        return self.decisions / self.events

    @property
    def eval_us_per_decision(self) -> float:
        return self.evaluation_s / max(1, self.decisions) * 1e6


def _shape_cost(patients: int, per_patient: int, seed: int, repeat: int) -> ShapeCost:
    lines = list(generate(patients, per_patient, seed))
    validation_s, timeline = _best_time(repeat, lambda: read_timeline(lines))
    events = _valid(timeline, f"{patients} x {per_patient} timeline")
    until = timeline.latest
    evaluation_s, decisions = _best_time(
        repeat, lambda: evaluate(builtin_pack("default"), events, until)
    )
    return ShapeCost(
        patients=patients,
        events_per_patient=per_patient,
        events=len(events),
        decisions=len(decisions),
        validation_s=validation_s,
        evaluation_s=evaluation_s,
    )


@contextlib.contextmanager
def _one_core() -> Iterator[str]:
    """Pin this process to one CPU while measuring (Linux); restore the affinity afterwards."""
    getter = getattr(os, "sched_getaffinity", None)
    setter = getattr(os, "sched_setaffinity", None)
    if getter is None or setter is None:
        yield "not pinned (no CPU affinity on this platform)"
        return
    before = getter(0)
    cpu = max(before)
    try:
        setter(0, {cpu})
    except OSError:
        yield "not pinned (affinity refused)"
        return
    try:
        yield f"pinned to CPU {cpu}"
    finally:
        setter(0, before)


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _ratio(long: float, short: float) -> float:
    return long / short if short > 0 else float("inf")


def _print_table(out: IO[str], title: str, rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(title, file=out)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}", file=out)


def _check_args(args: argparse.Namespace) -> tuple[int, int, int, int, int]:
    patients, per_patient = int(args.patients), int(args.events_per_patient)
    long, repeat, seed = int(args.long), int(args.repeat), int(args.seed)
    if patients < 1 or per_patient < 1 or long < 1 or repeat < 1:
        raise ValueError("--patients, --events-per-patient, --long and --repeat must be >= 1")
    return patients, per_patient, long, repeat, seed


def run_bench(args: argparse.Namespace, out: IO[str]) -> int:
    """Run the benchmark and print the table and the JSON line to `out`; returns 0."""
    patients, per_patient, long, repeat, seed = _check_args(args)
    load_before = _load()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bipn-bench-") as tmp, _one_core() as pinning:
        path = pathlib.Path(tmp) / "events.jsonl"
        gen0 = time.perf_counter()
        _write_events(path, patients, per_patient, seed)
        generation_s = time.perf_counter() - gen0
        file_bytes = path.stat().st_size

        runs = [_replay_once(path) for _ in range(repeat)]
        best = min(runs, key=lambda r: r.total_s)
        command_s, command_decisions = _best_time(repeat, lambda: _replay_command(path))
        if command_decisions != best.decisions:
            raise RuntimeError(
                f"replay printed {command_decisions} decisions, the timed phases made "
                f"{best.decisions}: the benchmark no longer measures the replay command"
            )

        total = patients * per_patient
        long_patients = max(1, total // long)
        same_total = long_patients * long
        short_patients = max(1, same_total // per_patient)
        short = _shape_cost(short_patients, per_patient, seed, repeat)
        longer = _shape_cost(long_patients, long, seed, repeat)
    load_after = _load()

    events_per_s = best.events / best.total_s
    command_events_per_s = best.events / command_s
    short_eval_us = short.us_per_event(short.evaluation_s)
    long_eval_us = longer.us_per_event(longer.evaluation_s)
    short_val_us = short.us_per_event(short.validation_s)
    long_val_us = longer.us_per_event(longer.validation_s)
    eval_ratio = _ratio(long_eval_us, short_eval_us)
    ratio_verdict = "met" if eval_ratio <= TARGET_RATIO else "NOT met"
    validation_ratio = _ratio(long_val_us, short_val_us)
    per_decision_ratio = _ratio(longer.eval_us_per_decision, short.eval_us_per_decision)

    def share(seconds: float) -> str:
        return f"{seconds:8.3f} s  {seconds / best.total_s:6.1%}"

    _print_table(
        out,
        f"replay throughput: {patients} patients x {per_patient} events = {best.events} events, "
        f"{best.decisions} decisions (best of {repeat}, {pinning})",
        [
            ("read + validate", share(best.validation_s)),
            ("evaluate", share(best.evaluation_s)),
            ("serialise decisions", share(best.output_s)),
            ("total", f"{best.total_s:8.3f} s  (cpu {best.cpu_s:.3f} s)"),
            (
                "events/s",
                f"{events_per_s:8,.0f}  (target >= {TARGET_EVENTS_PER_S:,}: "
                f"{'met' if events_per_s >= TARGET_EVENTS_PER_S else 'NOT met'})",
            ),
            ("all runs, events/s", ", ".join(f"{r.events / r.total_s:,.0f}" for r in runs)),
            (
                "replay command",
                f"{command_events_per_s:8,.0f}  events/s end to end ({command_s:.3f} s, "
                "run_replay into memory, cross-check)",
            ),
        ],
    )
    print(file=out)
    _print_table(
        out,
        f"per-event cost, same {short.events} events: {short.patients} x "
        f"{short.events_per_patient} versus {longer.patients} x {longer.events_per_patient} "
        f"(best of {repeat})",
        [
            ("", f"{'short':>10}  {'long':>10}  {'long/short':>10}"),
            (
                "evaluate, us/event",
                f"{short_eval_us:10.2f}  {long_eval_us:10.2f}  {eval_ratio:10.2f}"
                f"  (target <= {TARGET_RATIO}: {ratio_verdict})",
            ),
            (
                "validate, us/event",
                f"{short_val_us:10.2f}  {long_val_us:10.2f}  {validation_ratio:10.2f}",
            ),
            (
                "decisions per event",
                f"{short.decisions_per_event:10.3f}  {longer.decisions_per_event:10.3f}  "
                f"{_ratio(longer.decisions_per_event, short.decisions_per_event):10.2f}",
            ),
            (
                "evaluate, us/decision",
                f"{short.eval_us_per_decision:10.2f}  {longer.eval_us_per_decision:10.2f}  "
                f"{per_decision_ratio:10.2f}  (the mix differs: see decisions per event)",
            ),
        ],
    )
    print(file=out)
    elapsed = time.perf_counter() - started
    print(
        f"machine: {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {load_before} before, {load_after} after; "
        f"generation {generation_s:.2f} s, whole bench {elapsed:.1f} s",
        file=out,
    )
    figures: dict[str, Any] = {
        "bench": "replay",
        "measured_at": wall_now().isoformat(timespec="seconds"),
        "patients": patients,
        "events_per_patient": per_patient,
        "long": long,
        "repeat": repeat,
        "seed": seed,
        "events": best.events,
        "decisions": best.decisions,
        "file_bytes": file_bytes,
        "events_per_s": round(events_per_s, 1),
        "total_s": round(best.total_s, 6),
        "cpu_s": round(best.cpu_s, 6),
        "validation_s": round(best.validation_s, 6),
        "evaluation_s": round(best.evaluation_s, 6),
        "output_s": round(best.output_s, 6),
        "runs_events_per_s": [round(r.events / r.total_s, 1) for r in runs],
        "replay_command_s": round(command_s, 6),
        "replay_command_events_per_s": round(command_events_per_s, 1),
        "short_patients": short.patients,
        "long_patients": longer.patients,
        "shape_events": short.events,
        "short_eval_us_per_event": round(short_eval_us, 3),
        "long_eval_us_per_event": round(long_eval_us, 3),
        "eval_ratio": round(eval_ratio, 3),
        "short_validation_us_per_event": round(short_val_us, 3),
        "long_validation_us_per_event": round(long_val_us, 3),
        "validation_ratio": round(validation_ratio, 3),
        "short_decisions": short.decisions,
        "long_decisions": longer.decisions,
        "short_decisions_per_event": round(short.decisions_per_event, 4),
        "long_decisions_per_event": round(longer.decisions_per_event, 4),
        "short_eval_us_per_decision": round(short.eval_us_per_decision, 3),
        "long_eval_us_per_decision": round(longer.eval_us_per_decision, 3),
        "eval_ratio_per_decision": round(per_decision_ratio, 3),
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "target_ratio": TARGET_RATIO,
        "throughput_met": events_per_s >= TARGET_EVENTS_PER_S,
        "ratio_met": eval_ratio <= TARGET_RATIO,
        "cpu_pinning": pinning,
        "cpu_count": os.cpu_count(),
        "load_before": load_before,
        "load_after": load_after,
        "python": platform.python_version(),
        "generation_s": round(generation_s, 3),
        "elapsed_s": round(elapsed, 3),
    }
    print(json.dumps(figures, separators=(",", ":")), file=out)
    out.flush()
    return 0
