"""Pipeline benchmark (issue 3, item 8; issue 17, item 5): HTTP ingest -> Celery on Redis ->
stored decisions -> SSE alerts, every figure of the issue in one run.

    .venv/bin/python tests/perf/bench_pipeline.py [--quick] [--runs N] [--redis-db 13]

A script, not a pytest test (pytest collects test_*.py only). On the local PostgreSQL (a fresh
database per run, dropped at its end) and Redis (a dedicated db number, flushed before and
after), it starts real processes and measures:

1. the no-op baseline: a Celery app with the service's own settings (`create_celery`: JSON,
   acks_late, reject_on_worker_lost, prefetch 1) and a task that only INCRs a Redis counter, in
   its own `worker --concurrency 2` process on the same broker. The queue is filled with N
   tasks first, then the worker starts; the rate is (N - 1) / (time of the N-th task - time of
   the first), both stamped by the tasks themselves;
2. sustained pipeline throughput: complete synthetic timelines (monitor/bench/synthetic.py: 20
   events per patient: enrolment, assessments, doses, treatment changes; shuffled across
   patients) POSTed in batches of 250 by one client to `python -m monitor api`, processed by
   `python -m monitor worker --concurrency 2`; events/s from the first POST until no outbox row
   is open (every event folded, its decisions stored). Repeated with more events until that
   takes at least 20 s. Also reported: the time until the task queue is empty (tasks queued for
   patients that an earlier task already folded), and how many task runs there were;
3. single-event CPU against the history (`--histories 20,200,2000`): per history size H, a few
   patients' first H events (in clinical order) are loaded in batches and folded (not timed);
   then `--single-events` K of their later events (the same synthetic timelines: the next
   doses, assessments, changes, each after the patient's last one) are POSTed one at a time,
   round robin over the patients, each waited for until its outbox row is processed. Per H:
   the worker's and the API's CPU per event (their process trees; each process's CPU-time clock,
   which is utime+stime to the nanosecond, where /proc counts 10 ms ticks), gross and less an
   idle window of the same length measured right after; wall p50/p95 POST -> folded; and the
   ratio of the worker's CPU per event at the largest history to that at the smallest;
4. latency at steady rates (`--rates 50,100`, `--duration` s each, small batches on a fixed
   schedule). Each patient's events are sent in clinical order (patients interleaved), as a
   feed sends them, so that most events raise their decisions and alerts as they arrive
   (`--latency-order shuffled`: mixed within patients too, as before issue 17). Timelines are
   moved to end just before now (as in 3), so that folds resume as in production. Per
   event: POST start -> a poller sees its outbox row processed (the decision stored; the poll
   interval bounds the error), and from the database's own timestamps (outbox.created_at ->
   processed_at). Per alert: POST start of the event that caused it -> its `event: alert` frame
   read by a real SSE client on `GET /v1/alerts/stream` (a nurse token asking for every
   audience, opened before the phase). An alert carries no event id; it is tied to one after
   the phase, in the database: the fold that raised it is the one whose outbox rows were
   processed at the alert's `created_at` (the same clock reading), and the event is the
   decision's `trigger` when the fold processed it, else the first-POSTed event of that fold;
   failing both (not expected), a `new` or `correction` alert is tied to the latest event
   POSTed for its patient before the frame arrived (counted apart: `matched_by`);
5. the ratio pipeline / no-op, CPU seconds per component and phase (from /proc and the CPU-time
   clocks), the 1-minute load average at the start and end of every phase, a table of the
   headline figures against the issue's targets, and one JSON line with every figure (the
   last line of the output). With `--runs N` the whole bench runs N times, each from scratch
   (a new database, Redis flushed, new processes); the table shows min/median/max across the
   runs and the JSON line holds `runs` (each run's figures) and `summary` (min/median/max of
   every number in them).

Bounded: every wait has a timeout and each run an alarm; all traffic goes to 127.0.0.1; the
processes it started are stopped (their process groups) at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import math
import os
import pathlib
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402

from monitor.bench.synthetic import generate  # noqa: E402
from monitor.settings import Settings  # noqa: E402
from workers.app import create_celery  # noqa: E402

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
NOOP_TASK = "bench.noop"
QUEUE = "monitor"  # the service's task queue (create_celery: task_default_queue)
NOOP_QUEUE = "bench-noop"
NOOP_COUNT, NOOP_FIRST, NOOP_LAST = "bench:noop:count", "bench:noop:first", "bench:noop:last"
# issue 17, item 5: the targets the figures are judged against (ratios within one run)
TARGET_RATIO = 1.5  # batch throughput / the no-op Celery rate, at least
TARGET_CPU_RATIO = 1.5  # worker CPU per new event at the largest history / at the smallest, at most
TARGET_CPU_MS = 3.0  # worker, and API, CPU per single event, at most (at every history)
TARGET_RATE = 100.0  # the rate the latency targets hold at (events/s)
TARGET_DECISION_P99_MS = 100.0  # POST -> stored decision, p99, at most
TARGET_ALERT_P99_MS = 250.0  # POST -> SSE alert frame, p99, at most
# every audience an alert can have: the feed's stream asks for all of them (a nurse token)
AUDIENCES = ("nurse", "physician", "neurology", "pharmacy", "infusion_unit", "admin")
OUT = ROOT / "tests" / "perf" / "out"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DAY = dt.timedelta(days=1)


# --- the no-op Celery task (also run as its own worker process: `noop-worker`) ---------------


def noop_app(broker_url: str) -> Any:
    """The service's Celery settings (create_celery), plus a task that only counts itself."""
    app = create_celery(Settings(broker_url=broker_url, database_url="sqlite://"))
    client: list[redis.Redis] = []  # one per worker process, made after the fork

    @app.task(name=NOOP_TASK, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def noop(total: int) -> None:
        if not client:
            client.append(redis.Redis.from_url(broker_url))
        count = client[0].incr(NOOP_COUNT)
        if count == 1:
            client[0].set(NOOP_FIRST, repr(time.time()))
        if count == total:
            client[0].set(NOOP_LAST, repr(time.time()))

    return app


def run_noop_worker(broker_url: str, concurrency: int, log_level: str) -> int:
    """Started like `python -m monitor worker` (runtime.worker): same logging, same options."""
    from monitor.operations.logsafe import configure_logging

    settings = Settings(broker_url=broker_url, database_url="sqlite://", log_level=log_level)
    configure_logging(settings)
    app = noop_app(broker_url)
    app.worker_main(
        [
            "worker",
            "--loglevel",
            log_level,
            "--concurrency",
            str(concurrency),
            "--queues",
            NOOP_QUEUE,
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


# --- processes and machine ---------------------------------------------------------------


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    log: pathlib.Path


@dataclass
class Run:
    args: argparse.Namespace
    db_name: str
    broker_url: str
    database_url: str
    env: dict[str, str]
    logs: pathlib.Path
    started: list[Started] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str]) -> Started:
        log = self.logs / f"{name}.log"
        handle = log.open("wb")
        process = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with its children
        )
        handle.close()
        started = Started(name, process, log)
        self.started.append(started)
        return started

    def stop(self, started: Started, timeout: float = 15) -> None:
        process = started.process
        if process.poll() is None:  # the main process only: Celery's warm shutdown, uvicorn's
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):  # children left behind (prefork pool)
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        if started in self.started:
            self.started.remove(started)

    def monitor_command(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "monitor", *argv]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process: its utime+stime, from its CPU-time clock."""
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), process_cpu_s(pid, (int(fields[11]) + int(fields[12])) / CLK_TCK)


def process_cpu_s(pid: int, ticks_s: float) -> float:
    """A process's CPU seconds (all its threads, exited ones too) to the nanosecond: its
    CPU-time clock (clock_getcpuclockid's id: CPUCLOCK_SCHED of the process), which Linux lets
    any process read. /proc's utime+stime (`ticks_s`) counts 10 ms ticks, each read up to a
    tick low: too coarse for a few ms per event. `ticks_s` when the clock cannot be read."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        return ticks_s


def _cmdline(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def cpu_snapshot(run: Run) -> dict[str, float]:
    """CPU seconds so far per component (live processes only), and the machine's busy time."""
    pids = [int(p.name) for p in pathlib.Path("/proc").iterdir() if p.name.isdigit()]
    stats = {pid: s for pid in pids if (s := _stat(pid)) is not None}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)

    def tree(root: int) -> float:
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            if pid in stats:
                total += stats[pid][1]
                stack += children.get(pid, [])
        return total

    snapshot = {s.name: tree(s.process.pid) for s in run.started}
    postgres_bench = postgres_server = redis_server = 0.0
    for pid, (_, seconds) in stats.items():
        command = _cmdline(pid)
        if command.startswith("postgres:") or "bin/postgres" in command:
            if f" {run.db_name} " in command:
                postgres_bench += seconds
            elif "(" not in command and "[local]" not in command:  # not another client's backend
                postgres_server += seconds
        elif command.startswith("redis-server") and f":{REDIS_PORT}" in command:
            redis_server += seconds
    own = os.times()
    snapshot |= {
        "postgres (bench db backends)": postgres_bench,
        "postgres (server processes)": postgres_server,
        "redis": redis_server,
        "bench client": own.user + own.system,
    }
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]
    snapshot["machine busy"] = (sum(values[:8]) - idle) / CLK_TCK
    return snapshot


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    delta = {k: round(after[k] - before.get(k, 0.0), 2) for k in after}
    ours = sum(v for k, v in delta.items() if k != "machine busy")
    delta["others on the machine"] = round(delta["machine busy"] - ours, 2)
    return delta


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: Sequence[float], prefix: str = "") -> dict[str, float | None]:
    """p50/p95/p99/max in ms, rounded; None for each when there is no value (no alert)."""
    names = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}
    return {
        f"{prefix}{name}_ms": round(percentile(values, q), 1) if values else None
        for name, q in names.items()
    }


