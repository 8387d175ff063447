"""Adherence report benchmark (issue 5, item 4): 100,000 patients' history in under 30 s.

    .venv/bin/python tests/perf/bench_report.py [--patients N] [--quick]

A script, not a pytest test. On the local PostgreSQL (a fresh database, dropped at the end,
whatever happens) it:

1. migrates the schema (monitor.storage.migrate.upgrade);
2. fills it with generated history, fast (not part of the timed figures): per chunk of 1,000
   patients, in worker processes, the synthetic timelines of monitor/synthetic.py (20 events
   per patient by default: enrolment, assessments, doses, treatment changes over months, four
   units, mixed offsets), the decisions the pure engine makes for each patient
   (`evaluate_patient(pack, patient, events, until=its latest event)`) stored as the worker
   stores them (`model_dump_json(exclude_none=True)` bodies, `due_at`), one `new` alert per
   decision with an audience (the unit of the course at the decision), and acknowledgements
   for a share of them (by severity: 95 % urgent, 80 % warning, 60 % info; minutes to the
   acknowledgement log-normal). Rows go in with PostgreSQL COPY; then VACUUM ANALYZE. Not
   written: outbox and patient rows (the report reads neither). Decisions are those of each
   patient's clock at its own last event, so timers after it have not fired (the audited
   decisions come from events, so this changes little);
3. runs the report exactly as an auditor does, as a child process:
   `python -m monitor report adherence --format F --from <first event> --to <last event>
   --out FILE` with MONITOR_DATABASE_URL set, for F = json, csv, html; per run the wall time,
   the report process's own peak RSS and CPU (GNU `/usr/bin/time -f %M`; see `run_report`),
   the machine's load and the CPU the rest of the machine used meanwhile (the PostgreSQL
   backend and its parallel workers included);
4. memory: the database is filled in two steps, the small size first (default a fifth of
   --patients), the reports run, then the rest of the patients added and the reports run again
   over the whole period. A report over an empty period gives the fixed cost (interpreter,
   imports, connection). The peak RSS per patient above that baseline, at both sizes, shows
   whether memory grows with the history;
5. checks the figures at scale: the report's recommendation, reassessment, escalation,
   deviation and alert totals equal counts made directly in SQL over the same period, the
   recommendations and reassessments are not zero, the CSV has one row per audited item and
   the HTML has its charts;
6. prints a table, then one JSON line with every figure (the last line of the output).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import math
import multiprocessing
import os
import pathlib
import platform
import random
import resource
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

OUT = ROOT / "tests" / "perf" / "out"
TARGET_S = 30.0
CHUNK = 1_000  # patients per generation task
FORMATS = ("json", "csv", "html")
RECOMMENDATIONS = ("reduce_dose", "hold", "discontinue")
ACK_SHARE = {"urgent": 0.95, "warning": 0.8, "info": 0.6}
ACK_MEDIAN_MIN = {"urgent": 12.0, "warning": 45.0, "info": 180.0}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- generation (in worker processes) ------------------------------------------------------


def _copy_text(value: Any) -> str:
    """One field in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


def _line(*fields: Any) -> str:
    return "\t".join(_copy_text(f) for f in fields) + "\n"


@dataclass
class Chunk:
    """COPY text for one chunk of patients. Alert lines lack their id (given in order by the
    parent); ack lines start with the index of their alert within the chunk."""

    index: int
    patients: int
    events: str
    event_count: int
    decisions: str
    decision_count: int
    alerts: list[str]
    acks: list[tuple[int, str]]
    first: dt.datetime
    last: dt.datetime
    cpu_s: float


