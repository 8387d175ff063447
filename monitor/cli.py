"""`python -m monitor` / `bipn-monitor`: the command line of CONTRACT.md."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pathlib
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from monitor.auth.roles import ROLES
from monitor.replay.command import EXIT_INVALID, run_replay, settings_or_report
from policies.packs import pack_names

if TYPE_CHECKING:
    from monitor.services import Services


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _aware_time(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an RFC 3339 date-time (e.g. 2026-05-06T09:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        example = text if "T" in text.upper() else f"{text}T00:00:00"
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset: give one, e.g. {example}Z or {example}+01:00"
        )
    return moment


_DURATION = re.compile(r"^(\d{1,6})([dhm])$")


def _duration(text: str) -> dt.timedelta:
    found = _DURATION.match(text.strip())
    if found is None or int(found.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: a whole number with d (days), h or m, e.g. 90d"
        )
    unit = {"d": "days", "h": "hours", "m": "minutes"}[found.group(2)]
    return dt.timedelta(**{unit: int(found.group(1))})


def _queues(text: str) -> str:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ("monitor", "webhooks")]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the queues are monitor and webhooks (comma-separated)"
        )
    return ",".join(dict.fromkeys(names))


def _add_policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy",
        choices=pack_names(),
        default=None,
        help="built-in policy pack: default or label (the latest version), or one version "
        "of them, e.g. default@1 (default: default)",
    )
    parser.add_argument(
        "--policy-file",
        type=pathlib.Path,
        default=None,
        help='a site\'s pack as TOML: base = "default" and threshold overrides',
    )


DEMO_DESCRIPTION = (
    "The embedded service (as `serve`) on a data directory of its own (--demo-dir, default "
    "var/demo), which is WIPED AND REBUILT AT EVERY START: never the service's data directory. "
    "At start it loads the example timeline (examples/timeline.jsonl) moved by whole days so "
    "that its latest event lies just before now (times of day, weekdays and UTC offsets as "
    "written), through the normal pipeline, and prints an admin, nurse, infusion and auditor "
    "token (shown once) to log in with at /."
)


def _add_demo_options(parser: argparse.ArgumentParser) -> None:
    from monitor.demo import DEFAULT_DATA_DIR, EXAMPLE_TIMELINE

    parser.add_argument(
        "--demo-dir",
        type=pathlib.Path,
        default=DEFAULT_DATA_DIR,
        help=f"the demo's data directory, wiped at every start (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--demo-events",
        type=pathlib.Path,
        default=EXAMPLE_TIMELINE,
        help="the events file to move to the present and load (default: the example timeline)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitor",
        description="Bortezomib-induced peripheral neuropathy monitor.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    replay = commands.add_parser(
        "replay",
        help="decisions from an events file, offline",
        description=(
            "Read events (JSON lines, any order; '-' for standard input), drop exact "
            "duplicates, fire timers up to --until and print the decisions as JSON lines "
            "sorted by `at`, then `decision_id`. Invalid input: every problem on stderr as "
            "'line N: field: message', exit 2, nothing printed."
        ),
    )
    replay.add_argument("file", help="events, one JSON object per line ('-' for stdin)")
    _add_policy_options(replay)
    replay.add_argument(
        "--until",
        type=_aware_time,
        default=None,
        help="the clock: fire timers up to this time (default: the latest event's time)",
    )

    for name, text in (
        ("serve", "the embedded all-in-one service: API + worker + scheduler, SQLite by default"),
        ("api", "the production API process (MONITOR_DATABASE_URL, MONITOR_BROKER_URL)"),
    ):
        server = commands.add_parser(name, help=text, description=text)
        server.add_argument("--host", default="127.0.0.1")
        server.add_argument("--port", type=int, default=8000)
        if name == "serve":
            server.add_argument(
                "--demo",
                action="store_true",
                help="run the demo instead: its own directory, wiped at each start (`demo --help`)",
            )
            _add_demo_options(server)
    demo = commands.add_parser(
        "demo",
        help="the embedded service with the example timeline moved to today (a first look)",
        description=DEMO_DESCRIPTION,
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    _add_demo_options(demo)
    worker = commands.add_parser("worker", help="a production Celery worker process")
    worker.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    worker.add_argument(
        "--queues",
        type=_queues,
        default="monitor",
        help="monitor (the patients' events, default), webhooks (alert deliveries: run these "
        "workers apart, so no receiver slows clinical work), or monitor,webhooks",
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve this worker's Prometheus counters on this port",
    )
    commands.add_parser("scheduler", help="the production scheduler process (periodic jobs)")
    commands.add_parser("migrate", help="bring the database schema up to date (Alembic)")

    token = commands.add_parser("token", help="API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_commands.add_parser("create", help="create a token; prints only the token")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", default=None, help="who or what uses it (default: the role)")
    create.add_argument(
        "--unit",
        dest="units",
        action="append",
        default=None,
        metavar="UNIT",
        help="bind the token to this unit (repeat for several): it sees only their patients, "
        "alerts and reports (default: every unit)",
    )
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument(
        "--expires-in",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="valid this long, e.g. 90d, 12h, 30m (default: until revoked)",
    )
    expiry.add_argument(
        "--expires-at", type=_aware_time, default=None, help="valid until this time (RFC 3339)"
    )
    listing = token_commands.add_parser("list", help="the tokens (never the tokens themselves)")
    listing.add_argument("--all", action="store_true", help="revoked and expired ones too")
    revoke = token_commands.add_parser(
        "revoke", help="revoke a token by id, or every active token of a name"
    )
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("id", nargs="?", type=int, default=None, help="the token's id")
    target.add_argument("--name", dest="revoke_name", default=None)

    audit = commands.add_parser("audit", help="the access audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_commands.add_parser(
        "verify", help="check the keyed hash chain and its checkpoints; exit 1 if broken"
    )
    verify.add_argument(
        "--checkpoints",
        type=pathlib.Path,
        default=None,
        help="a checkpoint file, or the service's JSON log holding its `audit checkpoint` "
        "lines (default: MONITOR_AUDIT_CHECKPOINT_PATH)",
    )
    audit_commands.add_parser(
        "checkpoint", help="sign the chain's head now (the scheduler does it periodically)"
    )

    ingest = commands.add_parser("ingest", help="send an events file to a running service")
    ingest.add_argument("file", type=pathlib.Path)
    ingest.add_argument("--url", default=os.environ.get("MONITOR_URL", "http://127.0.0.1:8000"))
    ingest.add_argument(
        "--token",
        default=os.environ.get("MONITOR_TOKEN"),
        help="an ingest (or admin) token; default: $MONITOR_TOKEN",
    )
    ingest.add_argument("--no-progress", action="store_true")

    report = commands.add_parser("report", help="audit reports")
    report_commands = report.add_subparsers(dest="report_command", required=True, metavar="KIND")
    adherence = report_commands.add_parser(
        "adherence",
        help="were the recommendations followed, on time? (from the database, or --events)",
        description=(
            "The adherence audit of decisions dated in [--from, --to] (both included). From the "
            "configured database (MONITOR_DATABASE_URL), or with --events from an exported "
            "events file, whose decisions are computed by replay (no alert section then)."
        ),
    )
    adherence.add_argument(
        "--from",
        dest="start",
        type=_aware_time,
        default=None,
        help="period start, RFC 3339 with offset (default: 30 days before --to)",
    )
    adherence.add_argument(
        "--to",
        dest="end",
        type=_aware_time,
        default=None,
        help="period end (default: now; with --events, the latest event's time)",
    )
    adherence.add_argument("--unit", default=None, help="one infusion unit only")
    adherence.add_argument("--format", required=True, choices=("json", "csv", "html"))
    adherence.add_argument("--out", type=pathlib.Path, default=None, help="default: stdout")
    adherence.add_argument(
        "--events", type=pathlib.Path, default=None, help="an events file (JSON lines) instead"
    )
    _add_policy_options(adherence)

    policy = commands.add_parser("policy", help="the clinical policy packs")
    policy_actions = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    diff = policy_actions.add_parser(
        "diff",
        help="what changing the pack would change: per patient, decisions added, removed, changed",
        description=(
            "Fold every patient's events with both packs, up to --until, and compare the "
            "decisions each gives now: matched by trigger, action and reason; counted by action."
        ),
    )
    diff.add_argument("--from", dest="before", required=True, help="the pack in use: default@1")
    diff.add_argument("--to", dest="after", required=True, help="the pack to compare: label@1")
    source = diff.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", default=None, help="an events file (JSON lines; '-': stdin)")
    source.add_argument(
        "--database", action="store_true", help="the configured database (MONITOR_DATABASE_URL)"
    )
    diff.add_argument(
        "--until",
        type=_aware_time,
        default=None,
        help="the clock (default: the latest event's time; with --database, now)",
    )
    diff.add_argument("--format", choices=("json", "html"), default="json")
    diff.add_argument("--out", type=pathlib.Path, default=None, help="default: stdout")
    upgrade = policy_actions.add_parser(
        "upgrade",
        help="fold every patient again under the pack now in use (after changing MONITOR_POLICY)",
        description=(
            "Re-fold every patient under the configured pack, in batches, one transaction per "
            "patient. Superseded decisions record the policy change; only still-actionable "
            "advice that changed is alerted or corrected. Safe to run again."
        ),
    )
    upgrade.add_argument(
        "--to", required=True, help="the pack in use (MONITOR_POLICY), e.g. default@2"
    )
    upgrade.add_argument("--batch-size", type=_positive, default=200, help="patients per batch")
    upgrade.add_argument("--no-progress", action="store_true", help="no progress bar")

    bench = commands.add_parser(
        "bench",
        help="measure replay speed on generated timelines",
        description="Replay throughput and per-event cost (see README, Performance).",
    )
    bench.add_argument("--patients", type=int, default=10_000)
    bench.add_argument("--events-per-patient", type=int, default=20)
    bench.add_argument("--long", type=int, default=2_000, help="events of the long patient")
    bench.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    bench.add_argument("--seed", type=int, default=7)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "replay":
        return run_replay(args, sys.stdout, sys.stderr)
    if args.command == "bench":
        from monitor.bench.command import run_bench

        return int(run_bench(args, sys.stdout))
    if args.command == "ingest":
        return run_ingest(args)
    if args.command == "report":
        from monitor.reports.command import run_report_command

        return run_report_command(args, sys.stdout, sys.stderr)
    if args.command == "policy":
        from monitor.policy.command import run_policy_command

        return run_policy_command(args, sys.stdout, sys.stderr)
    return run_service_command(args)


def run_ingest(args: argparse.Namespace) -> int:
    import httpx

    from monitor.ingest.client import ingest_file

    if not args.token:
        print("ingest: a token is required (--token or MONITOR_TOKEN)", file=sys.stderr)
        return EXIT_INVALID
    try:
        report = ingest_file(
            args.file, args.url, args.token, sys.stderr, progress=not args.no_progress
        )
    except OSError as exc:
        print(f"ingest: {args.file}: cannot be read: {exc.strerror}", file=sys.stderr)
        return EXIT_INVALID
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        hint = " (check the token and its role: ingest or admin)" if status in (401, 403) else ""
        print(
            f"ingest: the service answered {status}{hint}; events sent before this batch "
            "are stored",
            file=sys.stderr,
        )
        return 1
    except httpx.HTTPError as exc:
        print(f"ingest: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    for line in report.rejected:
        print(line, file=sys.stderr)
    print(
        f"{report.accepted} accepted, {report.duplicates} duplicates, "
        f"{len(report.rejected)} rejected"
    )
    return 1 if report.rejected else 0


def run_service_command(args: argparse.Namespace) -> int:
    """Commands that use the configured database (MONITOR_* settings)."""
    from monitor import runtime

    settings = settings_or_report(sys.stderr)
    if settings is None:
        return EXIT_INVALID
    if args.command == "demo" or (args.command == "serve" and args.demo):
        return runtime.demo(settings, args.host, args.port, args.demo_dir, args.demo_events)
    if args.command == "serve":
        return runtime.serve(settings, args.host, args.port)
    if args.command == "api":
        return runtime.api(settings, args.host, args.port)
    if args.command == "worker":
        return runtime.worker(settings, args.concurrency, args.metrics_port, args.queues)
    if args.command == "scheduler":
        return runtime.scheduler(settings)
    from monitor.auth.audit import AuditKeyError
    from monitor.services import build_services
    from monitor.storage.migrate import upgrade

    services = build_services(settings)
    try:
        if args.command == "migrate":
            upgrade(services.engine)
            print("database schema is up to date")
            return 0
        if args.command == "token":
            upgrade(services.engine)
            return _token_command(args, services)
        if args.command == "audit":
            return _audit_command(args, services)
    except AuditKeyError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return EXIT_INVALID
    finally:
        services.close()
    raise AssertionError(args.command)  # argparse rejects unknown commands


def _token_command(args: argparse.Namespace, services: Services) -> int:
    import json

    from monitor.auth.tokens import Principal, create_token, list_tokens, revoke_tokens

    now = services.settings.now()
    if args.token_command == "create":
        expires = args.expires_at or (now + args.expires_in if args.expires_in else None)
        try:
            token = create_token(
                services.sessions, args.role, args.name or args.role, now, expires, args.units
            )
        except ValueError as exc:
            print(f"token: {exc}", file=sys.stderr)
            return EXIT_INVALID
        print(token)
        return 0
    if args.token_command == "list":
        for view in list_tokens(services.sessions, now, include_inactive=args.all):
            print(json.dumps(view))
        return 0
    revoked = revoke_tokens(services.sessions, now, token_id=args.id, name=args.revoke_name)
    operator = Principal(name=f"cli:{os.environ.get('USER', 'unknown')}"[:64], role="admin")
    for view in revoked:
        services.audit.record(operator, "token revoke", f"token:{view['id']}", 200, now)
        print(json.dumps(view))
    if not revoked:
        wanted = f"token {args.id}" if args.id is not None else f"tokens named {args.revoke_name!r}"
        print(f"token: no active {wanted}", file=sys.stderr)
        return 1
    return 0


def _audit_command(args: argparse.Namespace, services: Services) -> int:
    if args.audit_command == "checkpoint":
        checkpoint = services.audit.checkpoint(services.settings.now())
        print(
            checkpoint.as_json()
            if checkpoint
            else "audit log: nothing new since the last checkpoint"
        )
        return 0
    if args.checkpoints is not None:
        services.audit.checkpoint_path = args.checkpoints
    try:
        report = services.audit.verify()
    except ValueError as exc:  # an unreadable checkpoint file
        print(f"audit log: {exc}", file=sys.stderr)
        return 1
    if report.broken_at is None:
        print(
            f"audit log intact: {report.rows} rows, {report.checkpoints} checkpoints "
            f"({services.audit.checkpoint_path})"
        )
        return 0
    print(f"audit log broken at row {report.broken_at}: {report.reason}", file=sys.stderr)
    return 1
