"""`docs/clinical-policy.md` stays true to the code: every rule id the rules emit has its heading,
every pack setting its table row (defaults and ranges as validated), every source its reference
and citing rules, every action its severity and audience."""

from __future__ import annotations

import ast
import pathlib
import re
from typing import Any, Literal, get_args, get_origin

import pytest

from policies.decisions import AUDIENCE, Action
from policies.fold import DEFAULT_SEVERITY
from policies.packs import DEFAULT, LABEL, PolicyPack
from policies.rules import sources

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "clinical-policy.md"
RULE_FILES = sorted((ROOT / "policies" / "rules").glob("*.py"))


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _headings(text: str) -> list[str]:
    return [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]


def _table(text: str, first_header: str) -> dict[str, list[str]]:
    """The table whose first header cell is `first_header`: rows by their first cell (no
    backticks), the other cells as written."""
    lines = text.splitlines()
    starts = [
        i
        for i, line in enumerate(lines)
        if line.startswith("|") and _cells(line)[0] == first_header
    ]
    assert starts, f"no table with the header {first_header!r}"
    rows: dict[str, list[str]] = {}
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _emitted_rule_ids() -> set[str]:
    """Every `rule="..."` literal of the rule functions (the ids decisions carry)."""
    found: set[str] = set()
    for path in RULE_FILES:
        found |= set(re.findall(r'\brule="([A-Z]\d+)"', path.read_text(encoding="utf-8")))
    return found


def _section(text: str, heading: str) -> str:
    """The text under `### heading`, up to the next heading."""
    match = re.search(rf"^###\s+{re.escape(heading)}\s*$(.*?)(?=^#)", text + "\n#", re.M | re.S)
    assert match is not None, f"no section {heading!r}"
    return " ".join(match.group(1).split())


def test_the_rule_ids_are_collected_from_the_code() -> None:
    # a guard for the collection itself: if the rules move, this test must be updated
    ids = _emitted_rule_ids()
    assert ids == {"D0", "D1", "D2", "D3", "D4", "D5", "D6", "D7", "D8", "D9", "L1", "L2", "L3"}
    assert {rule for rule in sources.RULE_SOURCES if rule != "L1-L3"} <= ids


@pytest.mark.parametrize("rule", sorted(_emitted_rule_ids()))
def test_every_rule_the_code_emits_has_its_heading(rule: str) -> None:
    headings = _headings(_text())
    assert any(re.match(rf"{rule}\b", h) for h in headings), f"no heading for rule {rule}"


def test_every_action_is_listed_with_its_severity_and_audience() -> None:
    rows = _table(_text(), "action")
    assert set(rows) == set(get_args(Action))
    for action, (rules, severity, audience) in rows.items():
        assert re.match(rf"{DEFAULT_SEVERITY[action]}\b", severity), action
        assert [a.strip() for a in audience.split(",")] == list(AUDIENCE[action]), action
        assert re.findall(r"[DL]\d", rules), action


def _shown(cell: str) -> Any:
    """A settings-table cell as a value: `1.3, 1.0, 0.7` a tuple, `0.05` a float, else text."""
    cell = cell.strip().strip("`")
    try:
        return ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        return cell


def test_the_settings_table_has_every_field_with_the_built_in_values() -> None:
    rows = _table(_text(), "setting")
    assert set(rows) == set(PolicyPack.model_fields)
    for field, cells in rows.items():
        assert _shown(cells[0]) == getattr(DEFAULT, field), f"{field}: default@1"
        assert _shown(cells[1]) == getattr(LABEL, field), f"{field}: label@1"


def test_the_settings_table_states_the_validated_ranges() -> None:
    rows = _table(_text(), "setting")
    for field, info in PolicyPack.model_fields.items():
        allowed = rows[field][2]
        numbers = set(re.findall(r"\d+(?:\.\d+)?", allowed))
        bounds = [getattr(m, k) for m in info.metadata for k in ("ge", "gt", "le") if hasattr(m, k)]
        for value in bounds:
            assert str(value) in numbers, f"{field}: bound {value} not in {allowed!r}"
        if get_origin(info.annotation) is Literal:
            for choice in get_args(info.annotation):
                assert f"`{choice}`" in allowed, f"{field}: {choice} not in {allowed!r}"
    # the validator's rules of the dose ladder (not field metadata)
    assert all(s in rows["dose_levels_mg_m2"][2] for s in ("2 to 6", "1.6", "descending"))


def test_every_pack_setting_is_named() -> None:
    text = _text()
    for field in PolicyPack.model_fields:
        assert f"`{field}`" in text, field


@pytest.mark.parametrize("source", sources.CATALOGUE, ids=lambda s: s.id)
def test_every_source_has_its_reference_and_citing_rules(source: sources.Source) -> None:
    body = _section(_text(), source.id)
    first_words = " ".join(source.reference.split()[:3])
    assert first_words in body, f"{source.id}: the reference should start {first_words!r}"
    assert source.reference.split()[-1] in body
    cited = re.search(r"Cited by ([^.]*)\.", body)
    assert cited is not None, f"{source.id}: no 'Cited by' line"
    assert [r.strip() for r in cited.group(1).split(",")] == sources.cited_by(source.id)


def test_the_thresholds_in_the_rule_text_are_the_defaults() -> None:
    """Where the text names a setting with a number in brackets, the number is its default."""
    text = " ".join(_text().split())
    named = [
        (field, value)
        for field, value in re.findall(r"`([a-z_0-9]+)` \((\d+(?:\.\d+)?)", text)
        if field in PolicyPack.model_fields
    ]
    assert len(named) >= 10
    for field, value in named:
        assert _shown(value) == getattr(DEFAULT, field), f"{field} ({value})"


def test_the_readme_points_to_the_clinical_policy_and_the_sources_route() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/clinical-policy.md" in readme
    assert re.search(r"^\| `GET /v1/sources` \|", readme, re.M)
