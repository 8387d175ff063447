"""Roles that match the audiences, and tokens bound to units (issue 14, items 1 and 2).

Each care role reads its own audiences by default and acknowledges only an alert addressed to
one of them; a token bound to units sees only their patients, alerts and reports (404 for the
rest, as for an unknown patient); the audit log records the scope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from monitor.auth.tokens import create_token, list_tokens
from monitor.cli import main
from tests.common import factories as f
from tests.common.service import RunningService, rows, running_service
from tests.conftest import FIXED_NOW

# grade 2 at day 21: reduce_dose (physician, pharmacy, infusion_unit) and the reassessments
# (nurse); one patient in each unit
PATIENTS = {"P7": "u7", "P9": "u9"}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    with running_service(tmp_path_factory.mktemp("scope")) as service:
        for patient, unit in PATIENTS.items():
            bodies = [
                f.enrollment(f.at(0), patient=patient, event_id=f"{patient}-e", unit=unit),
                f.assessment(f.at(21), patient=patient, event_id=f"{patient}-a", sensory=2),
            ]
            assert service.api.post_events({"events": bodies}).status_code == 202
        assert service.worker.wait_idle()
        yield service


def _token(running: RunningService, role: Any, *units: str) -> dict[str, str]:
    token = create_token(
        running.services.sessions, role, f"{role}-{'-'.join(units) or 'all'}", FIXED_NOW,
        units=list(units) or None,
    )  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


def _feed(running: RunningService, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = running.api.client.get("/v1/alerts", headers=headers, params=params)
    assert response.status_code == 200, response.text
    alerts: list[dict[str, Any]] = response.json()["alerts"]
    return alerts


def _alert(running: RunningService, action: str, unit: str) -> int:
    [row] = rows(
        running.services,
        "SELECT id FROM alert WHERE action = :a AND unit = :u AND kind = 'new'",
        a=action,
        u=unit,
    )
    return int(row["id"])


# --- roles and audiences ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "audiences"),
    [
        ("nurse", {"nurse"}),
        ("physician", {"physician", "neurology"}),
        ("pharmacy", {"pharmacy"}),
        ("infusion", {"infusion_unit"}),
    ],
)
def test_each_care_role_sees_its_own_audiences_by_default(
    running: RunningService, role: str, audiences: set[str]
) -> None:
    alerts = _feed(running, running.api.headers(role))  # type: ignore[arg-type]
    assert alerts
    assert all(set(a["audience"]) & audiences for a in alerts)
    everything = _feed(running, running.api.headers("admin"))
    assert len(alerts) < len(everything)  # admin: every audience


def test_the_nurse_reads_the_physicians_alerts_when_asked(running: RunningService) -> None:
    asked = _feed(running, running.api.headers("nurse"), audience="physician")
    assert {a["action"] for a in asked} == {"reduce_dose"}


def test_only_a_role_of_the_audience_acknowledges(running: RunningService) -> None:
    reduction = _alert(running, "reduce_dose", "u7")
    refused = running.api.client.post(
        f"/v1/alerts/{reduction}/ack", json={}, headers=running.api.headers("nurse")
    )
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        f"alert {reduction} is addressed to physician, pharmacy, infusion_unit; role 'nurse' "
        "acknowledges alerts for nurse"
    )
    [unacked] = rows(
        running.services, "SELECT count(*) AS n FROM alert_ack WHERE alert_id = :i", i=reduction
    )
    assert unacked["n"] == 0  # nothing recorded: the escalation still runs
    accepted = running.api.client.post(
        f"/v1/alerts/{reduction}/ack",
        json={"note": "seen, dose reduced in the order"},
        headers=running.api.headers("physician"),
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["ack"]["note"] == "seen, dose reduced in the order"
    other = _alert(running, "reduce_dose", "u9")
    by_admin = running.api.client.post(
        f"/v1/alerts/{other}/ack", json={}, headers=running.api.headers("admin")
    )
    assert by_admin.status_code == 200


# --- units ------------------------------------------------------------------------------------


PATIENT_READS = [
    "/v1/patients/{p}",
    "/v1/patients/{p}/decisions",
    "/v1/patients/{p}/history",
    "/fhir/r4/Patient/{p}/$monitor-summary",
]


@pytest.mark.parametrize("path", PATIENT_READS)
def test_a_unit_token_sees_its_units_patients_and_not_the_others(
    running: RunningService, path: str
) -> None:
    ward7 = _token(running, "nurse", "u7")
    assert running.api.client.get(path.format(p="P7"), headers=ward7).status_code == 200
    other = running.api.client.get(path.format(p="P9"), headers=ward7)
    unknown = running.api.client.get(path.format(p="P-NONE"), headers=ward7)
    assert other.status_code == unknown.status_code == 404
    # the same answer as for a patient that does not exist (but for the id it names)
    assert other.text.replace("P9", "X") == unknown.text.replace("P-NONE", "X")
    # unbound: every unit
    assert running.api.client.get(path.format(p="P9"), headers=_token(running, "nurse")).is_success


def test_a_unit_token_cannot_read_another_units_decision(running: RunningService) -> None:
    [decision] = rows(
        running.services,
        "SELECT decision_id FROM decision WHERE patient_id = 'P9' AND action = 'reduce_dose'",
    )
    path = f"/v1/patients/P9/decisions/{decision['decision_id']}"
    assert (
        running.api.client.get(path, headers=_token(running, "physician", "u7")).status_code == 404
    )
    assert (
        running.api.client.get(path, headers=_token(running, "physician", "u9")).status_code == 200
    )


def test_a_unit_token_sees_and_acknowledges_only_its_units_alerts(running: RunningService) -> None:
    pharmacy7 = _token(running, "pharmacy", "u7")
    alerts = _feed(running, pharmacy7)
    assert alerts
    assert {a["unit"] for a in alerts} == {"u7"}
    assert {a["unit"] for a in _feed(running, _token(running, "pharmacy", "u7", "u9"))} == {
        "u7",
        "u9",
    }
    elsewhere = _alert(running, "reduce_dose", "u9")
    response = running.api.client.post(f"/v1/alerts/{elsewhere}/ack", json={}, headers=pharmacy7)
    assert response.status_code == 404
    assert response.json() == {"detail": f"no alert {elsewhere}"}


def test_a_unit_token_reports_on_its_units_only(running: RunningService) -> None:
    path = "/v1/reports/adherence"
    period = {"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}
    auditor7 = _token(running, "auditor", "u7")
    own = running.api.client.get(path, headers=auditor7, params=period)
    assert own.status_code == 200, own.text
    assert own.json()["unit"] == "u7"  # one unit: the report is of it
    assert set(own.json()["by_unit"]) == {"u7"}
    other = running.api.client.get(path, headers=auditor7, params=period | {"unit": "u9"})
    assert other.status_code == 404
    both = running.api.client.get(
        path, headers=_token(running, "auditor", "u7", "u9"), params=period
    )
    assert both.status_code == 422
    assert "bound to units u7, u9; give unit= one of them" in both.json()["detail"]


def test_the_audit_log_records_the_scope(running: RunningService) -> None:
    running.api.client.get("/v1/patients/P7", headers=_token(running, "nurse", "u7"))
    [row] = rows(
        running.services,
        "SELECT resource, status_code FROM audit_log WHERE actor = 'nurse-u7' "
        "ORDER BY id DESC LIMIT 1",
    )
    assert row == {"resource": "patient:P7 (units u7)", "status_code": 200}


# --- tokens -----------------------------------------------------------------------------------


def test_tokens_list_their_units(running: RunningService) -> None:
    _token(running, "infusion", "u9", "u7")
    listed = list_tokens(running.services.sessions, FIXED_NOW)
    bound = [t for t in listed if t["name"] == "infusion-u9-u7"]
    assert bound[0]["units"] == ["u7", "u9"]
    assert next(t for t in listed if t["role"] == "admin")["units"] is None


@pytest.mark.parametrize(
    ("role", "units", "says"),
    [
        ("admin", ["u7"], "a admin token sees every unit"),
        ("ingest", ["u7"], "a ingest token sees every unit"),
        ("nurse", [], "give at least one unit"),
        ("nurse", [" u7"], "' u7' is not a unit name"),
        ("nurse", ["x" * 65], "is not a unit name"),
    ],
)
def test_tokens_bound_to_units_are_checked(
    running: RunningService, role: Any, units: list[str], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        create_token(running.services.sessions, role, "bad", FIXED_NOW, units=units)


def test_the_command_line_binds_a_token_to_units(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MONITOR_DATA_DIR", str(tmp_path))
    assert main(["token", "create", "--role", "nurse", "--name", "w7", "--unit", "u7",
                 "--unit", "u8"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["token", "list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(t["name"], t["units"]) for t in listed] == [("w7", ["u7", "u8"])]


# --- the due-reassessments list ---------------------------------------------------------------


def test_the_due_reassessments_list_is_scoped_and_soonest_first(running: RunningService) -> None:
    everyone = running.api.client.get(
        "/v1/reassessments", headers=running.api.headers("nurse"), params={"within_days": 90}
    )
    assert everyone.status_code == 200, everyone.text
    listed = everyone.json()["reassessments"]
    # the clock (2026-10-01) is months after the gradings (January): both are overdue
    assert [(r["patient_id"], r["unit"], r["overdue"]) for r in listed] == [
        ("P7", "u7", True),
        ("P9", "u9", True),
    ]
    ward7 = running.api.client.get("/v1/reassessments", headers=_token(running, "nurse", "u7"))
    assert [r["patient_id"] for r in ward7.json()["reassessments"]] == ["P7"]


def test_me_says_who_the_token_is(running: RunningService) -> None:
    bound = running.api.client.get("/v1/me", headers=_token(running, "physician", "u7"))
    assert bound.json() == {
        "name": "physician-u7",
        "role": "physician",
        "units": ["u7"],
        "audiences": ["physician", "neurology"],
    }
    admin = running.api.client.get("/v1/me", headers=running.api.headers("admin")).json()
    assert (admin["role"], admin["units"], admin["audiences"]) == ("admin", None, None)
