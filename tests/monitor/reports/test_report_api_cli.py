"""The adherence report as auditors get it: `GET /v1/reports/adherence` in each format and
`python -m monitor report adherence` from the database or an events file (issue 5, item 3).
The numbers themselves are checked in test_adherence.py; here: the same report whichever way it
is asked for, the formats, and clear refusals."""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.common.service import Api, RunningService, rows, running_service

ROOT = pathlib.Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "timeline.jsonl"
PERIOD = {"from": "2026-01-01T00:00:00Z", "to": "2026-06-30T00:00:00Z"}
LATER = "2026-07-01T00:00:00Z"  # the service clock: after the example's last event


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The example timeline, processed by the service with its clock after the last event."""
    import datetime as dt

    clock = dt.datetime.fromisoformat(LATER.replace("Z", "+00:00"))
    with running_service(tmp_path_factory.mktemp("reports"), fixed_now=clock) as service:
        bodies = [json.loads(line) for line in EXAMPLE.read_text().splitlines() if line.strip()]
        response = service.api.post_events({"events": bodies})
        assert response.status_code == 202, response.text
        assert service.worker.wait_idle(60)
        yield service


def report(api: Api, role: str = "auditor", **params: str) -> Any:
    return api.client.get(
        "/v1/reports/adherence",
        params={**PERIOD, **params},
        headers=api.headers(role),  # type: ignore[arg-type]
    )


def cli(
    cwd: pathlib.Path, *args: str, database: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env["PYTHONPATH"] = str(ROOT)
    if database is not None:
        env["MONITOR_DATABASE_URL"] = database
        env["MONITOR_POLICY"] = "default@1"  # the running service's pack (tests/common)
    elif "--policy" not in args and "--policy-file" not in args and "--events" in args:
        args = (*args, "--policy", "default@1")  # as the running service decided
    return subprocess.run(
        [sys.executable, "-m", "monitor", "report", "adherence", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )


def test_json_over_http_has_the_contract_keys_and_real_numbers(running: RunningService) -> None:
    response = report(running.api)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == [
        "period",
        "unit",
        "policy",
        "policies",
        "recommendations",
        "reassessments",
        "escalations",
        "alerts",
        "cds",
        "patient_reports",
        "deviations",
        "by_unit",
        "by_month",
        "patients",
    ]
    assert body["period"] == PERIOD
    assert body["policy"] == "default@1"
    assert body["recommendations"]["total"] > 0
    assert body["reassessments"]["due"] > 0
    # alerts count by when they were raised: the service clock, after this period ...
    assert body["alerts"]["total"] == 0
    # ... and inside one that reaches it
    raised = report(running.api, to=LATER).json()["alerts"]
    assert raised["total"] == len(rows(running.services, "SELECT id FROM alert")) > 0
    assert raised["acknowledged"] == 0
    assert list(body["by_unit"]) == ["onc-a", "onc-b"]


def test_http_and_offline_give_the_same_report_but_alerts(
    running: RunningService, tmp_path: pathlib.Path
) -> None:
    online = report(running.api).json()
    proc = cli(
        tmp_path, "--events", str(EXAMPLE), "--from", PERIOD["from"], "--to", PERIOD["to"],
        "--format", "json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    offline = json.loads(proc.stdout)
    assert offline["alerts"] is None
    assert "cds" not in offline  # CDS Hooks cards live in the database only
    assert offline["patient_reports"]["acknowledgement"] is None  # acks: the database only
    online["patient_reports"]["acknowledgement"] = None
    assert {k: v for k, v in online.items() if k not in ("alerts", "cds")} == {
        k: v for k, v in offline.items() if k != "alerts"
    }


def test_csv_has_one_row_per_audited_item(running: RunningService) -> None:
    body = report(running.api).json()
    response = report(running.api, format="csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert (
        "attachment" in response.headers["content-disposition"]
        or "inline" in (response.headers["content-disposition"])
    )
    table = list(csv.DictReader(io.StringIO(response.text)))
    expected = (
        body["recommendations"]["total"]
        + body["reassessments"]["due"]
        + body["escalations"]["total"]
    )
    assert len(table) == expected
    outcomes = [r["outcome"] for r in table if r["kind"] == "reassessment"]
    assert outcomes.count("on_time") == body["reassessments"]["on_time"]
    assert outcomes.count("missed") == body["reassessments"]["missed"]
    deviated = [r for r in table if r["outcome"] == "deviated"]
    assert len(deviated) == body["recommendations"]["deviated"]
    assert all(r["evidence_event_id"] for r in deviated)


def test_html_is_self_contained(running: RunningService) -> None:
    response = report(running.api, format="html")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert page.lstrip().lower().startswith("<!doctype html")
    for figure in ("by-month", "time-to-action", "ack-times"):
        assert f'data-chart="{figure}"' in page
    assert "<script" not in page
    assert "<link" not in page


def test_unit_filter_over_http(running: RunningService) -> None:
    whole = report(running.api).json()
    only_b = report(running.api, unit="onc-b").json()
    assert only_b["unit"] == "onc-b"
    assert set(only_b["by_unit"]) == {"onc-b"}
    assert (
        only_b["recommendations"]["total"]
        == (whole["by_unit"]["onc-b"]["recommendations"]["total"])
    )


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"from": "2026-06-30T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "is after"),
        ({"from": "2026-01-01T00:00:00"}, "timezone"),
        ({"to": "yesterday"}, "to"),
        ({"format": "pdf"}, "format"),
        ({"unit": ""}, "unit"),
    ],
    ids=["from-after-to", "naive-from", "bad-to", "bad-format", "empty-unit"],
)
def test_bad_parameters_are_422_naming_them(
    running: RunningService, params: dict[str, str], fragment: str
) -> None:
    response = running.api.client.get(
        "/v1/reports/adherence",
        params={**PERIOD, **params},
        headers=running.api.headers("auditor"),
    )
    assert response.status_code == 422
    assert fragment in response.text


@pytest.mark.parametrize("role", ["nurse", "infusion", "ingest"])
def test_only_auditors_and_admins_get_reports(running: RunningService, role: str) -> None:
    assert report(running.api, role=role).status_code == 403
    assert report(running.api, role="admin").status_code == 200


def test_every_report_request_is_in_the_audit_log(running: RunningService) -> None:
    before = rows(
        running.services, "SELECT count(*) AS n FROM audit_log WHERE action LIKE '%reports%'"
    )
    report(running.api, format="csv")
    after = rows(
        running.services, "SELECT count(*) AS n FROM audit_log WHERE action LIKE '%reports%'"
    )
    assert after[0]["n"] == before[0]["n"] + 1


def test_the_cli_reads_the_database_and_writes_each_format(
    running: RunningService, tmp_path: pathlib.Path
) -> None:
    database = str(running.services.engine.url)
    online = report(running.api).json()
    for fmt in ("json", "csv", "html"):
        out = tmp_path / f"report.{fmt}"
        proc = cli(
            tmp_path, "--from", PERIOD["from"], "--to", PERIOD["to"], "--format", fmt,
            "--out", str(out), database=database,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ""
        text = out.read_text()
        if fmt == "json":
            assert json.loads(text) == online
        elif fmt == "csv":
            assert text.splitlines()[0].startswith("kind,decision_id,patient_id")
        else:
            assert 'data-chart="by-month"' in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-01-01", "--format", "json"], "has no UTC offset"),
        (["--format", "xml"], "invalid choice"),
        (["--policy", "label", "--format", "json"], "apply to --events only"),
        (["--events", "missing.jsonl", "--format", "json"], "cannot be read"),
        (
            ["--from", "2026-07-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z", "--format", "json"],
            "is after --to",
        ),
    ],
    ids=["naive", "format", "policy-without-events", "missing-file", "from-after-to"],
)
def test_the_cli_refuses_bad_arguments_with_exit_2(
    tmp_path: pathlib.Path, args: list[str], message: str
) -> None:
    proc = cli(tmp_path, *args, database=f"sqlite:///{tmp_path / 'x.db'}")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""


def test_the_cli_reports_invalid_event_lines(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_id": "x"}\n')
    proc = cli(tmp_path, "--events", str(bad), "--format", "json")
    assert proc.returncode == 2
    assert proc.stderr.startswith("line 1: ")


def test_an_unmigrated_database_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    proc = cli(tmp_path, "--format", "json", database=f"sqlite:///{tmp_path / 'empty.db'}")
    assert proc.returncode == 2
    assert "python -m monitor migrate" in proc.stderr


@pytest.mark.parametrize("order", [["PT-1", "PT-2", "PT-3"], ["PT-3", "PT-1", "PT-2"], []])
def test_the_streamed_json_equals_the_report(order: list[str]) -> None:
    """`write_json` streams the patients from the report's spool; same JSON as `result()`."""
    import datetime as dt

    from monitor.reports.adherence import AdherenceReport, AuditItem, Period

    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    built = AdherenceReport(Period(start, start + dt.timedelta(days=90)), "default@1")
    for number, patient in enumerate(order):
        item = AuditItem(
            kind="reassessment",
            decision_id=f"d-{number}",
            patient_id=patient,
            unit="U",
            action="schedule_reassessment",
            at=start,
            due_at=start + dt.timedelta(days=number + 1),
            outcome="missed",
        )
        built.add_patient(patient, [item])
    out = io.StringIO()
    built.write_json(out)
    streamed = json.loads(out.getvalue())
    assert streamed == built.result()
    assert [p["patient_id"] for p in streamed["patients"]] == sorted(order)
    built.close()


