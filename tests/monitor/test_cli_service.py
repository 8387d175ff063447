"""The service commands as an operator runs them (CONTRACT.md, "Command line"): `migrate`,
`token create`, `audit verify`, as subprocesses on a temporary SQLite database given by
`MONITOR_DATABASE_URL`."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, inspect, text

from monitor.auth.tokens import Principal, authenticate
from monitor.services import build_services
from monitor.settings import Settings
from tests.conftest import FIXED_NOW

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKEN = re.compile(r"^bm_[A-Za-z0-9_-]{43}$")
TABLES = {
    "alembic_version",
    "api_token",
    "audit_log",
    "dead_letter",
    "decision",
    "alert",
    "alert_ack",
    "alert_sequence",
    "scheduler_lease",
    "webhook_attempt",
    "webhook_delivery",
    "webhook_endpoint",
    "webhook_secret",
    "patient_invite",
    "report_window",
    "event",
    "outbox",
    "patient",
    "cds_card",
    "cds_feedback",
    "cds_jwt",
}


@pytest.fixture
def database_url(tmp_path: pathlib.Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def monitor(
    database_url: str, cwd: pathlib.Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean | {"MONITOR_DATABASE_URL": database_url} | env,
        timeout=120,
        check=False,
    )


def test_migrate_twice_brings_the_schema_to_head(database_url: str, tmp_path: pathlib.Path) -> None:
    for _ in range(2):
        proc = monitor(database_url, tmp_path, "migrate")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "database schema is up to date\n"
    engine = create_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        assert len(versions) == 1
    finally:
        engine.dispose()
    assert not (tmp_path / "var").exists()  # the configured database, not the default


def test_token_create_prints_only_a_token_that_authenticates(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    proc = monitor(database_url, tmp_path, "token", "create", "--role", "nurse")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    assert proc.stdout == lines[0] + "\n"
    assert TOKEN.match(lines[0]), lines[0]
    named = monitor(database_url, tmp_path, "token", "create", "--role", "auditor", "--name", "qa")
    assert named.returncode == 0, named.stderr
    services = build_services(Settings(database_url=database_url))
    try:
        assert authenticate(services.sessions, lines[0]) == Principal("nurse", "nurse")
        assert authenticate(services.sessions, named.stdout.strip()) == Principal("qa", "auditor")
        assert authenticate(services.sessions, lines[0] + "x") is None
    finally:
        services.close()
    assert lines[0] != named.stdout.strip()


@pytest.mark.parametrize("role", ["root", "Nurse"])
def test_token_create_with_an_unknown_role_exits_2(
    database_url: str, tmp_path: pathlib.Path, role: str
) -> None:
    proc = monitor(database_url, tmp_path, "token", "create", "--role", role)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert f"invalid choice: '{role}'" in proc.stderr
    assert "ingest" in proc.stderr
    assert "admin" in proc.stderr


def test_audit_verify_exit_0_then_1_after_tampering(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    assert monitor(database_url, tmp_path, "migrate").returncode == 0
    # the same data directory as the commands (run in tmp_path): the same audit key
    services = build_services(Settings(database_url=database_url, data_dir=tmp_path / "var"))
    try:
        for n in range(4):
            services.audit.record(Principal("nurse", "nurse"), "GET /x", f"p:{n}", 200, FIXED_NOW)
    finally:
        services.close()
    intact = monitor(database_url, tmp_path, "audit", "verify")
    checkpoints = tmp_path / "var" / "audit-checkpoints.jsonl"
    shown = pathlib.Path("var/audit-checkpoints.jsonl")
    assert (intact.returncode, intact.stdout, intact.stderr) == (
        0,
        f"audit log intact: 4 rows, 0 checkpoints ({shown})\n",
        "",
    )
    assert not checkpoints.exists()
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE audit_log SET resource = 'p:other' WHERE id = 3"))
    finally:
        engine.dispose()
    broken = monitor(database_url, tmp_path, "audit", "verify")
    assert broken.returncode == 1
    assert broken.stdout == ""
    assert broken.stderr == "audit log broken at row 3: row_hash does not match the row's content\n"


def test_invalid_settings_exit_2_naming_the_variable(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    proc = monitor(database_url, tmp_path, "migrate", MONITOR_MAX_BATCH_EVENTS="0")
    assert proc.returncode == 2
    assert proc.stderr.startswith("settings: MONITOR_MAX_BATCH_EVENTS: ")


def test_the_data_dir_setting_holds_the_embedded_database_and_audit_files(
    tmp_path: pathlib.Path,
) -> None:
    """Issue 11: MONITOR_DATA_DIR was read by nothing; it now holds the default database, the
    audit key and the audit checkpoints."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    clean["PYTHONPATH"] = str(ROOT)
    env = clean | {"MONITOR_DATA_DIR": str(tmp_path / "data")}
    run = [sys.executable, "-m", "monitor"]
    migrated = subprocess.run([*run, "migrate"], env=env, cwd=tmp_path, capture_output=True)
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "data" / "monitor.db").is_file()
    assert not (tmp_path / "var").exists()
    created = subprocess.run(
        [*run, "token", "create", "--role", "admin"], env=env, cwd=tmp_path, capture_output=True
    )
    assert created.returncode == 0, created.stderr
    revoked = subprocess.run(
        [*run, "token", "revoke", "1"], env=env, cwd=tmp_path, capture_output=True
    )
    assert revoked.returncode == 0, revoked.stderr  # audited: the key is made in data_dir
    assert (tmp_path / "data" / "audit.key").is_file()
    checkpoint = subprocess.run(
        [*run, "audit", "checkpoint"], env=env, cwd=tmp_path, capture_output=True
    )
    assert checkpoint.returncode == 0, checkpoint.stderr
    assert (tmp_path / "data" / "audit-checkpoints.jsonl").is_file()
    verified = subprocess.run(
        [*run, "audit", "verify"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("audit log intact: 1 rows, 1 checkpoints")


def test_production_processes_refuse_to_start_without_an_audit_key(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    proc = monitor(database_url, tmp_path, "scheduler", MONITOR_BROKER_URL="redis://127.0.0.1:1/0")
    assert proc.returncode != 0
    assert "MONITOR_AUDIT_KEY is required in production" in proc.stderr
    short = monitor(
        database_url,
        tmp_path,
        "api",
        MONITOR_BROKER_URL="redis://127.0.0.1:1/0",
        MONITOR_AUDIT_KEY="too-short",
    )
    assert short.returncode == 2
    assert "settings: MONITOR_AUDIT_KEY: " in short.stderr
