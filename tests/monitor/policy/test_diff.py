"""`policy diff` (issue 13, item 5): per patient, what a change of pack would add, remove and
change, matched by trigger, action and reason, with counts by action."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from monitor.cli import main
from monitor.ingest.service import store_events
from monitor.policy.diff import compare_packs, diff_decisions
from monitor.services import Services
from policies import DEFAULT, LABEL, Decision
from tests.common.factories import assessment, at, enrollment, events, run

ROOT = pathlib.Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "timeline.jsonl"
# grade 2 sensory with pain 1: default reduces (D1), label holds (L2: N = 2 with pain)
TIMELINE = [
    enrollment(event_id="enr"),
    assessment(at(21), event_id="a1", sensory=2, pain=1),
]


def decisions(pack: Any) -> list[Decision]:
    return run(*TIMELINE, pack=pack)


def test_a_pack_against_itself_changes_nothing() -> None:
    result = diff_decisions("P1", decisions(DEFAULT), decisions(DEFAULT))
    assert (result.added, result.removed, result.changed) == ([], [], [])
    assert result.unchanged == len(decisions(DEFAULT))


def test_added_removed_and_unchanged_are_matched_by_trigger_action_and_reason() -> None:
    result = diff_decisions("P1", decisions(DEFAULT), decisions(LABEL))
    assert [(d["trigger"], d["action"], d["rule"]) for d in result.added] == [("a1", "hold", "L2")]
    assert [(d["trigger"], d["action"], d["rule"]) for d in result.removed] == [
        ("a1", "reduce_dose", "D1")
    ]
    # the reassessments the two packs schedule are the same, whatever their ids and policy
    assert result.unchanged == 2
    assert result.changed == []


def test_a_changed_decision_names_what_differs() -> None:
    before = decisions(DEFAULT)
    moved = [
        d.model_copy(update={"due_at": d.due_at + (at(1) - at(0))})
        if d.action == "schedule_reassessment" and d.trigger == "a1"
        else d
        for d in before
    ]
    [changed] = diff_decisions("P1", before, moved).changed
    assert changed["fields"] == ["due_at"]
    assert changed["from"]["due_at"] != changed["to"]["due_at"]


def test_counts_by_action_over_patients() -> None:
    two = [*TIMELINE, enrollment(event_id="enr-2", patient="P2")]
    by_patient: dict[str, list[Any]] = {}
    for event in events(*two):
        by_patient.setdefault(event.patient_id, []).append(event)
    result = compare_packs(DEFAULT, LABEL, sorted(by_patient.items()), at(30)).view()
    assert result["patients"] == 2
    assert result["patients_changed"] == 1
    assert result["counts"] == {
        "added": {"hold": 1},
        "removed": {"reduce_dose": 1},
        "changed": {},
    }
    assert [p["patient_id"] for p in result["by_patient"]] == ["P1"]


def test_the_command_over_the_example_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["policy", "diff", "--from", "default@1", "--to", "label@1", "--events",
                 str(EXAMPLE)])  # fmt: skip
    assert code == 0
    view = json.loads(capsys.readouterr().out)
    assert (view["from"], view["to"], view["patients"]) == ("default@1", "label@1", 6)
    assert view["counts"]["removed"]["reduce_dose"] >= 1
    assert view["patients_changed"] == len(view["by_patient"])


def test_the_html_page_escapes_what_it_shows(tmp_path: pathlib.Path) -> None:
    page = tmp_path / "diff.html"
    code = main(["policy", "diff", "--from", "default@1", "--to", "label@1", "--events",
                 str(EXAMPLE), "--format", "html", "--out", str(page)])  # fmt: skip
    assert code == 0
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "default@1 &rarr; label@1" in html
    assert "<script" not in html


def test_an_unknown_pack_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["policy", "diff", "--from", "default@1", "--to", "strict@3", "--events",
                 str(EXAMPLE)])  # fmt: skip
    assert code == 2
    assert "unknown pack 'strict@3'" in capsys.readouterr().err


def test_the_command_over_the_database(
    services: Services, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store_events(services.sessions, events(*TIMELINE), at(22))
    monkeypatch.setenv("MONITOR_DATABASE_URL", services.settings.database_url or "")
    monkeypatch.setenv("MONITOR_FIXED_NOW", "2026-02-01T00:00:00Z")
    code = main(["policy", "diff", "--from", "default@1", "--to", "label@1", "--database"])
    assert code == 0, capsys.readouterr().err
    view = json.loads(capsys.readouterr().out)
    assert view["patients"] == 1
    assert view["until"] == "2026-02-01T00:00:00Z"
    assert view["counts"]["added"] == {"hold": 1}
    assert view["unreadable_events"] == 0
