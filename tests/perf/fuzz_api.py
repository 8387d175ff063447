"""The long schemathesis run (issue 11, item 3): at least 10,000 generated requests over every
route of the OpenAPI document, valid and invalid, and not one 5xx.

    .venv/bin/python tests/perf/fuzz_api.py [--cases 10000] [--sqlite]

A script, not a pytest test (the suite runs a short version: tests/monitor/test_schemathesis.py).
The service runs in-process on a fresh PostgreSQL database on this machine (dropped at the end,
whatever happens; `--sqlite` for a machine without one), with the embedded worker, seeded with
a patient that has decisions and alerts, a dead letter, a webhook and a delivery, so that ids
exist to be found. Each operation gets an equal share of the cases, drawn from schemathesis'
positive generation (requests the schema allows) and its negative one (requests it forbids),
sent with an admin token. Every 5xx is printed with the curl command that reproduces
it; the last line is JSON with the counts by status and by operation.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import pathlib
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import schemathesis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from monitor.app import create_app  # noqa: E402
from monitor.auth.tokens import create_token  # noqa: E402
from monitor.processing.inprocess import InProcessWorker  # noqa: E402
from monitor.processing.jobs import dead_letter  # noqa: E402
from monitor.services import build_services  # noqa: E402
from monitor.settings import Settings  # noqa: E402
from monitor.storage.migrate import upgrade  # noqa: E402
from tests.common import factories as f  # noqa: E402

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.UTC)


@contextlib.contextmanager
def database(use_sqlite: bool, directory: pathlib.Path) -> Iterator[str]:
    if use_sqlite:
        yield f"sqlite:///{directory / 'fuzz.db'}"
        return
    url = make_url(PG_URL)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"bipn_fuzz_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(client: TestClient, admin: dict[str, str], services: Any, worker: Any) -> None:
    events = [
        f.enrollment(f.at(0), patient="P1", event_id="fz-e0", unit="u7"),
        f.assessment(f.at(21), patient="P1", event_id="fz-a1", sensory=3),
    ]
    assert client.post("/v1/events", json={"events": events}, headers=admin).status_code == 202
    assert worker.wait_idle(30)
    hook = {"name": "fuzz", "url": "http://127.0.0.1:9/hook"}
    assert client.post("/v1/admin/webhooks", json=hook, headers=admin).status_code == 201
    dead_letter(services, "P1", RuntimeError("seeded"), 1)


def fuzz(
    operation: Any,
    examples: int,
    headers: dict[str, str],
    seen: collections.Counter[int],
    failures: list[str],
    label: str,
) -> None:
    """`examples` generated requests to one operation; statuses counted, 5xx kept."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    # positive and negative cases mixed (an operation with nothing to get wrong, like
    # GET /healthz, has no negative ones)
    @given(
        case=st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        seen[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(
                f"{response.status_code} {label}\n{case.as_curl_command()}\n{response.text[:500]}"
            )

    check()


def run(cases: int, use_sqlite: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, database(use_sqlite, pathlib.Path(tmp)) as url:
        service_settings = Settings(
            database_url=url,
            data_dir=pathlib.Path(tmp),
            fixed_now=NOW,
            stream_max_s=0.2,
            stream_poll_s=0.05,
            webhook_allow_networks=["127.0.0.0/8"],
            webhook_timeout_s=1.0,  # the fuzzer registers receivers that are not there
        )
        services = build_services(service_settings)
        upgrade(services.engine)
        worker = InProcessWorker(services)
        services.dispatcher = worker
        worker.start()
        admin = {"Authorization": f"Bearer {create_token(services.sessions, 'admin', 'fuzz', NOW)}"}
        try:
            with TestClient(create_app(services)) as client:
                seed(client, admin, services, worker)
                schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
                operations = [op.ok() for op in schema.get_all_operations()]
                per_operation = max(2, cases // len(operations))
                statuses: collections.Counter[int] = collections.Counter()
                by_operation: dict[str, collections.Counter[int]] = {}
                produced: dict[str, int] = {}
                failures: list[str] = []
                started = time.monotonic()
                # every operation its share; operations with little to vary (GET /healthz)
                # run out early, and the others make up the difference in a second round
                rounds = [(operations, per_operation)]
                while rounds:
                    batch, examples = rounds.pop()
                    for operation in batch:
                        label = f"{operation.method.upper()} {operation.path}"
                        seen = by_operation.setdefault(label, collections.Counter())
                        before = sum(seen.values())
                        fuzz(operation, examples, admin, seen, failures, label)
                        produced[label] = sum(seen.values()) - before
                        # let the worker catch up (deliveries to the endpoints the fuzzer
                        # registered may still be trying: they hold only their own thread)
                        worker.wait_idle(30)
                        # the fuzzer may revoke its own token (POST /v1/admin/tokens/1/revoke):
                        # the next operation gets it back
                        with services.engine.begin() as connection:
                            connection.execute(text("UPDATE api_token SET revoked_at = NULL"))
                    total = sum(sum(c.values()) for c in by_operation.values())
                    rich = [
                        op
                        for op in batch
                        if produced[f"{op.method.upper()} {op.path}"] >= examples * 0.9
                    ]
                    if total < cases and rich and not rounds and batch is operations:
                        rounds.append((rich, -(-(cases - total) // len(rich))))
                for counts in by_operation.values():
                    statuses.update(counts)
                took = time.monotonic() - started
        finally:
            worker.stop()
            services.close()
    return {
        "database": "sqlite" if use_sqlite else "postgresql",
        "operations": len(by_operation),
        "cases": sum(statuses.values()),
        "seconds": round(took, 1),
        "server_errors": sum(n for status, n in statuses.items() if status >= 500),
        "by_status": dict(sorted(statuses.items())),
        "by_operation": {k: dict(sorted(v.items())) for k, v in by_operation.items()},
        "failures": failures[:20],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--sqlite", action="store_true", help="no PostgreSQL on this machine")
    args = parser.parse_args()
    report = run(args.cases, args.sqlite)
    for failure in report["failures"]:
        print(failure, file=sys.stderr)
    width = max(len(k) for k in report["by_operation"])
    for label, counts in report["by_operation"].items():
        print(f"{label:<{width}}  {sum(counts.values()):>5}  {counts}")
    print(
        f"{report['cases']} cases over {report['operations']} operations on "
        f"{report['database']} in {report['seconds']} s: {report['server_errors']} 5xx"
    )
    print(json.dumps({k: v for k, v in report.items() if k != "failures"}))
    return 1 if report["server_errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
