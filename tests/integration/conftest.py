"""Integration fixtures: the production topology as real processes on real servers.

Each test module gets a fresh PostgreSQL database (`bipn_it_<random>` on the machine's server,
dropped afterwards) and a Redis db number of its own (claimed while empty, flushed afterwards;
db 0 and the suite's REDIS_URL db are never used). A `Stack` runs `python -m monitor migrate`,
creates an admin token, and starts `api`, `worker --concurrency 1` and `scheduler` processes with
subprocess, each in its own process group (so a kill reaches Celery's child too). The service
clock is frozen at FIXED_NOW, so decisions are deterministic. Teardown always kills the groups.

When PostgreSQL or Redis is unreachable the tests skip, or fail when CI is set
(`require_server`). Fault tests also start throwaway servers (`redis-server`, a PostgreSQL
cluster made with initdb) on free ports; the machine's own servers are never stopped.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import os
import pathlib
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from policies import builtin_pack, evaluate
from policies.events import EVENT_ADAPTER
from tests.conftest import FIXED_NOW, PG_URL, REDIS_URL, require_server

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXED_NOW_TEXT = FIXED_NOW.isoformat().replace("+00:00", "Z")
PG = make_url(PG_URL)
_REDIS = urlsplit(REDIS_URL)
REDIS_HOST = _REDIS.hostname or "127.0.0.1"
REDIS_PORT = _REDIS.port or 6379
SUITE_REDIS_DB = int((_REDIS.path or "/0").lstrip("/") or 0)
CLAIM_KEY = "bipn-it:claim"

# Settings of every process started here (the tests' choice, not the service defaults).
SERVICE_ENV = {
    "MONITOR_FIXED_NOW": FIXED_NOW_TEXT,
    "MONITOR_TASK_RETRY_BACKOFF_S": "0.5",
    "MONITOR_TASK_RETRY_BACKOFF_MAX_S": "4",
    "MONITOR_SCHEDULER_INTERVAL_S": "1",
    "MONITOR_OUTBOX_REDRIVE_AFTER_S": "2",
    "MONITOR_LOG_LEVEL": "INFO",
    # every decision with an audience alerts, as the suite was written for (issue 14 made the
    # informational ones quiet by default)
    "MONITOR_ALERT_INFO_DECISIONS": "true",
    "MONITOR_AUDIT_KEY": "integration-tests-audit-key-0123456789abcdef",
    # the tests' webhook receivers listen on loopback: an on-premise receiver
    "MONITOR_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.0/8"]',
}

T = TypeVar("T")


# --- waiting ------------------------------------------------------------------------------


def wait_until(
    check: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except ignore:
            value = None  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{diagnostics()}" if diagnostics is not None else ""
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- processes ----------------------------------------------------------------------------


def _live_group_members(pgid: int) -> list[int]:
    """Processes of a process group that are not zombies (Linux /proc)."""
    members = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


class ManagedProcess:
    """A child in its own process group (session), output to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        cwd: pathlib.Path,
        log_dir: pathlib.Path,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        suffix = 1
        while self.log_path.exists():
            suffix += 1
            self.log_path = log_dir / f"{name}-{suffix}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.popen.pid
        self._terminated = False

    def alive(self) -> bool:
        return self.popen.poll() is None

    def group_gone(self) -> bool:
        gone = not _live_group_members(self.pgid)
        self.popen.poll()  # reap the leader (after the look: a leader that exits between the
        # two is a zombie, so gone, and its return code is set here)
        return gone

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)

    def terminate(self) -> None:
        """SIGTERM to the group, no wait (`stop` waits): lets several shut down at once."""
        self._terminated = True
        self.signal_group(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the whole group (the Celery worker and its pool child) and wait for it."""
        self.signal_group(signal.SIGKILL)
        wait_until(self.group_gone, 10, f"{self.name} to die after SIGKILL")

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (if `terminate` did not already), a bounded wait, then SIGKILL: never leaves
        anything running."""
        if not self.group_gone():
            if not self._terminated:
                self.terminate()
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and not self.group_gone():
                time.sleep(0.05)
            if not self.group_gone():
                self.signal_group(signal.SIGKILL)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not self.group_gone():
                    time.sleep(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=1)
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 25) -> str:
        return f"--- {self.name} ({self.log_path}) ---\n" + "\n".join(
            self.output().splitlines()[-lines:]
        )