# --- issue 11: what an auditor opens cannot run anything --------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tTAB", "'\tTAB"),
        ("\rCR", "'\rCR"),
        ("u7", "u7"),
        (None, ""),
        (1.5, 1.5),
    ],
)
def test_csv_cells_that_start_like_formulas_are_neutralised(value: Any, cell: Any) -> None:
    from monitor.reports.render import csv_cell

    assert csv_cell(value) == cell


def test_a_unit_named_like_a_formula_stays_text_in_the_csv(tmp_path: pathlib.Path) -> None:
    """The issue's case: a unit sent as `=...` or `@...` is written with a leading quote."""
    events = [json.loads(line) for line in EXAMPLE.read_text().splitlines() if line.strip()]
    for event in events:
        if event["type"] == "enrollment":
            event["unit"] = "=cmd|' /C calc'!A0" if event["patient_id"].endswith("1") else "@SUM(1)"
    source = tmp_path / "events.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in events))
    proc = cli(tmp_path, "--events", str(source), "--format", "csv", "--from", PERIOD["from"])
    assert proc.returncode == 0, proc.stderr
    table = list(csv.DictReader(io.StringIO(proc.stdout)))
    units = {row["unit"] for row in table}
    assert units <= {"'=cmd|' /C calc'!A0", "'@SUM(1)", ""}, units
    assert units & {"'=cmd|' /C calc'!A0", "'@SUM(1)"}
    assert not any(row[c].startswith(("=", "+", "@")) for row in table for c in row)


def test_the_html_report_is_served_with_a_content_security_policy(
    running: RunningService,
) -> None:
    response = report(running.api, format="html")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # none allowed: the default
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
