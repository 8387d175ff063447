"""Site packs: `pack_from_mapping` (validated settings) and `load_pack` (--policy/--policy-file)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from monitor.policy_file import load_pack
from policies.packs import (
    BUILTIN_PACKS,
    DEFAULT,
    DEFAULT_V2,
    LABEL,
    LABEL_V2,
    PackError,
    PolicyPack,
    builtin_pack,
    pack_from_mapping,
)

KNOWN_SETTINGS = sorted({*PolicyPack.model_fields, "base"} - {"rules"})


def pack_problems(settings: dict[str, Any]) -> list[str]:
    with pytest.raises(PackError) as caught:
        pack_from_mapping(settings)
    return caught.value.problems


def write(tmp_path: pathlib.Path, text: str, name: str = "site.toml") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_problems(policy: str | None, path: pathlib.Path) -> list[str]:
    with pytest.raises(PackError) as caught:
        load_pack(policy, path)
    return caught.value.problems


# --- built-in packs -------------------------------------------------------------------------


def test_builtin_packs_carry_the_policy_md_defaults() -> None:
    assert DEFAULT.label == "default@1"
    assert DEFAULT.rules == "default"
    assert LABEL.label == "label@1"
    assert LABEL.rules == "label"
    assert DEFAULT.dose_levels_mg_m2 == (1.3, 1.0, 0.7)
    assert (DEFAULT.reduction_schedule, DEFAULT.reduction_route) == ("weekly", "SC")
    assert DEFAULT.discontinue_grade == 3
    assert DEFAULT.severe_autonomic_grade == 3
    assert DEFAULT.risk_age_years == 65
    assert DEFAULT.coasting_window_days == 90
    assert DEFAULT.watch_interval_days == 14
    assert DEFAULT.followup_interval_days == 28
    assert DEFAULT.coasting_recheck_days == 7
    assert DEFAULT.escalation_answer_days == 7
    assert DEFAULT.overdue_grace_days == 2
    assert DEFAULT.dose_tolerance_mg_m2 == 0.05
    assert (LABEL.resume_dose_mg_m2, LABEL.resume_schedule) == (0.7, "weekly")
    assert sorted(BUILTIN_PACKS) == ["default", "label"]


def test_unknown_builtin_pack() -> None:
    with pytest.raises(PackError) as caught:
        builtin_pack("strict")
    assert caught.value.problems == [
        "policy: unknown pack 'strict': expected one of "
        "default, label, default@1, default@2, label@1, label@2"
    ]


@pytest.mark.parametrize(
    ("dose", "lower"),
    [(1.3, 1.0), (1.0, 0.7), (0.7, None), (1.6, 1.3), (1.31, 1.0), (1.29, 1.0), (0.5, None)],
)
def test_next_lower_dose_moves_one_level_down(dose: float, lower: float | None) -> None:
    assert DEFAULT.next_lower_dose(dose) == lower


# --- pack_from_mapping ----------------------------------------------------------------------


def test_empty_mapping_is_the_default_pack() -> None:
    assert pack_from_mapping({}) == DEFAULT_V2  # the bare name: the latest version


def test_base_label_without_overrides_is_the_label_pack() -> None:
    assert pack_from_mapping({"base": "label"}) == LABEL_V2


def test_site_pack_with_name_version_and_overrides() -> None:
    settings = {
        "base": "label",
        "name": "stmarys",
        "version": 2,
        "coasting_window_days": 120,
        "dose_levels_mg_m2": [1.3, 1.0, 0.7, 0.5],
    }
    pack = pack_from_mapping(settings)
    assert pack.label == "stmarys@2"
    assert pack.rules == "label"
    assert pack.coasting_window_days == 120
    assert pack.dose_levels_mg_m2 == (1.3, 1.0, 0.7, 0.5)
    assert pack.lowest_dose == 0.5
    # Everything not overridden comes from the base.
    assert pack.watch_interval_days == LABEL.watch_interval_days == 14
    assert pack.resume_dose_mg_m2 == 0.7
    # The caller's mapping is left alone (`base` is popped from a copy).
    assert settings["base"] == "label"


def test_tuned_thresholds_need_a_name_of_their_own() -> None:
    """Tuned decisions must never pass for the built-in pack's (same policy label and ids)."""
    [problem] = pack_problems({"base": "label", "overdue_grace_days": 3})
    assert problem.startswith("name: 'label' is a built-in pack's name"), problem
    [problem] = pack_problems({"name": "default", "base": "label", "overdue_grace_days": 3})
    assert problem.startswith("name: 'default'"), problem
    pack = pack_from_mapping({"base": "label", "name": "site", "overdue_grace_days": 3})
    assert (pack.label, pack.overdue_grace_days) == ("site@2", 3)


