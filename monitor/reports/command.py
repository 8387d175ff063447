"""`python -m monitor report adherence`: the audit from the database or an events file."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from typing import IO

from monitor.replay.command import pack_or_report, settings_or_report, timeline_or_report
from monitor.reports.adherence import AdherenceReport, AuditItem
from monitor.reports.render import Format, run_report
from monitor.reports.service import period_of

EXIT_INVALID = 2
OnItem = Callable[[AuditItem], None] | None


def run_report_command(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if args.events is None and (args.policy or args.policy_file):
        print(
            "report: --policy and --policy-file apply to --events only (the database's "
            "decisions were made by the configured pack)",
            file=err,
        )
        return EXIT_INVALID
    text = _from_events(args, err) if args.events is not None else _from_database(args, err)
    if text is None:
        return EXIT_INVALID
    try:
        if args.out is None:
            shutil.copyfileobj(text, out)
        else:
            with open(args.out, "w", encoding="utf-8", newline="") as handle:
                shutil.copyfileobj(text, handle)
    except OSError as exc:
        print(f"report: {args.out}: cannot be written: {exc.strerror}", file=err)
        return EXIT_INVALID
    finally:
        text.close()
    return 0


def _from_events(args: argparse.Namespace, err: IO[str]) -> IO[str] | None:
    from monitor.replay.timeline import batch_mode
    from monitor.reports.sources import report_from_events

    pack = pack_or_report(args, err)
    if pack is None:
        return None
    timeline = timeline_or_report(str(args.events), err, prefix="report: ")
    if timeline is None:
        return None
    end = args.end or timeline.latest
    assert end is not None  # a valid timeline has events
    period, problem = period_of(args.start, end, args.unit)
    if period is None:
        print(f"report: {problem}", file=err)
        return None

    def build(on_item: OnItem, drill_down: bool) -> AdherenceReport:
        return report_from_events(pack, timeline.events, period, on_item, drill_down=drill_down)

    with batch_mode():
        return run_report(build, args.format)


def _from_database(args: argparse.Namespace, err: IO[str]) -> IO[str] | None:
    from sqlalchemy.exc import SQLAlchemyError

    from monitor.reports.sources import report_from_database
    from monitor.services import build_services

    settings = settings_or_report(err)
    if settings is None:
        return None
    period, problem = period_of(args.start, args.end or settings.now(), args.unit)
    if period is None:
        print(f"report: {problem}", file=err)
        return None
    services = build_services(settings)
    try:
        fmt: Format = args.format
        return run_report(
            lambda on_item, drill_down: report_from_database(
                services, period, on_item, drill_down=drill_down
            ),
            fmt,
        )
    except SQLAlchemyError as exc:
        print(
            f"report: the database cannot be read ({type(exc).__name__}); is "
            "MONITOR_DATABASE_URL right and the schema migrated (python -m monitor migrate)?",
            file=err,
        )
        return None
    finally:
        services.close()
