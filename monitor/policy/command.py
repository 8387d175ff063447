"""`python -m monitor policy diff`: what changing the pack would change, before changing it.

From an events file (`--events`) or the configured database (`--database`: every patient's
stored events, quarantined ones left out, at the service clock), as JSON or a self-contained
HTML page.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Iterator, Sequence
from typing import IO, Any

import jinja2
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from monitor.policy.diff import PolicyDiff, compare_packs
from monitor.policy.upgrade import UpgradeReport, count_patients, record, upgrade_patients
from monitor.replay.command import EXIT_INVALID, settings_or_report, timeline_or_report
from monitor.replay.timeline import batch_mode
from monitor.services import Services, build_services
from monitor.storage.migrate import upgrade
from monitor.storage.models import EventRow
from policies import Event, PackError, builtin_pack
from policies.events import EVENT_ADAPTER


def run_policy_command(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if args.policy_command == "upgrade":
        return run_upgrade(args, out, err)
    try:
        before, after = builtin_pack(args.before), builtin_pack(args.after)
    except PackError as exc:
        for problem in exc.problems:
            print(f"policy diff: {problem}", file=err)
        return EXIT_INVALID
    if args.events is not None:
        timeline = timeline_or_report(str(args.events), err, prefix="policy diff: ")
        if timeline is None:
            return EXIT_INVALID
        until = args.until or timeline.latest
        assert until is not None  # a valid timeline has events
        with batch_mode():
            result = compare_packs(before, after, _by_patient(timeline.events), until)
        unreadable = 0
    else:
        settings = settings_or_report(err)
        if settings is None:
            return EXIT_INVALID
        services = build_services(settings)
        try:
            until = args.until or settings.now()
            patients, unreadable = _stored_timelines(services.sessions)
            with batch_mode():
                result = compare_packs(before, after, patients, until)
        except SQLAlchemyError as exc:
            print(
                f"policy diff: the database cannot be read ({type(exc).__name__}); is "
                "MONITOR_DATABASE_URL right and the schema migrated (python -m monitor migrate)?",
                file=err,
            )
            return EXIT_INVALID
        finally:
            services.close()
    text = render(result, args.format, unreadable=unreadable)
    if args.out is None:
        out.write(text)
    else:
        try:
            args.out.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"policy diff: {args.out}: cannot be written: {exc.strerror}", file=err)
            return EXIT_INVALID
    return 0


def _by_patient(events: Sequence[Event]) -> Iterator[tuple[str, list[Event]]]:
    grouped: dict[str, list[Event]] = {}
    for event in events:
        grouped.setdefault(event.patient_id, []).append(event)
    yield from sorted(grouped.items())


def _stored_timelines(sessions: Any) -> tuple[list[tuple[str, list[Event]]], int]:
    """Every patient's events as stored (not quarantined); bodies that no longer validate
    (stored before a bound existed) are counted, not folded, as the pipeline does."""
    grouped: dict[str, list[Event]] = {}
    unreadable = 0
    with sessions() as session:
        rows = session.execute(
            select(col(EventRow.patient_id), col(EventRow.body))
            .where(col(EventRow.quarantined_at).is_(None))
            .order_by(col(EventRow.patient_id), col(EventRow.id))
        )
        for patient_id, body in rows:
            try:
                grouped.setdefault(patient_id, []).append(EVENT_ADAPTER.validate_json(body))
            except ValidationError:
                unreadable += 1
    return sorted(grouped.items()), unreadable


def render(result: PolicyDiff, fmt: str, *, unreadable: int = 0) -> str:
    view = {**result.view(), "unreadable_events": unreadable}
    if fmt == "json":
        return json.dumps(view, indent=2, sort_keys=False) + "\n"
    return _templates().get_template("diff.html.j2").render(diff=view)


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("monitor.policy", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def run_upgrade(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Fold every patient under the configured pack, which `--to` must name."""
    settings = settings_or_report(err)
    if settings is None:
        return EXIT_INVALID
    services = build_services(settings)
    try:
        in_use = services.pack.label
        if args.to != in_use and _label_of(args.to) != in_use:
            print(
                f"policy upgrade: --to {args.to} is not the pack in use ({in_use}); set "
                f"MONITOR_POLICY (or the site file) to it for the api, the workers and the "
                "scheduler first, or the next event folds each patient under "
                f"{in_use} again",
                file=err,
            )
            return EXIT_INVALID
        try:
            upgrade(services.engine)  # the decision columns the changeover writes
            report = _upgrade_with_progress(services, args, err)
            record(services, report, settings.now())
        except SQLAlchemyError as exc:
            print(
                f"policy upgrade: the database failed ({type(exc).__name__}); patients done "
                "so far are upgraded; run the command again to finish",
                file=err,
            )
            return 1
    finally:
        services.close()
    out.write(json.dumps(report.view(), indent=2) + "\n")
    return 1 if report.stopped else 0


def _label_of(name: str) -> str | None:
    """A built-in pack name's label (`default` -> `default@2`); None for other names."""
    try:
        return builtin_pack(name).label
    except PackError:
        return None


def _upgrade_with_progress(
    services: Services, args: argparse.Namespace, err: IO[str]
) -> UpgradeReport:
    total = count_patients(services)
    console = Console(file=err)
    with Progress(
        TextColumn("policy upgrade to " + services.pack.label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=args.no_progress,
        transient=False,
    ) as progress:
        task = progress.add_task("patients", total=total)
        return upgrade_patients(
            services, args.batch_size, on_patient=lambda _: progress.advance(task)
        )