def child_env(**settings: str) -> dict[str, str]:
    """The environment of a child: no inherited MONITOR_* settings, then `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def run_monitor(
    args: Sequence[str], env: dict[str, str], cwd: pathlib.Path, timeout: float = 120
) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"monitor {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


# --- the production topology --------------------------------------------------------------


@dataclass
class Stack:
    """One deployment: a database, a broker, and the processes started against them."""

    name: str
    database_url: str
    broker_url: str
    policy: str
    workdir: pathlib.Path
    log_dir: pathlib.Path
    extra_env: dict[str, str] = field(default_factory=dict)
    token: str = ""
    api_url: str = ""
    accepted: int = 0  # events the tests had accepted so far
    processes: list[ManagedProcess] = field(default_factory=list)
    workers: list[ManagedProcess] = field(default_factory=list)
    webhook_workers: list[ManagedProcess] = field(default_factory=list)
    metrics_urls: list[str] = field(default_factory=list)
    _api: ManagedProcess | None = None
    _scheduler: ManagedProcess | None = None

    @property
    def api(self) -> ManagedProcess:
        assert self._api is not None, "start() the stack first"
        return self._api

    @property
    def scheduler(self) -> ManagedProcess:
        assert self._scheduler is not None, "start(scheduler=True) the stack first"
        return self._scheduler

    @property
    def env(self) -> dict[str, str]:
        # extra_env overrides the suite's SERVICE_ENV defaults
        return child_env(
            MONITOR_DATABASE_URL=self.database_url,
            MONITOR_BROKER_URL=self.broker_url,
            MONITOR_POLICY=self.policy,
            **{**SERVICE_ENV, **self.extra_env},
        )

    def monitor(self, *args: str) -> str:
        return run_monitor(args, self.env, self.workdir)

    def prepare(self) -> None:
        self.monitor("migrate")
        self.token = self.monitor("token", "create", "--role", "admin").strip()
        assert re.fullmatch(r"\S{20,}", self.token), self.token

    def spawn(self, role: str, *args: str) -> ManagedProcess:
        proc = ManagedProcess(
            f"{self.name}-{role}",
            [sys.executable, "-m", "monitor", *args],
            self.env,
            self.workdir,
            self.log_dir,
        )
        self.processes.append(proc)
        return proc

    def start(
        self,
        *,
        workers: int = 2,
        scheduler: bool = False,
        metrics: bool = False,
        webhook_workers: int = 1,
    ) -> None:
        """Start api + workers (+ scheduler) together, then wait until each is ready. With
        `metrics`, each worker serves its counters on a port of its own (`metrics_urls`).
        Webhook deliveries have workers of their own (`worker --queues webhooks`), as in
        production; they are not in `workers` (the clinical ones)."""
        port = free_port()
        api = self._api = self.spawn("api", "api", "--port", str(port))
        started = []
        for number in range(1, workers + 1):
            args = ["worker", "--concurrency", "1"]
            if metrics:
                metrics_port = free_port()
                args += ["--metrics-port", str(metrics_port)]
                self.metrics_urls.append(f"http://127.0.0.1:{metrics_port}/metrics")
            started.append(self.spawn(f"worker{number}", *args))
        self.workers.extend(started)
        for number in range(1, webhook_workers + 1):
            hooks = self.spawn(
                f"webhooks{number}", "worker", "--queues", "webhooks", "--concurrency", "1"
            )
            self.webhook_workers.append(hooks)
            started.append(hooks)
        sched = self._scheduler = self.spawn("scheduler", "scheduler") if scheduler else None
        self.api_url = f"http://127.0.0.1:{port}"
        self.wait_api(api)
        for worker in started:
            self.wait_worker(worker)
        if sched is not None:
            self.wait_log(sched, "scheduler started")

    def start_worker(self, name: str) -> ManagedProcess:
        worker = self.spawn(name, "worker", "--concurrency", "1")
        self.workers.append(worker)
        self.wait_worker(worker)
        return worker

    def wait_api(self, api: ManagedProcess) -> None:
        def healthy() -> bool:
            self._alive(api)
            return httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200

        wait_until(
            healthy,
            30,
            f"{api.name} to serve /healthz",
            ignore=(httpx.HTTPError,),
            diagnostics=self.diagnostics,
        )

    def wait_worker(self, worker: ManagedProcess) -> None:
        self.wait_log(worker, " ready.")

    def wait_log(self, proc: ManagedProcess, needle: str, timeout: float = 30) -> None:
        def logged() -> bool:
            self._alive(proc)
            return needle in proc.output()

        wait_until(logged, timeout, f"{proc.name} to log {needle!r}", diagnostics=self.diagnostics)

    def _alive(self, proc: ManagedProcess) -> None:
        if not proc.alive():
            pytest.fail(f"{proc.name} exited with {proc.popen.returncode}\n{proc.tail(60)}")

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )

    def diagnostics(self) -> str:
        return "\n".join(p.tail() for p in self.processes)

    def worker_counter(self, name: str) -> float:
        """A counter summed over the workers' metrics endpoints (`start(metrics=True)`)."""
        assert self.metrics_urls, "start(metrics=True) the stack first"
        total = 0.0
        for url in self.metrics_urls:
            for line in httpx.get(url, timeout=5).text.splitlines():
                if line.startswith(f"{name} "):
                    total += float(line.split()[1])
        return total

    def stop(self) -> None:
        for proc in self.processes:
            proc.terminate()
        for proc in self.processes:
            proc.stop()