def _generate_chunk(task: tuple[int, int, int, int]) -> Chunk:
    """Patients PTnnn-000001.. of chunk `index`: events, decisions, alerts, acks."""
    from monitor.bench.synthetic import generate
    from monitor.policy_file import load_pack
    from policies.engine import evaluate_patient, timeline_order
    from policies.events import EVENT_ADAPTER, Enrollment, canonical_body

    index, patients, per_patient, seed = task
    started = time.process_time()
    pack = load_pack("default", None)
    rng = random.Random(seed * 1_000_003 + index)
    prefix = f'"PT{index:03d}-'
    by_patient: dict[str, list[Any]] = defaultdict(list)
    for raw in generate(patients, per_patient, seed * 1_000_003 + index):
        event = EVENT_ADAPTER.validate_json(raw.replace('"SYN-', prefix))
        by_patient[event.patient_id].append(event)
    events: list[str] = []
    decisions: list[str] = []
    alerts: list[str] = []
    acks: list[tuple[int, str]] = []
    first = last = None
    for patient_id in sorted(by_patient):
        timeline = sorted(by_patient[patient_id], key=timeline_order)
        for event in timeline:
            body = canonical_body(event)
            received = event.occurred_at + dt.timedelta(seconds=rng.randint(5, 600))
            events.append(
                _line(
                    event.event_id,
                    patient_id,
                    event.type,
                    event.occurred_at,
                    received,
                    body,
                    hashlib.sha256(body.encode()).hexdigest(),
                )
            )
        until = timeline[-1].occurred_at
        start = timeline[0].occurred_at
        first = start if first is None or start < first else first
        last = until if last is None or until > last else last
        enrolments = [
            (e.occurred_at.astimezone(dt.UTC), e.unit)
            for e in timeline
            if isinstance(e, Enrollment)
        ]
        for decision in evaluate_patient(pack, patient_id, timeline, until).decisions:
            at = decision.at.astimezone(dt.UTC)
            created = at + dt.timedelta(seconds=rng.uniform(0.5, 30))
            decisions.append(
                _line(
                    decision.decision_id,
                    patient_id,
                    at,
                    decision.action,
                    decision.severity,
                    decision.rule,
                    decision.policy,
                    decision.model_dump_json(exclude_none=True),
                    decision.due_at.astimezone(dt.UTC) if decision.due_at else None,
                    created,
                    None,
                )
            )
            if not decision.audience:
                continue
            unit = None
            for enrolled_at, enrolled_unit in enrolments:
                if enrolled_at <= at:
                    unit = enrolled_unit
            alerts.append(
                _line(
                    decision.decision_id,
                    "new",
                    decision.action,
                    patient_id,
                    unit,
                    decision.severity,
                    json.dumps(decision.audience),
                    decision.rationale,
                    None,
                    created,
                )
            )
            if rng.random() < ACK_SHARE[decision.severity]:
                minutes = rng.lognormvariate(math.log(ACK_MEDIAN_MIN[decision.severity]), 0.9)
                acked = created + dt.timedelta(minutes=minutes)
                nurse = f"nurse-{rng.randint(1, 60):02d}"
                acks.append((len(alerts) - 1, _line(nurse, "nurse", acked, None, acked)))
    assert first is not None
    assert last is not None
    return Chunk(
        index=index,
        patients=len(by_patient),
        events="".join(events),
        event_count=len(events),
        decisions="".join(decisions),
        decision_count=len(decisions),
        alerts=alerts,
        acks=acks,
        first=first,
        last=last,
        cpu_s=time.process_time() - started,
    )


# --- the database --------------------------------------------------------------------------


def pg(database: str) -> psycopg.Connection[Any]:
    return psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}", autocommit=True)


@contextlib.contextmanager
def fresh_database(name: str, keep: bool) -> Iterator[str]:
    """A new database (migrated), dropped at the end unless `keep`."""
    with pg("postgres") as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        from monitor.settings import Settings
        from monitor.storage.database import make_engine
        from monitor.storage.migrate import upgrade

        engine = make_engine(Settings(database_url=url))
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield url
    finally:
        if not keep:
            with pg("postgres") as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Filled:
    patients: int = 0
    events: int = 0
    decisions: int = 0
    alerts: int = 0
    acks: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    chunks: int = 0


