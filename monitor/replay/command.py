"""`python -m monitor replay`: an events file through the pure engine, decisions out; and
the reading of packs and events files that the report and the benchmark share."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import IO

from monitor.policy_file import load_pack
from monitor.replay.timeline import Timeline, batch_mode, read_timeline
from monitor.settings import Settings
from policies.engine import evaluate
from policies.packs import PackError, PolicyPack

EXIT_INVALID = 2


def pack_or_report(args: argparse.Namespace, err: IO[str]) -> PolicyPack | None:
    """The pack of `--policy`/`--policy-file`, or None after printing what is wrong."""
    try:
        return load_pack(args.policy, args.policy_file)
    except PackError as exc:
        for pack_problem in exc.problems:
            print(f"policy: {pack_problem}", file=err)
        return None


def timeline_or_report(path: str, err: IO[str], prefix: str = "") -> Timeline | None:
    """The events of a JSON-lines file ('-': standard input), or None after printing each
    problem (`line N: field: message`)."""
    try:
        if path == "-":
            timeline = read_timeline(sys.stdin.buffer)
        else:
            with open(path, "rb") as handle:
                timeline = read_timeline(handle)
    except OSError as exc:
        print(f"{prefix}{path}: cannot be read: {exc.strerror}", file=err)
        return None
    if timeline.problems:
        for problem in timeline.problems:
            print(problem, file=err)
        return None
    return timeline


def settings_or_report(err: IO[str]) -> Settings | None:
    """The MONITOR_* settings, or None after printing `settings: MONITOR_KEY: why`."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        for problem in exc.errors():
            key = "MONITOR_" + "_".join(str(p) for p in problem["loc"]).upper()
            print(f"settings: {key}: {problem['msg']}", file=err)
        return None


def run_replay(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    pack = pack_or_report(args, err)
    if pack is None:
        return EXIT_INVALID
    with batch_mode():
        return _replay(pack, args, out, err)


def _replay(pack: PolicyPack, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    timeline = timeline_or_report(args.file, err)
    if timeline is None:
        return EXIT_INVALID
    until: dt.datetime | None = args.until or timeline.latest
    if until is None:  # unreachable: read_timeline reports a file without events
        raise AssertionError("a valid timeline has events")
    later = len([e for e in timeline.events if e.occurred_at > until])
    if later:
        print(f"note: {later} event(s) after --until {until.isoformat()} not applied", file=err)
    decisions = evaluate(pack, timeline.events, until)
    out.writelines(d.model_dump_json(exclude_none=True) + "\n" for d in decisions)
    out.flush()
    return 0
