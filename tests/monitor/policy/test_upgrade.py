"""`policy upgrade` (issue 13, item 5): every patient folded again under the pack now in use;
superseded decisions record the policy change and their replacement; only still-actionable
advice that changed is alerted or corrected; the adherence audit keeps each decision under the
pack that made it, for the time it was in force."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from monitor.cli import main
from monitor.ingest.service import store_events
from monitor.policy.upgrade import upgrade_patients
from monitor.processing.jobs import run_process_patient
from monitor.reports.adherence import AuditItem, Period
from monitor.reports.sources import report_from_database
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from policies import builtin_pack, evaluate_patient
from tests.common import factories as f
from tests.common.factories import at
from tests.common.service import rows

NOW = at(20)
V1, V2 = builtin_pack("default@1"), builtin_pack("default@2")
BASELINE = {"baseline": {"sensory": 0, "motor": 0, "pain": 0, "autonomic": 0}}
PATIENTS = {
    # V3: the grading at day 14 satisfies the day-21 reassessment: its next due changes
    "A": [f.enrollment(at(0), "A", "A-e", **BASELINE), f.assessment(at(14), "A", "A-a14")],
    # V1: motor-predominant grade 2: version 2 also asks for the immune work-up
    "C": [
        f.enrollment(at(0), "C", "C-e", **BASELINE),
        f.assessment(at(18), "C", "C-a18", motor=2, sensory=1),
    ],
    # V7: no baseline at an enrolment long past (history: the review is not alerted)
    "D": [f.enrollment(at(0), "D", "D-e"), f.assessment(at(18), "D", "D-a18")],
    # the same advice under both packs: nothing said
    "F": [
        f.enrollment(at(0), "F", "F-e", **BASELINE),
        f.assessment(at(14), "F", "F-a14", sensory=3),
    ],
}
# what a change of pack says, as (patient, trigger, action)
ALERTED = {
    ("A", "A-a14", "schedule_reassessment"),
    ("C", "C-a18", "immune_workup"),
    ("C", "C-a18", "schedule_reassessment"),
    ("D", "D-a18", "schedule_reassessment"),
}
CORRECTED = {
    ("A", "A-a14", "schedule_reassessment"),
    ("C", "C-a18", "schedule_reassessment"),
    ("D", "D-a18", "schedule_reassessment"),
}


def _settings(directory: pathlib.Path, policy: str) -> Settings:
    return Settings(
        policy=policy,
        database_url=f"sqlite:///{directory / 'monitor.db'}",
        data_dir=directory,
        fixed_now=NOW,
        # every decision with an audience alerts (the informational ones too), so that what
        # the changeover says of each kind shows
        alert_info_decisions=True,
    )


@pytest.fixture
def on_version_1(tmp_path: pathlib.Path) -> Iterator[Services]:
    """The patients stored and folded under default@1, as a running service leaves them."""
    services = build_services(_settings(tmp_path, "default@1"))
    upgrade(services.engine)
    store_events(services.sessions, f.events(*(b for p in PATIENTS.values() for b in p)), NOW)
    for patient_id in PATIENTS:
        run_process_patient(services, patient_id)
    yield services
    services.close()


def _switch(services: Services, policy: str) -> Services:
    switched = build_services(services.settings.model_copy(update={"policy": policy}))
    assert switched.pack.label == policy
    return switched


def _alerts(services: Services, kind: str, since_id: int = 0) -> set[tuple[str, str, str]]:
    found = rows(
        services,
        "SELECT a.patient_id, d.body FROM alert a JOIN decision d USING (decision_id) "
        "WHERE a.kind = :kind AND a.id > :since",
        kind=kind,
        since=since_id,
    )
    return {
        (r["patient_id"], json.loads(r["body"])["trigger"], json.loads(r["body"])["action"])
        for r in found
    }


def _last_alert_id(services: Services) -> int:
    return int(rows(services, "SELECT coalesce(max(id), 0) AS n FROM alert")[0]["n"])


def _current(services: Services, patient_id: str) -> list[dict[str, Any]]:
    found = rows(
        services,
        "SELECT body FROM decision WHERE patient_id = :p AND superseded_at IS NULL",
        p=patient_id,
    )
    return sorted((json.loads(r["body"]) for r in found), key=lambda d: d["decision_id"])


def test_the_upgrade_moves_everyone_and_tells_only_what_changed_and_is_actionable(
    on_version_1: Services,
) -> None:
    before = _last_alert_id(on_version_1)
    services = _switch(on_version_1, "default@2")
    try:
        report = upgrade_patients(services, batch_size=3)
        assert report.view() | {"monitoring_stopped": []} == {
            "policy": "default@2",
            "patients": 4,
            "changed": 4,
            "already_current": 0,
            "folded_with_new_events": 0,
            "decisions_inserted": report.inserted,
            "decisions_superseded": report.superseded,
            "alerts_new": len(ALERTED),
            "alerts_corrected": len(CORRECTED),
            "monitoring_stopped": [],
        }
        # the stored decisions are version 2's, exactly as replay gives them
        for patient_id, bodies in PATIENTS.items():
            expected = evaluate_patient(V2, patient_id, f.events(*bodies), NOW).decisions
            assert _current(services, patient_id) == sorted(
                (d.to_json_dict() for d in expected), key=lambda d: d["decision_id"]
            )
        assert _alerts(services, "new", before) == ALERTED
        assert _alerts(services, "correction", before) == CORRECTED
        # without the changeover every alerted decision would have been told again
        naive = sum(
            1
            for patient_id, bodies in PATIENTS.items()
            for d in evaluate_patient(V2, patient_id, f.events(*bodies), NOW).decisions
            if d.audience
        )
        assert naive > 3 * len(ALERTED)
        # every version 1 decision records why it was superseded and what replaces it
        superseded = rows(
            services,
            "SELECT decision_id, policy, superseded_reason, superseded_by, superseded_at "
            "FROM decision WHERE superseded_at IS NOT NULL",
        )
        assert {r["policy"] for r in superseded} == {"default@1"}
        assert {r["superseded_reason"] for r in superseded} == {"policy_change"}
        current = rows(services, "SELECT decision_id FROM decision WHERE superseded_at IS NULL")
        current_ids = {r["decision_id"] for r in current}
        assert {r["superseded_by"] for r in superseded} <= current_ids
        assert None not in {r["superseded_by"] for r in superseded}
        # the correction says why
        corrections = rows(services, "SELECT message FROM alert WHERE kind = 'correction'")
        messages = {r["message"] for r in corrections}
        assert messages == {
            "Correction: the earlier schedule reassessment advice no longer applies under "
            "the clinical policy default@2, now in use; see the current decisions."
        }

        # again: nothing to do, nothing said
        last = _last_alert_id(services)
        again = upgrade_patients(services, batch_size=3)
        assert (again.changed, again.already, again.inserted, again.superseded) == (0, 4, 0, 0)
        assert _last_alert_id(services) == last
    finally:
        services.close()


def test_the_api_shows_why_a_decision_was_superseded(on_version_1: Services) -> None:
    from monitor.patients.service import decision_rows

    services = _switch(on_version_1, "default@2")
    try:
        upgrade_patients(services, batch_size=10)
        with services.sessions() as session:
            everything = decision_rows(session, "C", include_superseded=True)
        old = [d for d in everything if d["policy"] == "default@1"]
        new = [d for d in everything if d["policy"] == "default@2"]
        assert old
        assert new
        assert {d["superseded_reason"] for d in old} == {"policy_change"}
        assert {d["superseded_by"] for d in old} <= {d["decision_id"] for d in new}
        assert {d["in_force_from"] for d in new} == {"2026-01-25T09:00:00Z"}
        assert all("superseded_at" not in d for d in new)
    finally:
        services.close()


def test_a_new_event_after_the_switch_is_told_as_always(on_version_1: Services) -> None:
    """Without the command, a patient changes pack at its next event; what that event brings
    is alerted as in any fold, the rest as in the upgrade."""
    services = _switch(on_version_1, "default@2")
    try:
        before = _last_alert_id(services)
        late = f.assessment(at(19), "F", "F-a19", sensory=3)
        store_events(services.sessions, f.events(late), NOW)
        outcome = run_process_patient(services, "F")
        assert outcome.policy_changed
        told = _alerts(services, "new", before)
        assert told == {("F", "F-a19", "schedule_reassessment")}
        # the reassessment the new grading satisfied, the discontinuation, the watch: their
        # advice still holds under version 2, so nothing is corrected
        assert _alerts(services, "correction", before) == set()
    finally:
        services.close()


def test_the_audit_keeps_each_decision_under_the_pack_that_made_it(
    on_version_1: Services,
) -> None:
    period = Period(at(0), at(60))
    late = services = None
    try:
        services = _switch(on_version_1, "default@2")
        upgrade_patients(services, batch_size=10)
        # later, the clock at day 60: what was due before the change (day 20) is audited under
        # version 1, as it was advised; version 2's decisions only from the change on
        late = build_services(services.settings.model_copy(update={"fixed_now": at(60)}))
        seen: list[AuditItem] = []
        report = report_from_database(late, period, on_item=seen.append).result()
    finally:
        for built in (services, late):
            if built is not None:
                built.close()
    audited: dict[str | None, set[tuple[str, str, str | None]]] = {}
    for item in seen:
        due = item.due_at.isoformat().replace("+00:00", "Z") if item.due_at else None
        audited.setdefault(item.policy, set()).add((item.patient_id, item.action, due))
    # version 1's advice given before the change (day 20) is audited as it was given; its
    # twins under version 2 are not; what falls due after the change is version 2's
    assert audited["default@1"] == {("C", "reduce_dose", None), ("F", "discontinue", None)}
    assert audited["default@2"] == {
        ("A", "schedule_reassessment", "2026-01-26T09:00:00Z"),
        ("C", "schedule_reassessment", "2026-01-26T09:00:00Z"),
        ("C", "schedule_reassessment", "2026-02-16T09:00:00Z"),
        ("D", "schedule_reassessment", "2026-01-26T09:00:00Z"),
        ("D", "schedule_reassessment", "2026-02-16T09:00:00Z"),
        ("F", "schedule_reassessment", "2026-01-26T09:00:00Z"),
        ("F", "schedule_reassessment", "2026-02-02T09:00:00Z"),
    }
    assert report["policies"] == {"default@1": 2, "default@2": 8}  # A has two due on day 21


def test_the_command_refuses_a_pack_that_is_not_in_use(
    on_version_1: Services, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, on_version_1.settings, "default@1")
    assert main(["policy", "upgrade", "--to", "default@2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--to default@2 is not the pack in use (default@1)" in err
    assert "set MONITOR_POLICY" in err


def test_the_command_upgrades_with_a_progress_bar_and_an_audit_row(
    on_version_1: Services, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, on_version_1.settings, "default@2")
    assert main(["policy", "upgrade", "--to", "default", "--batch-size", "2"]) == 0
    captured = capsys.readouterr()
    view = json.loads(captured.out)
    assert (view["policy"], view["patients"], view["changed"]) == ("default@2", 4, 4)
    assert "policy upgrade to default@2" in captured.err
    assert "4/4" in captured.err
    audit = rows(on_version_1, "SELECT actor, action, resource FROM audit_log")
    assert audit[-1] == {
        "actor": "command-line",
        "action": "policy upgrade",
        "resource": "default@2: 4 of 4 patients",
    }


def _env(monkeypatch: pytest.MonkeyPatch, settings: Settings, policy: str) -> None:
    monkeypatch.setenv("MONITOR_DATABASE_URL", settings.database_url or "")
    monkeypatch.setenv("MONITOR_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MONITOR_FIXED_NOW", NOW.astimezone(dt.UTC).isoformat())
    monkeypatch.setenv("MONITOR_POLICY", policy)
