"""Pipeline benchmark (issue 3, item 8): HTTP ingest -> Celery on Redis -> stored decisions.

    .venv/bin/python tests/perf/bench_pipeline.py [--quick]

A script, not a pytest test. On the local PostgreSQL (a fresh database, dropped at the end) and
Redis (a dedicated db number, flushed before and after), it starts real processes and measures:

1. the no-op baseline: a Celery app with the service's own settings (`create_celery`: JSON,
   acks_late, reject_on_worker_lost, prefetch 1) and a task that only INCRs a Redis counter, in
   its own `worker --concurrency 2` process on the same broker. The queue is filled with N
   tasks first, then the worker starts; the rate is (N - 1) / (time of the N-th task - time of
   the first), both stamped by the tasks themselves;
2. sustained pipeline throughput: complete synthetic timelines (monitor/synthetic.py: 20
   events per patient: enrolment, assessments, doses, treatment changes; shuffled across
   patients) POSTed in batches of 250 by one client to `python -m monitor api`, processed by
   `python -m monitor worker --concurrency 2`; events/s from the first POST until no outbox row
   is open (every event folded, its decisions stored). Repeated with more events until that
   takes at least 20 s. Also reported: the time until the task queue is empty (tasks queued for
   patients that an earlier task already folded), and how many task runs there were;
3. latency at a steady rate (default 100 events/s for 30 s, small batches on a fixed
   schedule): per event, from just before its POST until a poller sees its outbox row
   processed (p50/p99; the poll interval bounds the error), and from the database's own
   timestamps (outbox.created_at -> processed_at: commit of the ingest to the start of the task
   run that folded it);
4. the ratio pipeline / no-op (target >= 0.5), CPU seconds per component and phase (from
   /proc), then one JSON line with every figure (the last line of the output).

Bounded: every wait has a timeout and the whole run an alarm; all traffic goes to 127.0.0.1;
the processes it started are stopped (their process groups) at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pathlib
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

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
TARGET_RATIO = 0.5
OUT = ROOT / "tests" / "perf" / "out"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the no-op Celery task (also run as its own worker process: `noop-worker`) ---------------


def noop_app(broker_url: str) -> Any:
    """The service's Celery settings (create_celery), plus a task that only counts itself."""
    app = create_celery(Settings(broker_url=broker_url, database_url="sqlite://"))
    client: list[redis.Redis] = []  # one per worker process, made after the fork

    @app.task(name=NOOP_TASK, acks_late=True, reject_on_worker_lost=True)
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
    from monitor.runtime import configure_logging

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
    """(parent pid, CPU seconds) of a live process, from /proc."""
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


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
        return int(client.llen(QUEUE))
    finally:
        client.close()


def timelines(prefix: str, patients: int, per_patient: int, seed: int) -> list[str]:
    """Synthetic lines with their ids renamed (SYN-000001 -> PREFIX-000001)."""
    return [line.replace('"SYN-', f'"{prefix}-') for line in generate(patients, per_patient, seed)]


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
    first, last = float(broker.get(NOOP_FIRST) or 0), float(broker.get(NOOP_LAST) or 0)
    count = int(broker.get(NOOP_COUNT) or 0)
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


def phase_latency(
    run: Run,
    http: httpx.Client,
    token: str,
    lines: list[str],
    rate: float,
    batch: int,
    poll_s: float,
) -> dict[str, Any]:
    bodies = batches(lines, batch)
    interval = batch / rate
    sent_at: dict[str, float] = {}
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
                    pending.add(event_id)
            post(http, token, body)
            request_ms.append((time.monotonic() - before) * 1000)
        sending_s = time.monotonic() - started
        wait_until("steady-rate events processed", lambda: not pending, timeout=60, interval=0.05)
    finally:
        stop.set()
        poller.join(timeout=5)
    cpu = cpu_delta(cpu_before, cpu_snapshot(run))
    observed = [(seen_at[i] - sent_at[i]) * 1000 for i in sent_at]
    conn = pg(run.db_name)
    prefix = json.loads(lines[0])["patient_id"].split("-")[0] + "-%"
    db_rows = conn.execute(
        "SELECT extract(epoch FROM o.processed_at - o.created_at) * 1000 FROM outbox o "
        "JOIN event e ON e.id = o.event_pk WHERE e.patient_id LIKE %s",
        (prefix,),
    ).fetchall()
    runs = task_runs(conn, prefix.removesuffix("-%"))
    conn.close()
    db_ms = [float(r[0]) for r in db_rows]
    return {
        "events": len(lines),
        "target_events_per_s": rate,
        "achieved_events_per_s": round(len(lines) / sending_s, 1),
        "batch": batch,
        "late_sends": late,
        "duration_s": round(sending_s, 1),
        "poll_interval_ms": round(poll_s * 1000, 1),
        "p50_ms": round(percentile(observed, 50), 1),
        "p99_ms": round(percentile(observed, 99), 1),
        "max_ms": round(max(observed), 1),
        "db_p50_ms": round(percentile(db_ms, 50), 1),
        "db_p99_ms": round(percentile(db_ms, 99), 1),
        "task_runs": runs,
        "request_p50_ms": round(percentile(request_ms, 50), 1),
        "request_p99_ms": round(percentile(request_ms, 99), 1),
        "cpu_s": cpu,
    }


# --- main --------------------------------------------------------------------------------


def _alarm(_signum: int, _frame: Any) -> None:
    raise TimeoutError("the benchmark ran over --max-seconds")


@contextlib.contextmanager
def environment(args: argparse.Namespace) -> Iterator[Run]:
    """A fresh database and a flushed Redis db; both cleaned up, processes stopped."""
    db_name = f"bench_pipeline_{os.getpid()}"
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