def load_1m() -> float:
    """The 1-minute load average (/proc/loadavg), beside every figure: others share the box."""
    return round(os.getloadavg()[0], 2)


# --- database, broker --------------------------------------------------------------------


def pg(database: str) -> psycopg.Connection[Any]:
    return psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}", autocommit=True)


def open_outbox(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(rows still open, rows in all)."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE processed_at IS NULL AND dead_letter_id IS NULL), "
        "count(*) FROM outbox"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def task_runs(conn: psycopg.Connection[Any], prefix: str) -> int:
    """Successful process_patient runs so far for these patients (each one bumps `version`)."""
    row = conn.execute(
        "SELECT coalesce(sum(version), 0) FROM patient WHERE patient_id LIKE %s", (prefix + "-%",)
    ).fetchone()
    assert row is not None
    return int(row[0])


def dead_letters(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM dead_letter").fetchone()
    assert row is not None
    return int(row[0])


def wait_until(what: str, check: Any, timeout: float, interval: float = 0.1) -> float:
    """Poll `check()` until true; returns the monotonic time it first was."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def batches(lines: Sequence[str], size: int) -> list[tuple[bytes, list[str]]]:
    """Request bodies `{"events": [...]}` built ahead (no client JSON work while timing)."""
    out = []
    for start in range(0, len(lines), size):
        chunk = lines[start : start + size]
        ids = [json.loads(line)["event_id"] for line in chunk]
        out.append((('{"events":[' + ",".join(chunk) + "]}").encode(), ids))
    return out


def tasks_enqueued(lines: Sequence[str], size: int) -> int:
    """What the API sends: one process_patient task per patient with new events per POST."""
    patients = [json.loads(line)["patient_id"] for line in lines]
    return sum(len(set(patients[i : i + size])) for i in range(0, len(patients), size))


def queue_length(broker_url: str) -> int:
    client = redis.Redis.from_url(broker_url)
    try:
        return int(cast(int, client.llen(QUEUE)))
    finally:
        client.close()


def timelines(prefix: str, patients: int, per_patient: int, seed: int) -> list[str]:
    """Synthetic lines with their ids renamed (SYN-000001 -> PREFIX-000001)."""
    return [line.replace('"SYN-', f'"{prefix}-') for line in generate(patients, per_patient, seed)]


def by_patient(lines: Sequence[str]) -> dict[str, list[str]]:
    """Each patient's lines in clinical order (occurred_at; the generator's order on ties).
    The generator's own order is not quite clinical (a late assessment follows a dose)."""
    out: dict[str, list[tuple[dt.datetime, int, str]]] = {}
    for line in lines:
        event = json.loads(line)
        when = dt.datetime.fromisoformat(event["occurred_at"])
        number = int(event["event_id"].rsplit("-e", 1)[1])
        out.setdefault(event["patient_id"], []).append((when, number, line))
    return {patient: [line for *_, line in sorted(rows)] for patient, rows in out.items()}


def in_the_past(lines: Sequence[str], now: dt.datetime, days_before: int = 2) -> list[str]:
    """Each patient's timeline moved by whole days (clinic hours kept) to end `days_before` to
    `days_before` + 1 days before `now`. Long synthetic timelines run decades ahead, and the
    worker resumes a fold only when its clock (`now`) is past the last event: a timeline in
    the future would be refolded whole at every event, which no hospital's feed does."""
    events = [json.loads(line) for line in lines]
    last: dict[str, dt.datetime] = {}
    for event in events:
        when = dt.datetime.fromisoformat(event["occurred_at"])
        last[event["patient_id"]] = max(when, last.get(event["patient_id"], when))
    anchor = now - dt.timedelta(days=days_before)
    shift = {p: dt.timedelta(days=-math.ceil((t - anchor) / DAY)) for p, t in last.items()}
    out = []
    for event in events:
        when = dt.datetime.fromisoformat(event["occurred_at"]) + shift[event["patient_id"]]
        text = when.isoformat(timespec="seconds")
        event["occurred_at"] = text[:-6] + "Z" if text.endswith("+00:00") else text
        out.append(json.dumps(event, separators=(",", ":")))
    return out


def split_histories(lines: Sequence[str], history: int) -> tuple[list[str], list[list[str]]]:
    """The first `history` events of each patient (to load), and per patient the rest, every
    one of which is no earlier than the patient's loaded events (to send one at a time)."""
    loaded: list[str] = []
    tails: list[list[str]] = []
    for timeline in by_patient(lines).values():
        loaded += timeline[:history]
        tails.append(timeline[history:])
    return loaded, tails


def round_robin(tails: Sequence[Sequence[str]], count: int) -> list[str]:
    """Up to `count` lines, one patient after the other, each patient's in its own order."""
    out: list[str] = []
    depth = max((len(tail) for tail in tails), default=0)
    for position in range(depth):
        out += [tail[position] for tail in tails if position < len(tail)]
    return out[:count]


def interleaved(lines: Sequence[str], seed: int) -> list[str]:
    """The patients' lines mixed at random (seeded), each patient's kept in clinical order:
    what a feed sends, and what raises decisions (and alerts) as the events arrive."""
    timelines_ = list(by_patient(lines).values())
    turns = [index for index, timeline in enumerate(timelines_) for _ in timeline]
    random.Random(seed).shuffle(turns)
    taken = [0] * len(timelines_)
    out = []
    for index in turns:
        out.append(timelines_[index][taken[index]])
        taken[index] += 1
    return out


def post(http: httpx.Client, token: str, body: bytes) -> dict[str, Any]:
    response = http.post(
        "/v1/events",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    if response.status_code != 202:
        raise RuntimeError(f"POST /v1/events: {response.status_code} {response.text[:300]}")
    result: dict[str, Any] = response.json()
    return result


# --- phases ------------------------------------------------------------------------------


def phase_noop(run: Run, total: int) -> dict[str, Any]:
    broker = redis.Redis.from_url(run.broker_url)
    broker.delete(NOOP_COUNT, NOOP_FIRST, NOOP_LAST)
    app = noop_app(run.broker_url)
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for _ in range(total):
            app.send_task(NOOP_TASK, args=[total], queue=NOOP_QUEUE, producer=producer)
    enqueue_s = time.perf_counter() - started
    assert broker.llen(NOOP_QUEUE) == total, "the no-op queue does not hold every task"
    cpu_before = cpu_snapshot(run)
    worker = run.start(
        "noop-worker",
        [
            sys.executable,
            __file__,
            "noop-worker",
            "--broker",
            run.broker_url,
            "--log-level",
            run.args.log_level,
        ],
    )
    try:
        wait_until(
            "no-op tasks consumed",
            lambda: broker.get(NOOP_LAST) is not None or worker.process.poll() is not None,
            timeout=max(120, total / 50),
            interval=0.05,
        )
        if worker.process.poll() is not None:
            raise RuntimeError(f"the no-op worker exited; see {worker.log}")
        cpu = cpu_delta(cpu_before, cpu_snapshot(run))
    finally:
        run.stop(worker)
    stamps = [cast(bytes | None, broker.get(key)) for key in (NOOP_FIRST, NOOP_LAST, NOOP_COUNT)]
    first, last = float(stamps[0] or 0), float(stamps[1] or 0)
    count = int(stamps[2] or 0)
    return {
        "tasks": total,
        "consumed": count,
        "tasks_per_s": round((total - 1) / (last - first), 1),
        "consume_s": round(last - first, 2),
        "enqueue_tasks_per_s": round(total / enqueue_s, 1),
        "cpu_s": cpu,
    }


def phase_throughput(
    run: Run, http: httpx.Client, token: str, prefix: str, lines: list[str], batch: int
) -> dict[str, Any]:
    """POST every line in batches as fast as the API takes them (one client, one request at a
    time), then wait until every event is processed, and until the task queue is empty."""
    bodies = batches(lines, batch)
    conn = pg(run.db_name)
    _, rows_before = open_outbox(conn)
    progress: list[tuple[float, int]] = []  # (monotonic time, rows processed in this phase)
    stop = threading.Event()

    def poll() -> None:
        poller = pg(run.db_name)
        try:
            while not stop.is_set():
                open_rows, all_rows = open_outbox(poller)
                progress.append((time.monotonic(), all_rows - rows_before - open_rows))
                stop.wait(0.25)
        finally:
            poller.close()

    cpu_before = cpu_snapshot(run)
    poller = threading.Thread(target=poll, daemon=True)
    started = time.monotonic()
    poller.start()
    accepted = sent = posts = 0
    try:
        for body, ids in bodies:
            accepted += post(http, token, body)["accepted"]
            sent += len(ids)
            posts += 1
        posted = time.monotonic()
        timeout = max(120.0, sent / 20)
        done = wait_until(
            "every event processed",
            lambda: open_outbox(conn) == (0, rows_before + sent),
            timeout=timeout,
            interval=0.1,
        )
        cpu = cpu_delta(cpu_before, cpu_snapshot(run))
        queued_at_done = queue_length(run.broker_url)
        # The tasks still queued then are for patients already folded: each re-folds (no new
        # event) but must run before anything sent later. The pipeline is idle when they ran.
        idle = wait_until(
            "task queue empty", lambda: queue_length(run.broker_url) == 0, timeout=timeout
        )
        time.sleep(0.5)  # the last tasks in flight (prefetch 1: at most one per process)
        cpu_until_idle = cpu_delta(cpu_before, cpu_snapshot(run))
    finally:
        stop.set()
        poller.join(timeout=5)
    runs = task_runs(conn, prefix)
    decisions = conn.execute(
        "SELECT count(*) FROM decision WHERE patient_id LIKE %s", (prefix + "-%",)
    ).fetchone()
    dead = dead_letters(conn)
    conn.close()
    elapsed = done - started
    n = sent
    # the steady part: the slope between 20% and 80% processed
    low = next(((t, c) for t, c in progress if c >= 0.2 * n), progress[0])
    high = next(((t, c) for t, c in progress if c >= 0.8 * n), progress[-1])
    steady = (high[1] - low[1]) / (high[0] - low[0]) if high[0] > low[0] else float("nan")
    return {
        "events": n,
        "accepted": accepted,
        "batch": batch,
        "posts": posts,
        "elapsed_s": round(elapsed, 2),
        "events_per_s": round(n / elapsed, 1),
        "steady_events_per_s_20_80": round(steady, 1),
        "ingest_events_per_s": round(n / (posted - started), 1),
        "ingest_s": round(posted - started, 2),
        "tasks_enqueued": tasks_enqueued(lines, batch),
        "tasks_queued_when_all_processed": queued_at_done,
        "task_runs": runs,
        "events_per_task_run": round(n / runs, 2) if runs else None,
        "queue_empty_s": round(idle - started, 2),
        "events_per_s_until_queue_empty": round(n / (idle - started), 1),
        "decisions_stored": int(decisions[0]) if decisions else 0,
        "dead_letters": dead,
        "cpu_s": cpu,
        "cpu_ms_per_event": {k: round(v * 1000 / n, 2) for k, v in cpu.items()},
        "cpu_s_until_queue_empty": cpu_until_idle,
    }


def folded(conn: psycopg.Connection[Any], event_id: str) -> bool:
    """Whether the event's outbox row is processed (its fold committed)."""
    row = conn.execute(
        "SELECT o.processed_at IS NOT NULL FROM outbox o JOIN event e ON e.id = o.event_pk "
        "WHERE e.event_id = %s",
        (event_id,),
    ).fetchone()
    return bool(row and row[0])


def counts(conn: psycopg.Connection[Any], prefix: str) -> tuple[int, int]:
    """(decisions, alerts) stored so far for these patients."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM decision WHERE patient_id LIKE %(p)s), "
        "(SELECT count(*) FROM alert WHERE patient_id LIKE %(p)s)",
        {"p": prefix + "-%"},
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def phase_single(
    run: Run,
    http: httpx.Client,
    token: str,
    history: int,
    patients: int,
    count: int,
    seed: int,
    prefix: str = "",
) -> dict[str, Any]:
    """CPU per new event for patients whose timelines already hold `history` events: what a
    resumed fold costs (the target: about the same at 2,000 events as at 20). One event at a
    time, each folded before the next, so that each task run folds exactly one new event."""
    prefix = prefix or f"H{history}"
    lines = timelines(prefix, patients, history + math.ceil(count / patients), seed)
    lines = in_the_past(lines, dt.datetime.now(dt.UTC))
    loaded, tails = split_histories(lines, history)
    new = round_robin(tails, count)
    if len(new) < count:
        raise RuntimeError(f"{prefix}: {len(new)} later events, not {count}")
    conn = pg(run.db_name)
    started = time.monotonic()
    for body, _ in batches(loaded, run.args.batch):
        post(http, token, body)
    wait_until(
        f"{prefix}: history folded",
        lambda: open_outbox(conn)[0] == 0 and queue_length(run.broker_url) == 0,
        timeout=max(120.0, len(loaded) / 20),
    )
    load_s = time.monotonic() - started
    time.sleep(run.args.settle_s)  # the last task's ack, its log line
    decisions_before, alerts_before = counts(conn, prefix)
    runs_before = task_runs(conn, prefix)
    requests = [
        (('{"events":[' + line + "]}").encode(), json.loads(line)["event_id"]) for line in new
    ]
    load_start = load_1m()
    wall_ms: list[float] = []
    request_ms: list[float] = []
    before = cpu_snapshot(run)
    started = time.monotonic()
    for body, event_id in requests:
        sent = time.monotonic()
        if post(http, token, body)["accepted"] != 1:
            raise RuntimeError(f"{prefix}: an event was not accepted as new")
        request_ms.append((time.monotonic() - sent) * 1000)
        done = wait_until(
            f"{prefix}: a single event folded",
            functools.partial(folded, conn, event_id),
            timeout=30,
            interval=run.args.poll_ms / 1000,
        )
        wall_ms.append((done - sent) * 1000)
    wait_until("task queue empty", lambda: queue_length(run.broker_url) == 0, timeout=30)
    time.sleep(run.args.settle_s)
    after = cpu_snapshot(run)
    window_s = time.monotonic() - started
    # the idle baseline: the same processes, doing nothing, for as long
    time.sleep(window_s)
    idle_after = cpu_snapshot(run)
    load_end = load_1m()
    busy, idle = cpu_delta(before, after), cpu_delta(after, idle_after)
    decisions_after, alerts_after = counts(conn, prefix)
    runs = task_runs(conn, prefix) - runs_before
    conn.close()

    def per_event(name: str) -> dict[str, float]:
        gross = (after[name] - before[name]) * 1000 / count
        baseline = (idle_after[name] - after[name]) * 1000 / count
        return {
            "gross": round(gross, 3),
            "idle": round(baseline, 3),
            "net": round(gross - baseline, 3),
        }

    worker, api = per_event("worker"), per_event("api")
    return {
        "history": history,
        "patients": patients,
        "events": count,
        "loaded_events": len(loaded),
        "load_s": round(load_s, 2),
        "worker_cpu_ms_per_event": worker["net"],
        "api_cpu_ms_per_post": api["net"],
        "worker_cpu_ms": worker,
        "api_cpu_ms": api,
        "wall_p50_ms": round(percentile(wall_ms, 50), 1),
        "wall_p95_ms": round(percentile(wall_ms, 95), 1),
        "wall_max_ms": round(max(wall_ms), 1),
        "request_p50_ms": round(percentile(request_ms, 50), 1),
        "poll_interval_ms": run.args.poll_ms,
        "task_runs": runs,
        "decisions_new": decisions_after - decisions_before,
        "alerts_new": alerts_after - alerts_before,
        "window_s": round(window_s, 2),
        "load_avg_1m": [load_start, load_end],
        "cpu_s": busy,
        "idle_cpu_s": idle,
    }


def phase_histories(
    run: Run, http: httpx.Client, token: str, histories: Sequence[int]
) -> dict[str, Any]:
    """`phase_single` at each history size, and the worker's CPU ratio largest / smallest."""
    args = run.args
    # not counted: the first single-event task runs of the pool's processes (code paths the
    # batches did not take) would fall on the first history alone
    phase_single(run, http, token, min(histories), 1, 5, seed=args.seed + 99, prefix="HWARM")
    out: dict[str, Any] = {}
    for number, history in enumerate(histories):
        print(
            f"    history {history}: {args.single_patients} patients, "
            f"{args.single_events} single events ...",
            flush=True,
        )
        figures = phase_single(
            run, http, token, history, args.single_patients, args.single_events,
            seed=args.seed + 100 + number,
        )  # fmt: skip
        out[str(history)] = figures
        print(
            f"    worker {figures['worker_cpu_ms_per_event']} ms/event, api "
            f"{figures['api_cpu_ms_per_post']} ms/POST, wall p50 {figures['wall_p50_ms']} ms "
            f"(load {figures['load_avg_1m']})",
            flush=True,
        )
    smallest, largest = out[str(min(histories))], out[str(max(histories))]
    low = smallest["worker_cpu_ms_per_event"]
    ratio = largest["worker_cpu_ms_per_event"] / low if low > 0 else None
    return {
        "histories": out,
        "worker_cpu_ratio_largest_to_smallest": round(ratio, 3) if ratio is not None else None,
        "smallest": min(histories),
        "largest": max(histories),
    }


@dataclass
class SseParser:
    """Server-Sent Events frames from lines (the WHATWG rules the feed needs: `event`, `id`,
    `data` joined by newlines, comments; a blank line ends a frame)."""

    event: str = ""
    data: list[str] = field(default_factory=list)
    last_id: str | None = None
    comments: int = 0

    def feed(self, line: str) -> tuple[str, str] | None:
        """One line (without its end); (event type, data) when it ends a frame with data."""
        if not line:
            frame = (self.event or "message", "\n".join(self.data)) if self.data else None
            self.event, self.data = "", []
            return frame
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None


class AlertStream:
    """A real SSE client on `GET /v1/alerts/stream`, in a thread: the monotonic arrival time of
    every `event: alert` frame. It reconnects with Last-Event-ID when the stream ends (or is
    quiet for longer than the read timeout), as a browser does, and counts the reconnects."""

    def __init__(self, base_url: str, token: str, read_timeout_s: float = 2.0) -> None:
        self.base_url, self.token = base_url, token
        self.timeout = httpx.Timeout(10.0, read=read_timeout_s)
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.wall_offset = time.time() - time.monotonic()  # arrival times in the wall clock
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self.reconnects = 0
        self.failure: str | None = None
        self.thread = threading.Thread(target=self._run, name="sse-client", daemon=True)

    def __enter__(self) -> AlertStream:
        self.thread.start()
        if not self.connected.wait(15) or self.failure:
            self.stopping.set()
            raise RuntimeError(f"the alert stream did not open: {self.failure}")
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=15)

    def highest_id(self) -> int:
        with self.lock:
            return max((int(alert["id"]) for _, alert in self.received), default=0)

    def _run(self) -> None:
        parser = SseParser()
        params = httpx.QueryParams([("audience", audience) for audience in AUDIENCES])
        with httpx.Client(base_url=self.base_url, timeout=self.timeout, trust_env=False) as client:
            while not self.stopping.is_set():
                headers = {"Authorization": f"Bearer {self.token}"}
                if parser.last_id is not None:
                    headers["Last-Event-ID"] = parser.last_id
                try:
                    with client.stream(
                        "GET", "/v1/alerts/stream", params=params, headers=headers
                    ) as response:
                        if response.status_code != 200:
                            self.failure = f"GET /v1/alerts/stream: {response.status_code}"
                            self.connected.set()
                            return
                        for line in response.iter_lines():
                            frame = parser.feed(line)
                            if parser.comments:
                                self.connected.set()
                            if frame is not None and frame[0] == "alert":
                                arrived = time.monotonic()
                                with self.lock:
                                    self.received.append((arrived, json.loads(frame[1])))
                            if self.stopping.is_set():
                                return
                except httpx.TransportError:
                    pass  # a quiet stream's read timeout, or the stream ended: reconnect
                parser.event, parser.data = "", []
                if not self.stopping.is_set():
                    self.reconnects += 1


@dataclass(frozen=True)
class AlertSeen:
    """An alert frame as it arrived, with what the database says of its cause."""

    alert_id: int
    arrived: float  # monotonic
    patient_id: str
    kind: str
    trigger: str | None  # the decision's trigger event
    fold_events: tuple[str, ...]  # the events whose outbox rows the alert's fold processed
    created_at: float = 0.0  # epoch s: the alert's created_at, the clock its fold read at start


def match_alert(
    alert: AlertSeen,
    sent_at: Mapping[str, float],
    sent_by_patient: Mapping[str, Sequence[tuple[float, str]]],
) -> tuple[str, str] | None:
    """(how, event id): the POSTed event that caused the alert. Its decision's trigger when its
    fold processed that event; else the first-POSTed event of that fold; else (a `new` or
    `correction` alert only) the latest event POSTed for its patient before it arrived."""
    posted = [e for e in alert.fold_events if e in sent_at and sent_at[e] <= alert.arrived]
    if alert.trigger is not None and alert.trigger in posted:
        return "trigger", alert.trigger
    if posted:
        return "fold", min(posted, key=lambda e: sent_at[e])
    if alert.kind in ("new", "correction"):
        earlier = [
            (t, e) for t, e in sent_by_patient.get(alert.patient_id, ()) if t <= alert.arrived
        ]
        if earlier:
            return "patient", max(earlier)[1]
    return None


def alerts_seen(
    conn: psycopg.Connection[Any], received: Sequence[tuple[float, dict[str, Any]]]
) -> list[AlertSeen]:
    """The frames received, with each alert's decision trigger and its fold's events."""
    ids = [int(alert["id"]) for _, alert in received]
    rows = conn.execute(
        "SELECT a.id, a.patient_id, a.kind, d.body::json ->> 'trigger', "
        "ARRAY(SELECT e.event_id FROM outbox o JOIN event e ON e.id = o.event_pk "
        "      WHERE o.patient_id = a.patient_id AND o.processed_at = a.created_at), "
        "extract(epoch FROM a.created_at) "
        "FROM alert a LEFT JOIN decision d ON d.decision_id = a.decision_id "
        "WHERE a.id = ANY(%s)",
        (ids,),
    ).fetchall()
    found = {int(row[0]): row for row in rows}
    out = []
    for arrived, alert in received:
        row = found.get(int(alert["id"]))
        if row is None:
            continue
        out.append(
            AlertSeen(int(row[0]), arrived, row[1], row[2], row[3], tuple(row[4]), float(row[5]))
        )
    return out


def phase_latency(
    run: Run,
    http: httpx.Client,
    token: str,
    stream: AlertStream,
    lines: list[str],
    rate: float,
    batch: int,
    poll_s: float,
) -> dict[str, Any]:
    """Events at `rate` on a fixed schedule: POST -> decision stored, POST -> SSE alert."""
    bodies = batches(lines, batch)
    prefix = json.loads(lines[0])["patient_id"].split("-")[0]
    interval = batch / rate
    sent_at: dict[str, float] = {}
    sent_by_patient: dict[str, list[tuple[float, str]]] = {}
    patient_of = {e["event_id"]: e["patient_id"] for e in map(json.loads, lines)}
    seen_at: dict[str, float] = {}
    pending: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    request_ms: list[float] = []

    def poll() -> None:
        poller = pg(run.db_name)
        try:
            while not stop.is_set():
                with lock:
                    waiting = list(pending)
                if waiting:
                    rows = poller.execute(
                        "SELECT e.event_id FROM outbox o JOIN event e ON e.id = o.event_pk "
                        "WHERE o.processed_at IS NOT NULL AND e.event_id = ANY(%s)",
                        (waiting,),
                    ).fetchall()
                    now = time.monotonic()
                    with lock:
                        for (event_id,) in rows:
                            if event_id in pending:
                                pending.discard(event_id)
                                seen_at[event_id] = now
                stop.wait(poll_s)
        finally:
            poller.close()

    with stream.lock:
        frames_before = len(stream.received)
    load_start = load_1m()
    cpu_before = cpu_snapshot(run)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    started = time.monotonic()
    late = 0
    try:
        for k, (body, ids) in enumerate(bodies):
            due = started + k * interval
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                late += 1
            before = time.monotonic()
            with lock:
                for event_id in ids:
                    sent_at[event_id] = before
                    sent_by_patient.setdefault(patient_of[event_id], []).append((before, event_id))
                    pending.add(event_id)
            post(http, token, body)
            request_ms.append((time.monotonic() - before) * 1000)
        sending_s = time.monotonic() - started
        wait_until("steady-rate events processed", lambda: not pending, timeout=60, interval=0.05)
    finally:
        stop.set()
        poller.join(timeout=5)
    cpu = cpu_delta(cpu_before, cpu_snapshot(run))
    conn = pg(run.db_name)
    row = conn.execute(
        "SELECT count(*), coalesce(max(id), 0) FROM alert WHERE patient_id LIKE %s",
        (prefix + "-%",),
    ).fetchone()
    assert row is not None
    alerts_stored, last_alert = int(row[0]), int(row[1])
    wait_until("every alert on the stream", lambda: stream.highest_id() >= last_alert, timeout=30)
    load_end = load_1m()
    with stream.lock:
        frames = stream.received[frames_before:]
    ours = [(t, a) for t, a in frames if str(a.get("patient_id", "")).startswith(prefix + "-")]
    matched_by = {"trigger": 0, "fold": 0, "patient": 0}
    alert_ms: list[float] = []
    fold_to_frame_ms: list[float] = []
    unmatched = 0
    for alert in alerts_seen(conn, ours):
        fold_to_frame_ms.append((alert.arrived + stream.wall_offset - alert.created_at) * 1000)
        cause = match_alert(alert, sent_at, sent_by_patient)
        if cause is None:
            unmatched += 1
            continue
        matched_by[cause[0]] += 1
        alert_ms.append((alert.arrived - sent_at[cause[1]]) * 1000)
    observed = [(seen_at[i] - sent_at[i]) * 1000 for i in sent_at]
    db_rows = conn.execute(
        "SELECT extract(epoch FROM o.processed_at - o.created_at) * 1000 FROM outbox o "
        "JOIN event e ON e.id = o.event_pk WHERE e.patient_id LIKE %s",
        (prefix + "-%",),
    ).fetchall()
    runs = task_runs(conn, prefix)
    decisions = counts(conn, prefix)[0]
    conn.close()
    db_ms = [float(r[0]) for r in db_rows]
    return {
        "events": len(lines),
        "patients": len(sent_by_patient),
        "target_events_per_s": rate,
        "achieved_events_per_s": round(len(lines) / sending_s, 1),
        "batch": batch,
        "late_sends": late,
        "duration_s": round(sending_s, 1),
        "poll_interval_ms": round(poll_s * 1000, 1),
        **spread(observed, "decision_"),
        "db_p50_ms": round(percentile(db_ms, 50), 1),
        "db_p99_ms": round(percentile(db_ms, 99), 1),
        **spread(alert_ms, "alert_"),
        # the alert's fold's start (its created_at, the worker's wall clock) -> the frame read:
        # the fold and its commit, the push to the stream; a stream that misses its wake-up
        # waits for its next poll (MONITOR_STREAM_POLL_S, 1 s by default)
        **spread(fold_to_frame_ms, "fold_to_alert_"),
        "decisions_stored": decisions,
        "alerts_stored": alerts_stored,
        "alerts_received": len(ours),
        "alerts_matched": len(alert_ms),
        "alerts_matched_by": matched_by,
        "alerts_unmatched": unmatched,
        "alerts_of_other_patients": len(frames) - len(ours),
        "stream_reconnects": stream.reconnects,
        "task_runs": runs,
        "request_p50_ms": round(percentile(request_ms, 50), 1),
        "request_p99_ms": round(percentile(request_ms, 99), 1),
        "load_avg_1m": [load_start, load_end],
        "cpu_s": cpu,
    }


# --- main --------------------------------------------------------------------------------


def _alarm(_signum: int, _frame: Any) -> None:
    raise TimeoutError("the benchmark ran over --max-seconds")


@contextlib.contextmanager
def environment(args: argparse.Namespace, number: int = 1) -> Iterator[Run]:
    """A fresh database and a flushed Redis db; both cleaned up, processes stopped."""
    db_name = f"bench_pipeline_{os.getpid()}_{number}"
    broker_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{args.redis_db}"
    database_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{db_name}"
    logs = OUT / "bench-pipeline"
    logs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env |= {
        "MONITOR_DATABASE_URL": database_url,
        "MONITOR_BROKER_URL": broker_url,
        "MONITOR_AUDIT_KEY": "bench-pipeline-audit-key-0123456789abcdef",
        "MONITOR_LOG_LEVEL": args.log_level,
        "PYTHONPATH": str(ROOT),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    run = Run(args, db_name, broker_url, database_url, env, logs)
    broker = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=args.redis_db)
    broker.flushdb()
    with pg("postgres") as admin:
        admin.execute(f'CREATE DATABASE "{db_name}"')
    try:
        yield run
    finally:
        for started in list(run.started):
            run.stop(started)
        broker.flushdb()
        broker.close()
        with pg("postgres") as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def phase(name: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a phase; its figures get the 1-minute load average at its start and end."""
    start = load_1m()
    figures = action()
    figures.setdefault("load_avg_1m", [start, load_1m()])
    return figures


def bench(args: argparse.Namespace, number: int) -> dict[str, Any]:
    """One whole run, from scratch: its own database, a flushed Redis db, new processes."""
    with environment(args, number) as run:
        subprocess.run(
            run.monitor_command("migrate"), cwd=ROOT, env=run.env, check=True, timeout=120,
            capture_output=True,
        )  # fmt: skip

        def new_token(role: str, name: str) -> str:
            return subprocess.run(
                run.monitor_command("token", "create", "--role", role, "--name", name),
                cwd=ROOT, env=run.env, check=True, timeout=60, capture_output=True, text=True,
            ).stdout.strip()  # fmt: skip

        token, feed_token = new_token("ingest", "bench"), new_token("nurse", "bench-feed")

        print(f"1/4 no-op Celery baseline: {args.noop_tasks} tasks ...", flush=True)
        noop = phase("noop", lambda: phase_noop(run, args.noop_tasks))
        print(f"    {noop['tasks_per_s']} tasks/s (load {noop['load_avg_1m']})", flush=True)

        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        api = run.start("api", run.monitor_command("api", "--port", str(port)))
        worker = run.start("worker", run.monitor_command("worker", "--concurrency", "2"))
        http = httpx.Client(base_url=base_url, timeout=120, trust_env=False)

        def ready() -> bool:
            for started in (api, worker):
                if started.process.poll() is not None:
                    raise RuntimeError(f"{started.name} exited; see {started.log}")
            with contextlib.suppress(httpx.TransportError):
                return http.get("/readyz").status_code == 200
            return False

        wait_until("api ready", ready, timeout=60)
        conn = pg(run.db_name)
        warm = timelines("WARM", 20, args.events_per_patient, seed=1)
        for body, _ in batches(warm, 100):
            post(http, token, body)
        wait_until(
            "warm-up processed",
            lambda: open_outbox(conn)[0] == 0 and queue_length(run.broker_url) == 0,
            timeout=120,
        )
        conn.close()

        # Complete timelines (every event of each patient, shuffled), as a feed or an import
        # sends them; as many as it takes to keep the pipeline busy for --min-seconds.
        events = args.events or 12_000
        for attempt in range(1, 4):
            prefix = f"THR{attempt}"
            patients = max(1, events // args.events_per_patient)
            lines = timelines(prefix, patients, args.events_per_patient, seed=args.seed + attempt)
            print(
                f"2/4 sustained throughput: {len(lines)} events ({patients} patients), "
                f"batches of {args.batch} ...",
                flush=True,
            )
            throughput = phase(
                "throughput",
                functools.partial(phase_throughput, run, http, token, prefix, lines, args.batch),
            )
            elapsed = throughput["elapsed_s"]
            print(
                f"    {throughput['events_per_s']} events/s in {elapsed} s "
                f"(load {throughput['load_avg_1m']})",
                flush=True,
            )
            if args.events or elapsed >= args.min_seconds:
                break
            events = math.ceil(len(lines) * 1.25 * args.min_seconds / elapsed)
            print(f"    shorter than {args.min_seconds:g} s: again with {events} events")

        print(f"3/4 single-event CPU at histories {args.histories} ...", flush=True)
        single = phase("single", lambda: phase_histories(run, http, token, args.histories))

        latency: dict[str, Any] = {}
        for number_, rate in enumerate(args.rates):
            steady_events = int(rate * args.duration)
            prefix = f"L{number_ + 1}"
            generated = timelines(
                prefix,
                max(1, steady_events // args.events_per_patient),
                args.events_per_patient,
                seed=args.seed + 1 + number_,
            )
            lines = in_the_past(generated, dt.datetime.now(dt.UTC))
            if args.latency_order == "clinical":
                lines = interleaved(lines, seed=args.seed + number_)
            print(
                f"4/4 latency: {len(lines)} events at {rate:g}/s, SSE client open ...", flush=True
            )
            with AlertStream(base_url, feed_token) as stream:
                figures = phase_latency(
                    run, http, token, stream, lines, rate, args.steady_batch, args.poll_ms / 1000
                )
            latency[f"{rate:g}"] = figures
            print(
                f"    decision p50 {figures['decision_p50_ms']} ms, p99 "
                f"{figures['decision_p99_ms']} ms; alert p50 {figures['alert_p50_ms']} ms, p99 "
                f"{figures['alert_p99_ms']} ms ({figures['alerts_matched']} alerts matched, "
                f"{figures['alerts_unmatched']} not; load {figures['load_avg_1m']})",
                flush=True,
            )
        http.close()

    ratio = throughput["events_per_s"] / noop["tasks_per_s"]
    return {
        "run": number,
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        "noop": noop,
        "throughput": throughput,
        "single_event": single,
        "latency": latency,
        "ratio_pipeline_to_noop": round(ratio, 3),
    }


# --- figures across runs, the targets ------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A headline figure: where it is in a run's result, its target, the load beside it."""

    label: str
    path: str  # dotted, into a run's result
    unit: str
    load: str  # dotted path of the phase's [start, end] 1-minute load average
    target: tuple[str, float] | None = None  # ("<=", 3.0)


def lookup(result: Mapping[str, Any], path: str) -> Any:
    value: Any = result
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def figures(histories: Sequence[int], rates: Sequence[float]) -> list[Figure]:
    """The issue's figures (item 5), each with its target where the issue sets one."""
    out = [
        Figure("no-op Celery rate", "noop.tasks_per_s", "tasks/s", "noop.load_avg_1m"),
        Figure("batch throughput", "throughput.events_per_s", "events/s",
               "throughput.load_avg_1m"),
        Figure("throughput / no-op", "ratio_pipeline_to_noop", "x", "throughput.load_avg_1m",
               (">=", TARGET_RATIO)),
    ]  # fmt: skip
    for history in histories:
        at = f"single_event.histories.{history}"
        load = f"{at}.load_avg_1m"
        out += [
            Figure(f"worker CPU/event @{history}", f"{at}.worker_cpu_ms_per_event", "ms", load,
                   ("<=", TARGET_CPU_MS)),
            Figure(f"API CPU/POST @{history}", f"{at}.api_cpu_ms_per_post", "ms", load,
                   ("<=", TARGET_CPU_MS)),
            Figure(f"POST->folded p50 @{history}", f"{at}.wall_p50_ms", "ms", load),
            Figure(f"POST->folded p95 @{history}", f"{at}.wall_p95_ms", "ms", load),
        ]  # fmt: skip
    if len(histories) > 1:
        out.append(
            Figure(
                f"worker CPU @{max(histories)} / @{min(histories)}",
                "single_event.worker_cpu_ratio_largest_to_smallest",
                "x",
                f"single_event.histories.{max(histories)}.load_avg_1m",
                ("<=", TARGET_CPU_RATIO),
            )
        )
    for rate in rates:
        at = f"latency.{rate:g}"
        load = f"{at}.load_avg_1m"
        judged = rate == TARGET_RATE
        for name in ("p50", "p95", "p99", "max"):
            decision_target = ("<=", TARGET_DECISION_P99_MS) if judged and name == "p99" else None
            alert_target = ("<=", TARGET_ALERT_P99_MS) if judged and name == "p99" else None
            out.append(Figure(f"POST->decision {name} @{rate:g}/s", f"{at}.decision_{name}_ms",
                              "ms", load, decision_target))  # fmt: skip
            out.append(Figure(f"POST->SSE alert {name} @{rate:g}/s", f"{at}.alert_{name}_ms",
                              "ms", load, alert_target))  # fmt: skip
        out += [
            Figure(f"fold->SSE alert p99 @{rate:g}/s", f"{at}.fold_to_alert_p99_ms", "ms", load),
            Figure(f"fold->SSE alert max @{rate:g}/s", f"{at}.fold_to_alert_max_ms", "ms", load),
            Figure(f"alerts matched @{rate:g}/s", f"{at}.alerts_matched", "", load),
            Figure(f"alerts unmatched @{rate:g}/s", f"{at}.alerts_unmatched", "", load),
            Figure(f"achieved rate @{rate:g}/s", f"{at}.achieved_events_per_s", "events/s", load),
            Figure(f"request p99 @{rate:g}/s", f"{at}.request_p99_ms", "ms", load),
            Figure(f"late sends @{rate:g}/s", f"{at}.late_sends", "", load),
        ]
    return out


def numbers(tree: Any, path: str = "") -> dict[str, float]:
    """Every number in a result, by dotted path (lists by index; booleans left out)."""
    if isinstance(tree, bool) or tree is None:
        return {}
    if isinstance(tree, int | float):
        return {path: float(tree)}
    items: Sequence[tuple[Any, Any]] = ()
    if isinstance(tree, Mapping):
        items = list(tree.items())
    elif isinstance(tree, list | tuple):
        items = list(enumerate(tree))
    out: dict[str, float] = {}
    for key, value in items:
        out |= numbers(value, f"{path}.{key}" if path else str(key))
    return out


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """min/median/max across the runs of every number that every run has."""
    per_run = [numbers(result) for result in runs]
    common = [path for path in per_run[0] if all(path in other for other in per_run[1:])]
    return {
        path: {
            "min": min(values),
            "median": round(statistics.median(values), 3),
            "max": max(values),
        }
        for path in common
        for values in [[other[path] for other in per_run]]
    }


def met(value: Any, target: tuple[str, float]) -> bool | None:
    """Whether a figure meets its target; None when there is no figure (e.g. no alert)."""
    if not isinstance(value, int | float):
        return None
    operator, bound = target
    return value >= bound if operator == ">=" else value <= bound


def verdicts(runs: Sequence[Mapping[str, Any]], wanted: Sequence[Figure]) -> list[dict[str, Any]]:
    """Per headline figure: min/median/max, its target, met (by the median; and in how many
    runs), and the load average beside it (each run's phase start-end)."""
    rows = []
    for figure in wanted:
        values = [v for r in runs if isinstance(v := lookup(r, figure.path), int | float)]
        row: dict[str, Any] = {
            "figure": figure.label,
            "path": figure.path,
            "unit": figure.unit,
            "min": min(values) if values else None,
            "median": round(statistics.median(values), 3) if values else None,
            "max": max(values) if values else None,
            "load_avg_1m": [lookup(r, figure.load) for r in runs],
        }
        if figure.target is not None:
            row["target"] = f"{figure.target[0]} {figure.target[1]:g}"
            row["met"] = met(row["median"], figure.target)
            row["met_in_runs"] = sum(bool(met(lookup(r, figure.path), figure.target)) for r in runs)
        rows.append(row)
    return rows


def table(rows: Sequence[Mapping[str, Any]], runs: int) -> list[str]:
    """The verdicts as text: one line per figure."""

    def text(value: Any) -> str:
        return "-" if value is None else f"{value:g}"

    def load(value: Any) -> str:
        return "-" if not value else "-".join(f"{v:g}" for v in value)

    lines = [
        f"{'figure':<34} {'min':>9} {'median':>9} {'max':>9} {'unit':<9} {'target':<9} "
        f"{'met':<12} load 1m (start-end, per run)"
    ]
    for row in rows:
        verdict = ""
        if "target" in row:
            verdict = {True: "met", False: "NOT met", None: "no figure"}[row["met"]]
            verdict += f" {row['met_in_runs']}/{runs}"
        loads = ", ".join(load(v) for v in row["load_avg_1m"])
        lines.append(
            f"{row['figure']:<34} {text(row['min']):>9} {text(row['median']):>9} "
            f"{text(row['max']):>9} {row['unit']:<9} {row.get('target', ''):<9} {verdict:<12} "
            f"{loads}"
        )
    return lines


def report(result: dict[str, Any]) -> None:
    last = result["runs"][-1]
    noop, thr = last["noop"], last["throughput"]
    print()
    print(f"last run ({len(result['runs'])} in all):")
    print(
        f"  pipeline throughput {thr['events_per_s']} events/s ({thr['events']} events, "
        f"{thr['elapsed_s']} s; steady 20-80%: {thr['steady_events_per_s_20_80']}/s; ingest "
        f"alone {thr['ingest_events_per_s']}/s); {thr['events_per_s_until_queue_empty']} "
        f"events/s until the task queue was empty ({thr['tasks_enqueued']} tasks enqueued, "
        f"{thr['tasks_queued_when_all_processed']} still queued when every event was "
        f"processed); no-op {noop['tasks_per_s']} tasks/s"
    )
    for rate, lat in last["latency"].items():
        print(
            f"  latency at {rate}/s: {lat['events']} events, {lat['patients']} patients; "
            f"{lat['decisions_stored']} decisions, {lat['alerts_stored']} alerts stored, "
            f"{lat['alerts_received']} received on the stream, {lat['alerts_matched']} matched "
            f"({lat['alerts_matched_by']}), {lat['alerts_unmatched']} not; db created->processed "
            f"p50 {lat['db_p50_ms']} ms, p99 {lat['db_p99_ms']} ms; "
            f"{lat['stream_reconnects']} stream reconnects"
        )
    for history, single in last["single_event"]["histories"].items():
        print(
            f"  history {history}: worker {single['worker_cpu_ms']} ms/event, api "
            f"{single['api_cpu_ms']} ms/POST (gross, idle, net); {single['decisions_new']} "
            f"decisions, {single['alerts_new']} alerts from {single['events']} events in "
            f"{single['task_runs']} task runs"
        )
    print("  CPU ms per event in the throughput phase:")
    for name, ms in thr["cpu_ms_per_event"].items():
        print(f"    {name:<30} {ms:>7.2f}")
    print()
    print(
        f"summary over {len(result['runs'])} run(s) (min/median/max; met: by the median, and "
        "in how many runs):"
    )
    for line in table(result["verdicts"], len(result["runs"])):
        print("  " + line)
    print(json.dumps(result, separators=(",", ":")))


def numbers_list(text: str, kind: Callable[[str], Any]) -> list[Any]:
    """`20,200,2000` -> [20, 200, 2000] (argparse type)."""
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list: {text!r}") from None
    if not values or any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(f"positive values wanted: {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "noop-worker"])
    parser.add_argument("--broker", help="noop-worker: the broker URL")
    parser.add_argument("--redis-db", type=int, default=13, help="flushed before and after")
    parser.add_argument("--runs", type=int, default=1, help="the whole bench, this many times")
    parser.add_argument("--noop-tasks", type=int, default=5_000)
    parser.add_argument(
        "--events", type=int, default=0, help="throughput phase: exactly this many events"
    )
    parser.add_argument(
        "--min-seconds", type=float, default=20.0, help="throughput phase: at least this long"
    )
    parser.add_argument("--events-per-patient", type=int, default=20)
    parser.add_argument("--batch", type=int, default=250, help="events per POST (throughput)")
    parser.add_argument(
        "--histories",
        type=functools.partial(numbers_list, kind=int),
        default=[20, 200, 2000],
        help="single-event phase: events already in each patient's timeline",
    )
    parser.add_argument(
        "--single-patients", type=int, default=5, help="single-event phase: patients per history"
    )
    parser.add_argument(
        "--single-events", type=int, default=100, help="single-event phase: events per history"
    )
    parser.add_argument(
        "--settle-s", type=float, default=0.3, help="single-event phase: after the last fold"
    )
    parser.add_argument(
        "--rates",
        type=functools.partial(numbers_list, kind=float),
        default=[50.0, 100.0],
        help="latency phases: events/s",
    )
    parser.add_argument("--duration", type=float, default=30.0, help="s (each latency phase)")
    parser.add_argument("--steady-batch", type=int, default=10, help="events per POST (latency)")
    parser.add_argument(
        "--latency-order",
        default="clinical",
        choices=["clinical", "shuffled"],
        help="latency phases: each patient's events in clinical order (patients interleaved), "
        "or shuffled across and within patients (what the bench sent before issue 17)",
    )
    parser.add_argument("--poll-ms", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    parser.add_argument("--max-seconds", type=int, default=900, help="stop a run after")
    parser.add_argument("--quick", action="store_true", help="small figures (a smoke run)")
    args = parser.parse_args(argv)
    if args.mode == "noop-worker":
        return run_noop_worker(args.broker, concurrency=2, log_level=args.log_level)
    if args.quick:
        args.noop_tasks, args.events, args.duration = 1_000, 2_000, 5.0
        args.single_patients, args.single_events = 2, 10
    signal.signal(signal.SIGALRM, _alarm)
    runs = []
    for number in range(1, args.runs + 1):
        if args.runs > 1:
            print(f"=== run {number} of {args.runs}", flush=True)
        signal.alarm(args.max_seconds)
        try:
            runs.append(bench(args, number))
        finally:
            signal.alarm(0)
    result = {
        "benchmark": "pipeline",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "events_per_patient": args.events_per_patient,
        "log_level": args.log_level,
        "quick": args.quick,
        "latency_order": args.latency_order,
        "targets": {
            "ratio_pipeline_to_noop": f">= {TARGET_RATIO}",
            "worker_cpu_ratio_largest_to_smallest": f"<= {TARGET_CPU_RATIO}",
            "single_event_cpu_ms": f"<= {TARGET_CPU_MS} (worker, api)",
            f"decision_p99_ms at {TARGET_RATE:g}/s": f"<= {TARGET_DECISION_P99_MS}",
            f"alert_p99_ms at {TARGET_RATE:g}/s": f"<= {TARGET_ALERT_P99_MS}",
        },
        "verdicts": verdicts(runs, figures(args.histories, args.rates)),
        "summary": summarize(runs),
        "runs": runs,
    }
    report(result)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