def fill(
    conn: psycopg.Connection[Any],
    pool: Any,
    filled: Filled,
    target: int,
    per_patient: int,
    seed: int,
) -> dict[str, Any]:
    """Add patients until there are `target`; returns the generation figures."""
    started = time.perf_counter()
    tasks = []
    index, have = filled.chunks, filled.patients
    while have < target:
        size = min(CHUNK, target - have)
        tasks.append((index, size, per_patient, seed))
        index, have = index + 1, have + size
    worker_cpu = 0.0
    copy_s = 0.0
    for chunk in pool.imap(_generate_chunk, tasks):
        copy_started = time.perf_counter()
        with conn.cursor() as cursor:
            with cursor.copy(
                "COPY event (event_id, patient_id, type, occurred_at, received_at, body, "
                "body_hash) FROM STDIN"
            ) as copy:
                copy.write(chunk.events)
            with cursor.copy(
                "COPY decision (decision_id, patient_id, at, action, severity, rule, policy, "
                "body, due_at, created_at, superseded_at) FROM STDIN"
            ) as copy:
                copy.write(chunk.decisions)
            base = filled.alerts + 1
            with cursor.copy(
                "COPY alert (id, decision_id, kind, action, patient_id, unit, severity, "
                "audience, message, escalates_alert_id, created_at) FROM STDIN"
            ) as copy:
                copy.write("".join(f"{base + i}\t{line}" for i, line in enumerate(chunk.alerts)))
            with cursor.copy(
                "COPY alert_ack (alert_id, acknowledged_by, token_name, acknowledged_at, note, "
                "recorded_at) FROM STDIN"
            ) as copy:
                copy.write("".join(f"{base + i}\t{line}" for i, line in chunk.acks))
        copy_s += time.perf_counter() - copy_started
        worker_cpu += chunk.cpu_s
        filled.patients += chunk.patients
        filled.events += chunk.event_count
        filled.decisions += chunk.decision_count
        filled.alerts += len(chunk.alerts)
        filled.acks += len(chunk.acks)
        filled.chunks += 1
        filled.first = chunk.first if filled.first is None else min(filled.first, chunk.first)
        filled.last = chunk.last if filled.last is None else max(filled.last, chunk.last)
        if filled.chunks % 10 == 0 or filled.patients == target:
            print(
                f"    {filled.patients:>7} patients, {filled.events:>8} events, "
                f"{time.perf_counter() - started:6.1f} s",
                flush=True,
            )
    conn.execute("UPDATE alert_sequence SET value = %s WHERE name = 'alert'", (filled.alerts,))
    generated_s = time.perf_counter() - started
    vacuum_started = time.perf_counter()
    for table in ("event", "decision", "alert", "alert_ack"):
        conn.execute(f"VACUUM (ANALYZE) {table}")
    vacuum_s = time.perf_counter() - vacuum_started
    return {
        "patients": filled.patients,
        "added_patients": sum(t[1] for t in tasks),
        "generate_and_copy_s": round(generated_s, 2),
        "copy_s_in_parent": round(copy_s, 2),
        "worker_cpu_s": round(worker_cpu, 2),
        "vacuum_analyze_s": round(vacuum_s, 2),
        "total_s": round(generated_s + vacuum_s, 2),
    }


def counts_in_sql(
    conn: psycopg.Connection[Any], start: dt.datetime, end: dt.datetime
) -> dict[str, int]:
    """What the report's totals must be, counted directly (no unit filter: every decision
    current and anchored in the period counts; a reassessment by its due time)."""
    row = conn.execute(
        """
        SELECT
          count(*) FILTER (WHERE action = ANY(%(recs)s) AND at BETWEEN %(s)s AND %(e)s),
          count(*) FILTER (WHERE action = 'schedule_reassessment'
                           AND due_at BETWEEN %(s)s AND %(e)s AND at <= %(e)s),
          count(*) FILTER (WHERE action = 'escalate_immunotherapy' AND at BETWEEN %(s)s AND %(e)s),
          count(*) FILTER (WHERE action = 'adherence_deviation' AND at BETWEEN %(s)s AND %(e)s)
        FROM decision WHERE superseded_at IS NULL
        """,
        {"recs": list(RECOMMENDATIONS), "s": start, "e": end},
    ).fetchone()
    alerts = conn.execute(
        "SELECT count(*), count(k.id) FROM alert a LEFT JOIN alert_ack k ON k.alert_id = a.id "
        "WHERE a.created_at BETWEEN %s AND %s",
        (start, end),
    ).fetchone()
    assert row is not None
    assert alerts is not None
    return {
        "recommendations": row[0],
        "reassessments": row[1],
        "escalations": row[2],
        "deviations": row[3],
        "alerts": alerts[0],
        "acknowledged": alerts[1],
    }


# --- running the report ----------------------------------------------------------------------


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all CPUs), from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK


TIME = pathlib.Path("/usr/bin/time")