def bench(args: argparse.Namespace) -> dict[str, Any]:
    with environment(args) as run:
        subprocess.run(
            run.monitor_command("migrate"), cwd=ROOT, env=run.env, check=True, timeout=120,
            capture_output=True,
        )  # fmt: skip
        token = subprocess.run(
            run.monitor_command("token", "create", "--role", "ingest", "--name", "bench"),
            cwd=ROOT, env=run.env, check=True, timeout=60, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip

        print(f"1/3 no-op Celery baseline: {args.noop_tasks} tasks ...", flush=True)
        noop = phase_noop(run, args.noop_tasks)
        print(f"    {noop['tasks_per_s']} tasks/s", flush=True)

        port = free_port()
        api = run.start("api", run.monitor_command("api", "--port", str(port)))
        worker = run.start("worker", run.monitor_command("worker", "--concurrency", "2"))
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120, trust_env=False)

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
                f"2/3 sustained throughput: {len(lines)} events ({patients} patients), "
                f"batches of {args.batch} ...",
                flush=True,
            )
            throughput = phase_throughput(run, http, token, prefix, lines, args.batch)
            elapsed = throughput["elapsed_s"]
            print(f"    {throughput['events_per_s']} events/s in {elapsed} s", flush=True)
            if args.events or elapsed >= args.min_seconds:
                break
            events = math.ceil(len(lines) * 1.25 * args.min_seconds / elapsed)
            print(f"    shorter than {args.min_seconds:g} s: again with {events} events")

        steady_events = int(args.rate * args.duration)
        lines = timelines(
            "LAT",
            max(1, steady_events // args.events_per_patient),
            args.events_per_patient,
            seed=args.seed + 1,
        )
        print(f"3/3 latency: {len(lines)} events at {args.rate:g}/s ...", flush=True)
        latency = phase_latency(
            run, http, token, lines, args.rate, args.steady_batch, args.poll_ms / 1000
        )
        print(f"    p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms", flush=True)
        http.close()

    ratio = throughput["events_per_s"] / noop["tasks_per_s"]
    return {
        "benchmark": "pipeline",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        "events_per_patient": args.events_per_patient,
        "log_level": args.log_level,
        "noop": noop,
        "throughput": throughput,
        "latency": latency,
        "ratio_pipeline_to_noop": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "target_met": ratio >= TARGET_RATIO,
    }


def report(result: dict[str, Any]) -> None:
    noop, thr, lat = result["noop"], result["throughput"], result["latency"]
    print()
    print(f"no-op Celery task     {noop['tasks_per_s']:>9.1f} tasks/s  ({noop['tasks']} tasks)")
    print(
        f"pipeline throughput   {thr['events_per_s']:>9.1f} events/s ({thr['events']} events, "
        f"{thr['elapsed_s']} s; steady 20-80%: {thr['steady_events_per_s_20_80']}/s; "
        f"ingest alone {thr['ingest_events_per_s']}/s)"
    )
    print(
        f"                      {thr['events_per_s_until_queue_empty']:>9.1f} events/s until the "
        f"task queue was empty ({thr['queue_empty_s']} s; {thr['tasks_enqueued']} tasks "
        f"enqueued, {thr['tasks_queued_when_all_processed']} still queued when every event "
        f"was processed)"
    )
    verdict = "met" if result["target_met"] else "NOT met"
    print(
        f"ratio pipeline/no-op  {result['ratio_pipeline_to_noop']:>9.3f}  "
        f"(target >= {result['target_ratio']}: {verdict})"
    )
    print(
        f"latency at {lat['target_events_per_s']:g}/s     p50 {lat['p50_ms']} ms, "
        f"p99 {lat['p99_ms']} ms (POST -> processed, poll {lat['poll_interval_ms']} ms); "
        f"db created->processed p50 {lat['db_p50_ms']} ms, p99 {lat['db_p99_ms']} ms"
    )
    print("CPU ms per event in the throughput phase:")
    for name, ms in thr["cpu_ms_per_event"].items():
        print(f"  {name:<30} {ms:>7.2f}")
    print(json.dumps(result, separators=(",", ":")))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "noop-worker"])
    parser.add_argument("--broker", help="noop-worker: the broker URL")
    parser.add_argument("--redis-db", type=int, default=12, help="flushed before and after")
    parser.add_argument("--noop-tasks", type=int, default=5_000)
    parser.add_argument(
        "--events", type=int, default=0, help="throughput phase: exactly this many events"
    )
    parser.add_argument(
        "--min-seconds", type=float, default=20.0, help="throughput phase: at least this long"
    )
    parser.add_argument("--events-per-patient", type=int, default=20)
    parser.add_argument("--batch", type=int, default=250, help="events per POST (throughput)")
    parser.add_argument("--rate", type=float, default=100.0, help="events/s (latency phase)")
    parser.add_argument("--duration", type=float, default=30.0, help="s (latency phase)")
    parser.add_argument("--steady-batch", type=int, default=10, help="events per POST (latency)")
    parser.add_argument("--poll-ms", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    parser.add_argument("--max-seconds", type=int, default=900, help="stop everything after")
    parser.add_argument("--quick", action="store_true", help="small figures (a smoke run)")
    args = parser.parse_args(argv)
    if args.mode == "noop-worker":
        return run_noop_worker(args.broker, concurrency=2, log_level=args.log_level)
    if args.quick:
        args.noop_tasks, args.events, args.duration = 1_000, 2_000, 5.0
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(args.max_seconds)
    try:
        result = bench(args)
    finally:
        signal.alarm(0)
    report(result)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