def _create_database() -> str:
    name = f"bipn_it_{secrets.token_hex(6)}"
    with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_database(name: str) -> None:
    with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin_dsn() -> str:
    return PG.set(drivername="postgresql").render_as_string(hide_password=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_redis_db() -> int:
    """An empty Redis db of our own: marked with a claim key; a claim left by a dead test run
    on this host is taken over (and that db flushed). Never db 0 or the suite's db."""
    me = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    for db in range(1, 15):
        if db == SUITE_REDIS_DB:
            continue
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        holder = client.get(CLAIM_KEY)
        if holder is not None:
            host, pid, _ = holder.decode().split(":")
            if host != socket.gethostname() or _pid_alive(int(pid)):
                continue
            client.flushdb()  # our own leftovers from a killed run
        elif client.dbsize():
            continue  # someone else's data
        if client.set(CLAIM_KEY, me, nx=True) and client.dbsize() == 1:
            return db
    pytest.fail(f"no free Redis db (1-14) on {REDIS_HOST}:{REDIS_PORT} for the integration tests")


def release_redis_db(db: int) -> None:
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()


def redis_url(db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


def require_postgres() -> None:
    require_server("PostgreSQL", PG.host or "127.0.0.1", PG.port or 5432)


def require_redis() -> None:
    require_server("Redis", REDIS_HOST, REDIS_PORT)


StackFactory = Callable[..., Stack]


@pytest.fixture(scope="module")
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the module."""
    require_postgres()
    database = _create_database()
    try:
        yield PG.set(database=database).render_as_string(hide_password=False)
    finally:
        _drop_database(database)


@pytest.fixture(scope="module")
def make_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackFactory]:
    """Builds stacks on fresh databases and Redis dbs; tears all of them down at module end."""
    stacks: list[Stack] = []
    databases: list[str] = []
    redis_dbs: list[int] = []

    def factory(
        name: str,
        *,
        policy: str = "default@1",
        database_url: str | None = None,
        broker_url: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Stack:
        if database_url is None:
            require_postgres()
            database = _create_database()
            databases.append(database)
            database_url = PG.set(database=database).render_as_string(hide_password=False)
        if broker_url is None:
            require_redis()
            db = claim_redis_db()
            redis_dbs.append(db)
            broker_url = redis_url(db)
        base = tmp_path_factory.mktemp(name)
        stack = Stack(
            name=name,
            database_url=database_url,
            broker_url=broker_url,
            policy=policy,
            workdir=base,
            log_dir=base,
            extra_env=extra_env or {},
        )
        stacks.append(stack)
        stack.prepare()
        return stack

    try:
        yield factory
    finally:
        for stack in stacks:
            for proc in stack.processes:
                proc.terminate()
        for stack in stacks:
            stack.stop()
        for database in databases:
            _drop_database(database)
        for db in redis_dbs:
            release_redis_db(db)


# --- throwaway servers for fault tests ----------------------------------------------------


def require_binary(name: str, path: str | None) -> str:
    if path and os.access(path, os.X_OK):
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed, and CI is set: this fault test must run")
    pytest.skip(f"{name} is not installed: the fault test needs a throwaway server")


class ThrowawayRedis:
    """`redis-server` on a free port, nothing persisted: a restart loses every message."""

    def __init__(self, log_dir: pathlib.Path) -> None:
        self.binary = require_binary("redis-server", shutil.which("redis-server"))
        self.port = free_port()
        self.log_dir = log_dir
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.process = ManagedProcess("redis", argv, child_env(), self.log_dir, self.log_dir)
        wait_until(
            lambda: self.client().ping(),
            10,
            "the throwaway redis-server to answer PING",
            ignore=(redis.RedisError,),
        )

    def stop(self) -> None:
        """SIGTERM: Redis shuts down (and, with --save "", forgets everything)."""
        assert self.process is not None
        self.process.stop(grace=10)

    def close(self) -> None:
        if self.process is not None:
            self.process.stop(grace=2)


def _pg_bindir() -> str | None:
    found = sorted(
        pathlib.Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return str(found[-1].parent)
    initdb = shutil.which("initdb")
    return str(pathlib.Path(initdb).parent) if initdb else None


class ThrowawayPostgres:
    """A PostgreSQL cluster of its own (initdb into a temp dir, pg_ctl on a free port).

    initdb refuses to run as root: as root, the commands run as the `postgres` user."""

    def __init__(self) -> None:
        bindir = _pg_bindir()
        self.bin = pathlib.Path(
            require_binary("initdb", str(pathlib.Path(bindir) / "initdb") if bindir else None)
        ).parent
        self.port = free_port()
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="bipn-it-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as_user: list[str] = []
        self.running = False
        try:
            if os.geteuid() == 0:
                try:
                    account = pwd.getpwnam("postgres")
                except KeyError:
                    require_binary("a `postgres` user (initdb refuses root)", None)
                    raise
                os.chown(self.dir, account.pw_uid, account.pw_gid)
                # /usr/sbin is not on every PATH (a minimal CI environment): look there too
                runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
                self._as_user = [require_binary("runuser", runuser), "-u", "postgres", "--"]
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        proc = subprocess.run(
            [*self._as_user, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            pytest.fail(f"{tool} {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def close(self) -> None:
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- the service's data, read directly ----------------------------------------------------


def db_engine(url: str) -> Engine:
    return create_engine(url, poolclass=NullPool)


@dataclass(frozen=True)
class OutboxCounts:
    total: int
    open: int
    dead_lettered: int


def outbox_counts(engine: Engine) -> OutboxCounts:
    with engine.connect() as conn:
        total, open_, dead = conn.execute(
            text(
                "SELECT count(*), "
                "count(*) FILTER (WHERE processed_at IS NULL), "
                "count(*) FILTER (WHERE dead_letter_id IS NOT NULL) FROM outbox"
            )
        ).one()
    return OutboxCounts(int(total), int(open_), int(dead))


def scalar(engine: Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def wait_processed(
    engine: Engine, expected_events: int, timeout: float, diagnostics: Callable[[], str]
) -> None:
    """Until the outbox holds `expected_events` rows and none is open (every accepted event
    folded into the decisions)."""

    def done() -> bool:
        counts = outbox_counts(engine)
        return counts.total == expected_events and counts.open == 0

    wait_until(
        done,
        timeout,
        f"all {expected_events} outbox rows processed",
        interval=0.2,
        diagnostics=lambda: f"{outbox_counts(engine)}\n{diagnostics()}",
    )


def _decision_key(decision: dict[str, Any]) -> tuple[dt.datetime, str]:
    return dt.datetime.fromisoformat(decision["at"]), decision["decision_id"]


def by_patient(decisions: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for decision in decisions:
        grouped[decision["patient_id"]].append(decision)
    return {p: sorted(ds, key=_decision_key) for p, ds in grouped.items()}


def current_decisions(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    with engine.connect() as conn:
        bodies = conn.execute(
            text("SELECT body FROM decision WHERE superseded_at IS NULL")
        ).scalars()
        return by_patient(json.loads(body) for body in bodies)


def evaluate_stored(engine: Engine, policy: str = "default@1") -> dict[str, list[dict[str, Any]]]:
    """What the pure engine says about the stored events at the fixed clock."""
    with engine.connect() as conn:
        events = [
            EVENT_ADAPTER.validate_json(body)
            for body in conn.execute(text("SELECT body FROM event")).scalars()
        ]
    decisions = evaluate(builtin_pack(policy), events, FIXED_NOW)
    return by_patient(json.loads(d.model_dump_json(exclude_none=True)) for d in decisions)


def post_batches(
    client: httpx.Client, events: Sequence[dict[str, Any]], batch_size: int
) -> list[httpx.Response]:
    """Post `events` in batches; every batch must be accepted in full (202, no duplicate)."""
    responses = []
    for start in range(0, len(events), batch_size):
        chunk = events[start : start + batch_size]
        response = client.post("/v1/events", json={"events": list(chunk)})
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == len(chunk), response.text
        responses.append(response)
    return responses


def synthetic_events(patients: int, events_per_patient: int, seed: int) -> list[dict[str, Any]]:
    from monitor.bench.synthetic import generate

    return [json.loads(line) for line in generate(patients, events_per_patient, seed)]