def run_report(
    env: dict[str, str],
    fmt: str,
    start: dt.datetime,
    end: dt.datetime,
    out: pathlib.Path,
    timeout: float,
) -> dict[str, Any]:
    """`python -m monitor report adherence` as a child; its wall time, peak RSS and CPU.

    The peak RSS comes from GNU time (`/usr/bin/time -f %M`: the ru_maxrss of the report
    process, from its own wait4). Not from this process's wait4 or RUSAGE_CHILDREN: Linux
    carries the parent's RSS high-water mark into a child at exec (measured: a /bin/true started
    by a 500 MiB process reports 500 MiB), so those would report this script's own size."""
    report = [sys.executable, "-m", "monitor", "report", "adherence", "--format", fmt]
    report += ["--from", start.isoformat(), "--to", end.isoformat(), "--out", str(out)]
    stats = out.with_suffix(out.suffix + ".time")
    argv = [str(TIME), "-f", "%M %U %S", "-o", str(stats), *report] if TIME.exists() else report
    load = os.getloadavg()[0]
    busy_before = machine_busy()
    err = out.with_suffix(out.suffix + ".stderr")
    with err.open("wb") as stderr:
        started = time.perf_counter()
        child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise TimeoutError(f"report --format {fmt}: over {timeout:.0f} s") from None
        wall = time.perf_counter() - started
    busy = machine_busy() - busy_before
    if code != 0:
        raise RuntimeError(f"report --format {fmt} exited {code}: {err.read_text()[-2000:]}")
    if TIME.exists():
        rss_kib, user, system = stats.read_text().split()[-3:]
        peak_mib, cpu = int(rss_kib) / 1024, float(user) + float(system)
        method = "/usr/bin/time %M"
    else:  # an upper bound: see above
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_mib, cpu = usage.ru_maxrss / 1024, float("nan")
        method = "RUSAGE_CHILDREN (upper bound)"
    err.unlink()
    stats.unlink(missing_ok=True)
    return {
        "format": fmt,
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(peak_mib, 1),
        "cpu_s": round(cpu, 2),
        "rest_of_machine_cpu_s": round(max(busy - cpu, 0.0), 2),
        "load_1m_before": round(load, 2),
        "output_bytes": out.stat().st_size,
        "rss_method": method,
    }


def check_report(
    measured: dict[str, dict[str, Any]], outputs: dict[str, pathlib.Path], sql: dict[str, int]
) -> dict[str, Any]:
    """The report's totals against SQL's; the CSV's rows against the totals; HTML charts."""
    report = json.loads(outputs["json"].read_text())
    recommendations = report["recommendations"]
    reassessments = report["reassessments"]
    escalations = report["escalations"]
    alerts = report["alerts"]
    got = {
        "recommendations": recommendations["total"],
        "reassessments": reassessments["due"],
        "escalations": escalations["total"],
        "deviations": report["deviations"]["total"],
        "alerts": alerts["total"],
        "acknowledged": alerts["acknowledged"],
    }
    assert got == sql, f"report totals {got} != SQL counts {sql}"
    assert recommendations["total"] > 0, "no recommendation in the period"
    assert reassessments["due"] > 0, "no reassessment due in the period"
    assert (
        recommendations["followed"] + recommendations["deviated"] + recommendations["pending"]
        == recommendations["total"]
    )
    audited = recommendations["total"] + reassessments["due"] + escalations["total"]
    with outputs["csv"].open(encoding="utf-8") as handle:
        csv_rows = sum(1 for _ in handle) - 1  # the header; no field holds a newline
    assert csv_rows == audited, f"CSV rows {csv_rows} != audited items {audited}"
    if "html" in outputs:
        head = outputs["html"].read_text(encoding="utf-8")
        assert "<svg" in head, "the HTML report has no chart"
        assert 'src="http' not in head, "the HTML report loads something from the network"
    return {
        "report_totals": got,
        "csv_rows": csv_rows,
        "patients_in_drilldown": len(report["patients"]),
        "recommendation_rate": recommendations["rate"],
        "reassessment_rate": reassessments["rate"],
        "formats_run": sorted(measured),
    }


