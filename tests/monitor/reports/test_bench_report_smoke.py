"""The report benchmark (tests/perf/bench_report.py, issue 5 item 4) runs end to end on a small
generated history, and the PostgreSQL path it measures (monitor/reports/sources.py: one binary
COPY, the body fields taken out by the server) reads exactly what the generic path reads.

Both need the machine's PostgreSQL (skipped without it, failing when CI is set)."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import ProgrammingError

from monitor.reports import sources
from monitor.reports.adherence import AuditItem, Period, item_view
from monitor.services import build_services
from monitor.settings import Settings
from tests.conftest import require_server
from tests.perf import bench_report

ROOT = pathlib.Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "tests" / "perf" / "bench_report.py"


@pytest.fixture
def postgres() -> None:
    require_server("PostgreSQL", "127.0.0.1", 5432)


def database_exists(name: str) -> bool:
    with bench_report.pg("postgres") as admin:
        row = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def test_quick_run_exits_0_with_its_figures(postgres: None, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, str(SCRIPT), "--quick", "--patients", "300", "--max-seconds", "100"]
    argv += ["--work", str(tmp_path / "work"), "--json-out", str(out)]
    done = subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == result
    assert result["patients"] == 300
    assert [p["patients"] for p in result["points"]] == [60, 300]  # a fifth, then all
    for point in result["points"]:
        assert point["events"] == point["patients"] * 20
        assert point["checks"]["report_totals"] == point["sql_counts"]
        assert point["sql_counts"]["recommendations"] > 0
        assert point["sql_counts"]["reassessments"] > 0
        assert set(point["runs"]) == {"json", "csv", "html"}
        for run in point["runs"].values():
            assert run["wall_s"] > 0
            assert run["peak_rss_mib"] > 0
    assert set(result["worst_wall_s_at_largest"]) == {"json", "csv", "html"}
    assert result["generation"][-1]["patients"] == 300
    assert not database_exists(result["database"])  # dropped at the end
    assert list((tmp_path / "work").iterdir()) == []  # the reports removed once checked


class Serial:
    """`fill` takes a pool; this one generates in this process."""

    @staticmethod
    def imap(function: Any, tasks: Any) -> Iterator[Any]:
        return map(function, tasks)


@pytest.fixture
def filled(postgres: None) -> Iterator[tuple[str, bench_report.Filled]]:
    """A migrated database with 200 generated patients, and rows the COPY path must read as the
    generic path does: bodies with \\u escapes (kept whole for Python), a dose written as an
    int, doses given in mg (`given_in_mg`), a superseded decision, a patient with decisions and
    no events."""
    name = f"test_report_paths_{id(object())}"
    with bench_report.fresh_database(name, keep=False) as url, bench_report.pg(name) as conn:
        filled = bench_report.Filled()
        bench_report.fill(conn, Serial(), filled, 200, per_patient=20, seed=3)
        enrollment = conn.execute(
            "SELECT id, body FROM event WHERE type = 'enrollment' AND patient_id IN "
            "(SELECT patient_id FROM decision WHERE action = 'schedule_reassessment') "
            "ORDER BY id LIMIT 1"
        ).fetchone()
        assert enrollment is not None
        body = json.loads(enrollment[1])
        body["unit"] = "onc-süd"  # json.dumps escapes it: \u00fc
        body["extra"] = {"note": "a\x00b"}  # \u0000: the server's JSON functions refuse it
        conn.execute("UPDATE event SET body = %s WHERE id = %s", (json.dumps(body), enrollment[0]))
        reduced = conn.execute(  # doses of 1.0 written `1` (json.loads reads an int)
            "UPDATE event SET body = replace(body, '\"dose_mg_m2\": 1.0,', '\"dose_mg_m2\": 1,') "
            "WHERE type = 'administration' AND body LIKE '%\"dose_mg_m2\": 1.0,%'"
        )
        assert reduced.rowcount > 0
        given_in_mg(conn)
        patient_reports(conn)
        deviation = conn.execute(
            "SELECT id, body FROM decision WHERE action = 'adherence_deviation' ORDER BY id LIMIT 1"
        ).fetchone()
        assert deviation is not None
        body = json.loads(deviation[1])
        body["reason"] = "given\x00twice"
        conn.execute(
            "UPDATE decision SET body = %s WHERE id = %s", (json.dumps(body), deviation[0])
        )
        conn.execute(
            "UPDATE decision SET superseded_at = created_at WHERE id IN "
            "(SELECT id FROM decision WHERE action = 'reduce_dose' ORDER BY id LIMIT 3)"
        )
        # a change of pack (the generated decisions are default@2's): old decisions superseded
        # by it (audited before it), new ones in force from it (audited after it)
        changed = conn.execute(
            "UPDATE decision SET superseded_at = at + interval '20 days', policy = 'default@1', "
            "superseded_reason = 'policy_change', superseded_by = 'd-next' WHERE id IN "
            "(SELECT id FROM decision WHERE action = 'schedule_reassessment' "
            "AND superseded_at IS NULL ORDER BY id LIMIT 40)"
        )
        assert changed.rowcount == 40
        conn.execute(
            "UPDATE decision SET in_force_from = at + interval '2 days' "
            "WHERE id IN (SELECT id FROM decision WHERE superseded_at IS NULL "
            "AND action IN ('schedule_reassessment', 'reduce_dose') ORDER BY id DESC LIMIT 40)"
        )
        conn.execute(
            "INSERT INTO decision (decision_id, patient_id, at, action, severity, rule, policy, "
            "body, due_at, created_at) SELECT 'd-orphan', 'PT-0', at, action, severity, rule, "
            "policy, replace(body, patient_id, 'PT-0'), due_at, created_at FROM decision "
            "WHERE action = 'reduce_dose' AND superseded_at IS NULL ORDER BY id LIMIT 1"
        )
        yield url, filled


def patient_reports(conn: psycopg.Connection[Any]) -> None:
    """Forty assessments become patient reports (every other one with a comment json.dumps
    escapes, so its body goes whole to Python), each with a D9 review (`review_required`,
    `patient_reported_change`), half of them acknowledged: the `patient_reports` section must
    read alike on both paths (the generated immunotherapy and `watch_closed` are there too)."""
    # the cohort's own patient reports, and the D9 reviews the fold made of them, go first: the
    # counts below are of the forty written here
    conn.execute(
        "DELETE FROM alert_ack WHERE alert_id IN (SELECT a.id FROM alert a JOIN decision d ON "
        "d.decision_id = a.decision_id WHERE d.body LIKE '%patient_reported_change%')"
    )
    conn.execute(
        "DELETE FROM alert WHERE decision_id IN (SELECT decision_id FROM decision "
        "WHERE body LIKE '%patient_reported_change%')"
    )
    conn.execute("DELETE FROM decision WHERE body LIKE '%patient_reported_change%'")
    for written in ('"source": "patient"', '"source":"patient"'):
        conn.execute(
            "UPDATE event SET body = replace(body, %s, %s) WHERE type = 'assessment'",
            (written, written.replace("patient", "nurse")),
        )
    found = conn.execute(
        "SELECT id, event_id, patient_id, occurred_at, body FROM event "
        "WHERE type = 'assessment' ORDER BY id LIMIT 40"
    ).fetchall()
    assert len(found) == 40
    for number, (row_id, event_id, patient, at, text) in enumerate(found):
        body = json.loads(text) | {"source": "patient"}
        if number % 2:
            body["findings"] = {**(body.get("findings") or {}), "patient_comment": "Füße taub"}
        conn.execute("UPDATE event SET body = %s WHERE id = %s", (json.dumps(body), row_id))
        decision = f"d-pr{number:022d}"
        review = {"decision_id": decision, "patient_id": patient, "trigger": event_id,
                  "action": "review_required", "reason": "patient_reported_change"}  # fmt: skip
        conn.execute(
            "INSERT INTO decision (decision_id, patient_id, at, action, severity, rule, policy, "
            "body, created_at) VALUES (%s, %s, %s, 'review_required', 'warning', 'D9', "
            "'default@2', %s, %s)",
            (decision, patient, at, json.dumps(review), at),
        )
        alert = conn.execute(
            "UPDATE alert_sequence SET value = value + 1 WHERE name = 'alert' RETURNING value"
        ).fetchone()
        assert alert is not None
        conn.execute(
            "INSERT INTO alert (id, decision_id, kind, action, patient_id, severity, audience, "
            "message, created_at) VALUES (%s, %s, 'new', 'review_required', %s, 'warning', "
            "'[\"nurse\"]', 'review', %s)",
            (alert[0], decision, patient, at),
        )
        if number % 4 < 2:
            conn.execute(
                "INSERT INTO alert_ack (alert_id, acknowledged_by, token_name, acknowledged_at, "
                "recorded_at) VALUES (%s, 'nurse', 'nurse', %s + interval '3 hours', %s)",
                (alert[0], at, at),
            )


def given_in_mg(conn: psycopg.Connection[Any]) -> None:
    """Two patients with a `reduce_dose` that a dose follows get their doses in mg (1.8 mg per
    mg/m2): the first enrolled with height and weight (Mosteller's BSA converts them), the
    second without a BSA (not comparable) but for one administration that gives its own
    `bsa_m2`. Both paths must read these bodies alike (the COPY sends them whole)."""
    patients = [
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT d.patient_id FROM decision AS d WHERE d.action = 'reduce_dose' "
            "AND (SELECT e.type FROM event AS e WHERE e.patient_id = d.patient_id "
            "AND e.occurred_at > d.at ORDER BY e.occurred_at, e.event_id LIMIT 1) "
            "= 'administration' ORDER BY d.patient_id DESC LIMIT 2"
        )
    ]
    assert len(patients) == 2
    for number, patient in enumerate(patients):
        for position, (row_id, type_, text) in enumerate(
            conn.execute(
                "SELECT id, type, body FROM event WHERE patient_id = %s "
                "AND type IN ('enrollment', 'administration') ORDER BY id",
                (patient,),
            ).fetchall()
        ):
            body = json.loads(text)
            if type_ == "enrollment" and number == 0:
                body |= {"height_cm": 170, "weight_kg": 70}
            elif type_ == "administration":
                body["dose_mg"] = round(body.pop("dose_mg_m2") * 1.8, 2)
                if number == 1 and position == 3:
                    body["bsa_m2"] = 1.8
            conn.execute("UPDATE event SET body = %s WHERE id = %s", (json.dumps(body), row_id))


def report_text(
    url: str, period: Period, monkeypatch: pytest.MonkeyPatch, *, copied: bool
) -> tuple[str, str]:
    """(the JSON result and distributions, the on_item rows), by either path; asserts the
    path taken."""
    taken: list[str] = []
    real_copied, real_merged = sources._patients_copied, sources._patients_merged

    def use_copied(connection: Any, period: Period) -> Any:
        taken.append("copied")
        return real_copied(connection, period)

    def use_merged(connection: Any, period: Period) -> Any:
        taken.append("merged")
        return real_merged(connection, period)

    monkeypatch.setattr(sources, "_patients_copied", use_copied)
    monkeypatch.setattr(sources, "_patients_merged", use_merged)
    if not copied:  # as on any other database
        monkeypatch.setattr(sources, "_utc_session", lambda connection: False)
    items: list[AuditItem] = []
    services = build_services(Settings(database_url=url))
    try:
        report = sources.report_from_database(services, period, items.append)
    finally:
        services.close()
        monkeypatch.undo()
    assert taken == ["copied" if copied else "merged"]
    result = json.dumps([report.result(), report.distributions()])
    return result, json.dumps([item_view(i) | {"month": i.month} for i in items])


@pytest.mark.parametrize("unit", [None, "onc-a", "onc-süd"])
def test_copy_path_reads_what_the_generic_path_reads(
    filled: tuple[str, bench_report.Filled], monkeypatch: pytest.MonkeyPatch, unit: str | None
) -> None:
    url, data = filled
    assert data.first is not None
    assert data.last is not None
    for start, end in (
        (data.first, data.last),  # everything
        (data.first + dt.timedelta(days=120), data.last - dt.timedelta(days=150)),  # a middle
    ):
        period = Period(start.astimezone(dt.UTC), end.astimezone(dt.UTC), unit)
        copied = report_text(url, period, monkeypatch, copied=True)
        merged = report_text(url, period, monkeypatch, copied=False)
        assert copied == merged
        if unit != "onc-süd":
            assert json.loads(copied[0])[0]["recommendations"]["total"] > 0
    whole = json.loads(report_text(url, Period(data.first, data.last), monkeypatch, copied=True)[0])
    assert "given\x00twice" in whole[0]["deviations"]["by_reason"]  # from a body kept whole
    assert any(p["patient_id"] == "PT-0" for p in whole[0]["patients"])  # decisions, no events
    assert "onc-süd" in whole[0]["by_unit"]  # from a body kept whole
    assert set(whole[0]["policies"]) == {"default@1", "default@2"}  # each under its own pack
    reports = whole[0]["patient_reports"]
    assert reports["weekly_reports"]["reported"] > 0
    assert reports["reviews"]["total"] == 40
    assert reports["acknowledgement"]["acknowledged"] == 20
    assert reports["acknowledgement"]["median_hours_to_ack"] == 3.0
    doses = [
        item["evidence"]["dose_mg_m2"]
        for patient in whole[0]["patients"]
        for item in patient["items"]
        if item["evidence"] and item["evidence"]["type"] == "administration"
    ]
    assert 1 in doses
    assert all(type(d) is int for d in doses if d == 1)  # as written, not 1.0
    in_mg = [
        (item["outcome"], item["evidence"]["dose_mg_m2"] is None)
        for patient in whole[0]["patients"]
        for item in patient["items"]
        if item["evidence"] and item["evidence"]["dose_mg"] is not None
    ]
    assert ("pending", True) in in_mg  # no BSA: not comparable, shown with its dose in mg


def test_copy_path_errors_are_sqlalchemy_errors(postgres: None) -> None:
    """An unmigrated database: the CLI reports SQLAlchemy errors (a hint to migrate)."""
    name = f"test_report_unmigrated_{id(object())}"
    with bench_report.pg("postgres") as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    services = build_services(
        Settings(database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    )
    try:
        period = Period(
            dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
        )
        with pytest.raises(ProgrammingError) as raised:
            sources.report_from_database(services, period)
        assert isinstance(raised.value.orig, psycopg.errors.UndefinedTable)
    finally:
        services.close()
        with bench_report.pg("postgres") as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