def test_name_defaults_to_the_base_when_nothing_is_tuned() -> None:
    assert pack_from_mapping({"base": "label"}).label == "label@2"
    assert pack_from_mapping({"version": 4}).label == "default@4"


@pytest.mark.parametrize(
    ("settings", "key", "fragments"),
    [
        ({"coasting_window_days": 400}, "coasting_window_days", ["400", "365"]),
        ({"coasting_window_days": 13}, "coasting_window_days", ["13", "14"]),
        ({"discontinue_grade": 5}, "discontinue_grade", ["5", "4"]),
        ({"overdue_grace_days": -1}, "overdue_grace_days", ["-1", "0"]),
        ({"watch_interval_days": 14.5}, "watch_interval_days", ["14.5", "integer"]),
        ({"dose_tolerance_mg_m2": 0.3}, "dose_tolerance_mg_m2", ["0.3", "0.2"]),
        ({"resume_dose_mg_m2": 0}, "resume_dose_mg_m2", ["0", "greater than 0"]),
        ({"reduction_route": "IM"}, "reduction_route", ["'IM'", "'IV' or 'SC'"]),
        ({"resume_schedule": "daily"}, "resume_schedule", ["'daily'", "'weekly'"]),
        ({"name": "St Marys"}, "name", ["'St Marys'", "pattern"]),
        ({"version": 0}, "version", ["0", "greater than or equal to 1"]),
        (
            {"dose_levels_mg_m2": [0.7, 1.0, 1.3]},
            "dose_levels_mg_m2",
            ["[0.7, 1.0, 1.3]", "strictly descend"],
        ),
        (
            {"dose_levels_mg_m2": [1.3, 1.3, 0.7]},
            "dose_levels_mg_m2",
            ["[1.3, 1.3, 0.7]", "strictly descend"],
        ),
        ({"dose_levels_mg_m2": [1.3]}, "dose_levels_mg_m2", ["[1.3]", "2 to 6"]),
        (
            {"dose_levels_mg_m2": [1.5, 1.3, 1.1, 0.9, 0.7, 0.5, 0.3]},
            "dose_levels_mg_m2",
            ["2 to 6"],
        ),
        ({"dose_levels_mg_m2": [1.7, 1.3]}, "dose_levels_mg_m2", ["[1.7, 1.3]", "<= 1.6"]),
        ({"dose_levels_mg_m2": [1.0, 0.0]}, "dose_levels_mg_m2", ["[1.0, 0.0]", "> 0"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_out_of_range_settings_name_the_key_value_and_range(
    settings: dict[str, Any], key: str, fragments: list[str]
) -> None:
    [problem] = pack_problems(settings)
    assert problem.startswith(f"{key}: "), problem
    for fragment in fragments:
        assert fragment in problem, f"{fragment!r} not in {problem!r}"


def test_unknown_setting_names_the_key_and_lists_the_known_ones() -> None:
    [problem] = pack_problems({"coasting_windw_days": 120})
    assert problem.startswith("coasting_windw_days: unknown setting (known: "), problem
    assert "coasting_window_days" in problem
    assert problem.endswith("(known: " + ", ".join(KNOWN_SETTINGS) + ")")
    assert "rules" not in problem.split("known: ")[1]


def test_every_problem_is_reported() -> None:
    problems = pack_problems({"name": "stmarys", "discontinue_grade": 5, "bogus": 1})
    assert [p.split(":")[0] for p in problems] == ["discontinue_grade", "bogus"]


def test_rules_are_set_by_the_base_only() -> None:
    assert pack_problems({"rules": "label"}) == ["rules: set by `base`, not directly"]


def test_base_that_is_not_a_string() -> None:
    assert pack_problems({"base": 3}) == [
        "base: 3 is not a built-in pack: expected one of "
        "default, label, default@1, default@2, label@1, label@2"
    ]


def test_unknown_base_is_reported_under_base() -> None:
    [problem] = pack_problems({"base": "strict"})
    assert problem.startswith("base: "), problem
    assert "'strict'" in problem
    assert "default, label" in problem


@pytest.mark.parametrize(
    ("key", "value"),
    [("overdue_grace_days", True), ("coasting_window_days", "120")],
    ids=["bool-as-days", "quoted-number"],
)
def test_settings_of_the_wrong_type_are_rejected(key: str, value: object) -> None:
    [problem] = pack_problems({key: value})
    assert problem.startswith(f"{key}: "), problem
    assert repr(value) in problem


# --- load_pack ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"), [(None, DEFAULT_V2), ("default", DEFAULT_V2), ("label", LABEL_V2)]
)
def test_builtin_pack_without_a_file(policy: str | None, expected: PolicyPack) -> None:
    assert load_pack(policy, None) is expected


def test_site_file(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        'base = "default"\nname = "stmarys"\nversion = 2\n'
        "coasting_window_days = 120\ndose_levels_mg_m2 = [1.3, 1.0, 0.7]\n",
    )
    pack = load_pack(None, path)
    assert pack.label == "stmarys@2"
    assert pack.rules == "default"
    assert pack.coasting_window_days == 120
    assert pack.dose_levels_mg_m2 == (1.3, 1.0, 0.7)


def test_file_base_wins_when_policy_is_not_given(tmp_path: pathlib.Path) -> None:
    pack = load_pack(None, write(tmp_path, 'base = "label"\nname = "north"\n'))
    assert (pack.label, pack.rules) == ("north@2", "label")


def test_policy_supplies_the_base_when_the_file_has_none(tmp_path: pathlib.Path) -> None:
    pack = load_pack("label", write(tmp_path, 'name = "site"\noverdue_grace_days = 1\n'))
    assert (pack.label, pack.rules, pack.overdue_grace_days) == ("site@2", "label", 1)


def test_policy_matching_the_base_is_fine(tmp_path: pathlib.Path) -> None:
    pack = load_pack("label", write(tmp_path, 'base = "label"\nname = "x"\n'))
    assert (pack.label, pack.rules) == ("x@2", "label")


def test_policy_conflicting_with_the_base(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, 'base = "default"\nname = "stmarys"\n')
    assert load_problems("label", path) == [
        f"{path}: base: 'default' differs from --policy 'label'"
    ]


def test_file_problems_are_prefixed_with_the_file(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "coasting_window_days = 400\nwatch_intervl_days = 7\n")
    problems = load_problems(None, path)
    assert len(problems) == 2
    assert problems[0] == (
        f"{path}: coasting_window_days: 400: Input should be less than or equal to 365"
    )
    assert problems[1].startswith(f"{path}: watch_intervl_days: unknown setting (known: ")


def test_invalid_toml(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "coasting_window_days = = 120\n")
    [problem] = load_problems(None, path)
    assert problem.startswith(f"{path}: not valid TOML: "), problem
    assert "line 1" in problem


def test_missing_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "absent.toml"
    assert load_problems(None, path) == [f"{path}: cannot be read: No such file or directory"]


def test_empty_file_is_the_base_pack(tmp_path: pathlib.Path) -> None:
    assert load_pack(None, write(tmp_path, "")) == DEFAULT_V2
    assert load_pack("label", write(tmp_path, "# nothing tuned\n")) == LABEL_V2


@pytest.mark.parametrize(
    ("name", "pack"),
    [
        ("default", DEFAULT_V2),
        ("label", LABEL_V2),
        ("default@1", DEFAULT),
        ("label@1", LABEL),
        ("default@2", DEFAULT_V2),
        ("label@2", LABEL_V2),
    ],
)
def test_a_pack_is_named_with_or_without_its_version(name: str, pack: PolicyPack) -> None:
    """Issue 13: `NAME@VERSION` selects that version (what decisions' `policy` names); the
    bare name, the latest."""
    assert builtin_pack(name) is pack
    assert pack_from_mapping({"base": name}) == pack


@pytest.mark.parametrize("name", ["default@9", "default@", "@1", "Default@1", "label@01"])
def test_an_unknown_version_is_refused(name: str) -> None:
    with pytest.raises(
        PackError, match="expected one of default, label, default@1, default@2, label@1, label@2"
    ):
        builtin_pack(name)


def test_a_site_pack_on_a_versioned_base_keeps_its_own_name() -> None:
    pack = pack_from_mapping({"base": "default@1", "name": "stmarys", "overdue_grace_days": 3})
    assert (pack.label, pack.rules, pack.overdue_grace_days) == ("stmarys@1", "default", 3)
    with pytest.raises(PackError, match="built-in pack's name"):
        pack_from_mapping({"base": "default@1", "name": "default", "overdue_grace_days": 3})