def report_point(
    env: dict[str, str],
    conn: psycopg.Connection[Any],
    filled: Filled,
    formats: Sequence[str],
    work: pathlib.Path,
    timeout: float,
    keep: bool,
) -> dict[str, Any]:
    assert filled.first is not None
    assert filled.last is not None
    start, end = filled.first, filled.last
    sql = counts_in_sql(conn, start, end)
    measured: dict[str, dict[str, Any]] = {}
    outputs: dict[str, pathlib.Path] = {}
    for fmt in formats:
        out = work / f"report-{filled.patients}.{fmt}"
        measured[fmt] = run_report(env, fmt, start, end, out, timeout)
        outputs[fmt] = out
        m = measured[fmt]
        print(
            f"    {fmt:<5} {m['wall_s']:>7.2f} s  peak RSS {m['peak_rss_mib']:>7.1f} MiB  "
            f"cpu {m['cpu_s']:>6.2f} s  output {m['output_bytes'] / 1e6:.1f} MB",
            flush=True,
        )
    checks = check_report(measured, outputs, sql)
    if not keep:  # ~100 MB each at 100,000 patients
        for out in outputs.values():
            out.unlink()
    return {
        "patients": filled.patients,
        "events": filled.events,
        "decisions": filled.decisions,
        "alert_rows": filled.alerts,
        "acks": filled.acks,
        "period": {"from": start.isoformat(), "to": end.isoformat()},
        "sql_counts": sql,
        "runs": measured,
        "checks": checks,
    }


# --- main --------------------------------------------------------------------------------------


def _alarm(_signum: int, _frame: Any) -> None:
    raise TimeoutError("the benchmark ran over --max-seconds")


def bench(args: argparse.Namespace) -> dict[str, Any]:
    sizes = sorted({s for s in (args.small, args.patients) if s > 0})
    formats = [f for f in FORMATS if f != "html" or (ROOT / "monitor/reports/html.py").exists()]
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    db_name = f"bench_report_{os.getpid()}"
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_1m_5m_15m_at_start": [round(v, 2) for v in os.getloadavg()],
    }
    print(f"database {db_name}; sizes {sizes}; formats {formats}; cpus {machine['cpus']}")
    context = multiprocessing.get_context("fork")
    with (
        context.Pool(args.workers) as pool,  # forked before any connection is open
        fresh_database(db_name, args.keep_db) as url,
        pg(db_name) as conn,
    ):
        server = conn.execute("SHOW server_version").fetchone()
        machine["postgresql"] = server[0] if server else None
        env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
        env |= {
            "MONITOR_DATABASE_URL": url,
            "PYTHONPATH": str(ROOT),
            "MONITOR_LOG_LEVEL": "WARNING",
        }
        filled = Filled()
        generation: list[dict[str, Any]] = []
        points: list[dict[str, Any]] = []
        for size in sizes:
            print(f"fill to {size} patients ({args.events_per_patient} events each) ...")
            generation.append(fill(conn, pool, filled, size, args.events_per_patient, args.seed))
            g = generation[-1]
            print(
                f"    generated in {g['generate_and_copy_s']} s "
                f"(+ VACUUM ANALYZE {g['vacuum_analyze_s']} s)",
                flush=True,
            )
            if size == sizes[0]:
                assert filled.first is not None
                empty_end = filled.first - dt.timedelta(days=30)
                print("report over an empty period (the fixed cost) ...", flush=True)
                baseline = run_report(
                    env,
                    "json",
                    empty_end - dt.timedelta(days=30),
                    empty_end,
                    work / "report-empty.json",
                    args.report_timeout,
                )
                print(
                    f"    json  {baseline['wall_s']:>7.2f} s  peak RSS "
                    f"{baseline['peak_rss_mib']:>7.1f} MiB",
                    flush=True,
                )
                if not args.keep_outputs:
                    (work / "report-empty.json").unlink()
            for repeat in range(args.repeat):
                print(f"report at {filled.patients} patients, run {repeat + 1} ...", flush=True)
                points.append(
                    report_point(
                        env, conn, filled, formats, work, args.report_timeout, args.keep_outputs
                    )
                )
    largest = [p for p in points if p["patients"] == sizes[-1]]
    smallest = [p for p in points if p["patients"] == sizes[0]]
    memory: dict[str, Any] = {"baseline_peak_rss_mib": baseline["peak_rss_mib"]}
    for fmt in formats:
        small = max(p["runs"][fmt]["peak_rss_mib"] for p in smallest)
        large = max(p["runs"][fmt]["peak_rss_mib"] for p in largest)
        entry: dict[str, Any] = {
            f"peak_rss_mib_at_{sizes[0]}": small,
            f"peak_rss_mib_at_{sizes[-1]}": large,
        }
        if len(sizes) > 1:
            above_small = small - baseline["peak_rss_mib"]
            above_large = large - baseline["peak_rss_mib"]
            entry["rss_above_baseline_ratio"] = (
                round(above_large / above_small, 2) if above_small > 0 else None
            )
            entry["patients_ratio"] = round(sizes[-1] / sizes[0], 2)
            entry["kib_per_extra_patient"] = round(
                (large - small) * 1024 / (sizes[-1] - sizes[0]), 2
            )
        memory[fmt] = entry
    wall = {fmt: max(p["runs"][fmt]["wall_s"] for p in largest) for fmt in formats}
    return {
        "bench": "report_adherence",
        "database": db_name,
        "patients": sizes[-1],
        "events_per_patient": args.events_per_patient,
        "seed": args.seed,
        "target_s": TARGET_S,
        "worst_wall_s_at_largest": wall,
        "under_target": all(v < TARGET_S for v in wall.values()),
        "rss_method": baseline["rss_method"],
        "memory": memory,
        "generation": generation,
        "points": points,
        "baseline_empty_period": baseline,
        "machine": machine | {"load_1m_5m_15m_at_end": [round(v, 2) for v in os.getloadavg()]},
    }


def report(result: dict[str, Any]) -> None:
    print()
    print(f"adherence report over generated history (target < {result['target_s']:g} s)")
    header = f"{'patients':>9} {'events':>9} {'format':<6} {'wall s':>7} {'peak RSS MiB':>13}"
    header += f" {'cpu s':>6} {'others cpu s':>12} {'load':>5} {'output MB':>9}"
    print(header)
    for point in result["points"]:
        for fmt, m in point["runs"].items():
            print(
                f"{point['patients']:>9} {point['events']:>9} {fmt:<6} {m['wall_s']:>7.2f} "
                f"{m['peak_rss_mib']:>13.1f} {m['cpu_s']:>6.2f} {m['rest_of_machine_cpu_s']:>12.2f}"
                f" {m['load_1m_before']:>5.2f} {m['output_bytes'] / 1e6:>9.1f}"
            )
    base = result["baseline_empty_period"]
    print(f"{'empty':>9} {0:>9} {'json':<6} {base['wall_s']:>7.2f} {base['peak_rss_mib']:>13.1f}")
    for g in result["generation"]:
        print(
            f"generation to {g['patients']} patients: {g['generate_and_copy_s']} s "
            f"(+ VACUUM ANALYZE {g['vacuum_analyze_s']} s; worker CPU {g['worker_cpu_s']} s) "
            "- not part of the timed figures"
        )
    for fmt, entry in result["memory"].items():
        if fmt == "baseline_peak_rss_mib":
            continue
        print(f"memory {fmt}: {entry}")
    verdict = "yes" if result["under_target"] else "NO"
    print(f"worst wall time at {result['patients']} patients: {result['worst_wall_s_at_largest']}")
    print(f"under {result['target_s']:g} s: {verdict}")
    print(json.dumps(result, separators=(",", ":")))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=None, help="default 100000 (quick 2000)")
    parser.add_argument(
        "--small", type=int, default=None, help="the first size (default: a fifth; 0: none)"
    )
    parser.add_argument("--events-per-patient", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=1, help="report runs per size")
    parser.add_argument("--report-timeout", type=float, default=600.0)
    parser.add_argument("--max-seconds", type=int, default=3600, help="stop everything after")
    parser.add_argument("--work", default=str(OUT / "bench-report"), help="report outputs")
    parser.add_argument(
        "--keep-outputs", action="store_true", help="keep the reports written (in --work)"
    )
    parser.add_argument("--json-out", default=None, help="default tests/perf/out/...json")
    parser.add_argument(
        "--keep-db", action="store_true", help="do not drop the database (to profile; drop it)"
    )
    parser.add_argument("--quick", action="store_true", help="2,000 patients (a smoke run)")
    args = parser.parse_args(argv)
    if args.patients is None:
        args.patients = 2_000 if args.quick else 100_000
    if args.small is None:
        args.small = args.patients // 5
    if args.patients < 1:
        parser.error("--patients must be >= 1")
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(args.max_seconds)
    try:
        result = bench(args)
    finally:
        signal.alarm(0)
    report(result)
    name = "bench_report_quick.json" if args.quick else "bench_report.json"
    target = pathlib.Path(args.json_out) if args.json_out else OUT / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
