"""`python -m monitor replay` as a user runs it: a subprocess on files (CONTRACT.md, "Replay")."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import random
import subprocess
import sys
from typing import Any

import pytest

from policies.events import EventValidationError, parse_event
from tests.common import factories as f
from tests.common.factories import at

ROOT = pathlib.Path(__file__).resolve().parents[3]
PLUS_ONE = dt.timezone(dt.timedelta(hours=1))
DECISION_KEYS = {
    "decision_id",
    "patient_id",
    "at",
    "trigger",
    "action",
    "severity",
    "audience",
    "rule",
    "policy",
    "rationale",
    "sources",
}


def replay(*args: str | pathlib.Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "replay", *map(str, args)],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def lines_of(*bodies: dict[str, Any]) -> list[str]:
    return [json.dumps(body) for body in bodies]


def write(tmp_path: pathlib.Path, lines: list[str], name: str = "events.jsonl") -> pathlib.Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def decisions_of(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return [json.loads(line) for line in proc.stdout.splitlines()]


def utc(text: str) -> dt.datetime:
    assert text.endswith("Z"), text
    return dt.datetime.fromisoformat(text[:-1] + "+00:00")


def assert_invalid(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """Exit 2, nothing on stdout; the stderr lines."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    return proc.stderr.splitlines()


# A two-patient timeline: P1 in UTC (D0 advice, D1 reduction, D6 dose above recommended),
# P2 written at +01:00 (D2 discontinuation with pain advice, D3 watch).
P1_ENROL = f.enrollment(at(0), "P1", "p1-enr", route="IV", schedule="twice_weekly", age=70)
P1_GRADE_1 = f.assessment(at(20), "P1", "p1-a1", sensory=1, cycle=1)
P1_DOSE = f.administration(at(21), 1.3, "P1", "p1-x1")
P2_ENROL = f.enrollment(at(1).astimezone(PLUS_ONE), "P2", "p2-enr", age=50)
P2_GRADE_3 = f.assessment(at(8).astimezone(PLUS_ONE), "P2", "p2-a1", sensory=3, pain=2, cycle=1)
TIMELINE = lines_of(P1_ENROL, P1_GRADE_1, P1_DOSE, P2_ENROL, P2_GRADE_3)


def z(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- valid input ----------------------------------------------------------------------------


def test_decisions_are_json_lines_sorted_by_at_then_id(tmp_path: pathlib.Path) -> None:
    proc = replay(write(tmp_path, TIMELINE), "--policy", "default@1")
    decisions = decisions_of(proc)
    assert proc.stdout.endswith("\n")
    keys = [(utc(d["at"]), d["decision_id"]) for d in decisions]
    assert keys == sorted(keys)
    assert len({d["decision_id"] for d in decisions}) == len(decisions) == 9
    assert sorted((d["at"], d["patient_id"], d["action"], d["trigger"]) for d in decisions) == [
        (z(at(0)), "P1", "advise_subcutaneous_weekly", "p1-enr"),
        (z(at(0)), "P1", "schedule_reassessment", "p1-enr"),
        (z(at(1)), "P2", "schedule_reassessment", "p2-enr"),
        (z(at(8)), "P2", "coasting_watch_started", "p2-a1"),
        (z(at(8)), "P2", "discontinue", "p2-a1"),
        (z(at(8)), "P2", "schedule_reassessment", "p2-a1"),
        (z(at(20)), "P1", "reduce_dose", "p1-a1"),
        (z(at(20)), "P1", "schedule_reassessment", "p1-a1"),
        (z(at(21)), "P1", "adherence_deviation", "p1-x1"),
    ]
    for decision in decisions:
        assert decision.keys() >= DECISION_KEYS
        assert decision["policy"] == "default@1"
        assert None not in decision.values()  # unset action fields are left out
    by_action = {(d["patient_id"], d["action"], d["trigger"]): d for d in decisions}
    reduce = by_action["P1", "reduce_dose", "p1-a1"]
    assert (reduce["dose_mg_m2"], reduce["schedule"], reduce["route"]) == (1.0, "weekly", "SC")
    assert (reduce["rule"], reduce["severity"]) == ("D1", "warning")
    assert reduce["sources"] == ["S3", "S5", "S6"]
    advice = by_action["P1", "advise_subcutaneous_weekly", "p1-enr"]
    assert (advice["rule"], advice["severity"], advice["schedule"], advice["route"]) == (
        "D0",
        "info",
        "weekly",
        "SC",
    )
    assert "age 70" in advice["rationale"]
    deviation = by_action["P1", "adherence_deviation", "p1-x1"]
    assert (deviation["reason"], deviation["severity"], deviation["rule"]) == (
        "dose_above_recommended",
        "warning",
        "D6",
    )
    stop = by_action["P2", "discontinue", "p2-a1"]
    assert (stop["rule"], stop["severity"]) == ("D2", "urgent")
    assert "carfilzomib" in stop["rationale"]
    assert "duloxetine" in stop["rationale"]  # pain 2
    watch = by_action["P2", "coasting_watch_started", "p2-a1"]
    assert watch["window_end"] == z(at(8 + 90))
    first_check = by_action["P2", "schedule_reassessment", "p2-a1"]
    assert first_check["due_at"] == z(at(8 + 14))
    assert by_action["P1", "schedule_reassessment", "p1-enr"]["due_at"] == z(at(21))
    # The +01:00 enrolment comes out in UTC.
    assert by_action["P2", "schedule_reassessment", "p2-enr"]["at"] == "2026-01-06T09:00:00Z"


def test_output_is_what_the_engine_says(tmp_path: pathlib.Path) -> None:
    proc = replay(write(tmp_path, TIMELINE), "--policy", "default@1")
    expected = [
        d.model_dump_json(exclude_none=True)
        for d in f.run(P1_ENROL, P1_GRADE_1, P1_DOSE, P2_ENROL, P2_GRADE_3)
    ]
    assert proc.stdout.splitlines() == expected


def test_doses_in_mg_are_replayed_and_refused_as_the_engine_says(tmp_path: pathlib.Path) -> None:
    """A dose in mg: compared at the enrolment's BSA, else `dose_not_comparable`; both dose
    fields on one line are refused naming `dose_mg`."""
    in_mg = f.administration(at(1), 0, "P4", "p4-x1")
    del in_mg["dose_mg_m2"]
    bodies = [
        f.enrollment(at(0), "P3", "p3-enr", bsa_m2=1.82),
        {**in_mg, "patient_id": "P3", "event_id": "p3-x1", "dose_mg": 3.0},  # 1.65 mg/m2
        f.enrollment(at(0), "P4", "p4-enr"),
        {**in_mg, "dose_mg": 2.4},
    ]
    proc = replay(write(tmp_path, lines_of(*bodies)), "--policy", "default@1")
    assert proc.stdout.splitlines() == [
        d.model_dump_json(exclude_none=True) for d in f.run(*bodies)
    ]
    found = {(d["trigger"], d["action"]): d for d in decisions_of(proc)}
    assert found["p3-x1", "adherence_deviation"]["reason"] == "dose_above_recommended"
    assert (
        "3.00 mg (1.65 mg/m2 at BSA 1.82 m2)" in found["p3-x1", "adherence_deviation"]["rationale"]
    )
    assert found["p4-x1", "review_required"]["reason"] == "dose_not_comparable"
    assert ("p4-x1", "adherence_deviation") not in found
    both = json.dumps({**in_mg, "dose_mg": 2.4, "dose_mg_m2": 1.3})
    [problem] = assert_invalid(replay(write(tmp_path, [both], "both.jsonl")))
    assert problem.startswith("line 1: dose_mg: give the dose once")


def test_shuffled_and_duplicated_lines_give_identical_output(tmp_path: pathlib.Path) -> None:
    reference = replay(write(tmp_path, TIMELINE, "ordered.jsonl"))
    assert reference.returncode == 0
    rng = random.Random(20260105)
    for attempt in range(3):
        noisy = TIMELINE + rng.sample(TIMELINE, 3) + ["", "   "]
        rng.shuffle(noisy)
        proc = replay(write(tmp_path, noisy, f"noisy-{attempt}.jsonl"))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == reference.stdout


def test_windows_line_endings_are_read(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "crlf.jsonl"
    path.write_bytes("".join(line + "\r\n" for line in TIMELINE).encode())
    assert replay(path).stdout == replay(write(tmp_path, TIMELINE)).stdout


def test_standard_input_with_dash(tmp_path: pathlib.Path) -> None:
    from_file = replay(write(tmp_path, TIMELINE), "--policy", "default@1")
    from_stdin = replay("-", "--policy", "default@1", stdin="\n".join(reversed(TIMELINE)) + "\n")
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout == from_file.stdout
    assert len(from_stdin.stdout.splitlines()) == 9


def test_invalid_standard_input() -> None:
    lines = assert_invalid(replay("-", stdin='{"type": "assessment"}\n'))
    assert lines[0].startswith("line 1: ")
    assert any(line.startswith("line 1: event_id: ") for line in lines)


# --- conflicting ids ------------------------------------------------------------------------


def test_event_id_reused_with_another_body(tmp_path: pathlib.Path) -> None:
    changed = dict(P1_GRADE_1, grades={"sensory": 2})
    path = write(tmp_path, [*TIMELINE, json.dumps(P1_GRADE_1), json.dumps(changed)])
    assert assert_invalid(replay(path)) == [
        "line 7: event_id: 'p1-a1' was already used on line 2 with a different body "
        "(an event id may only be re-sent unchanged)"
    ]


def test_same_instant_with_another_offset_is_another_body(tmp_path: pathlib.Path) -> None:
    other_offset = dict(P1_ENROL, occurred_at=at(0).astimezone(PLUS_ONE).isoformat())
    [line] = assert_invalid(replay(write(tmp_path, [*TIMELINE, json.dumps(other_offset)])))
    assert line.startswith("line 6: event_id: 'p1-enr' was already used on line 1 ")


# --- invalid input --------------------------------------------------------------------------


def expected_problems(number: int, raw: str) -> list[str]:
    with pytest.raises(EventValidationError) as caught:
        parse_event(raw)
    return [f"line {number}: {problem}" for problem in caught.value.problems]


def test_every_problem_of_every_bad_line_is_reported(tmp_path: pathlib.Path) -> None:
    grade_5 = json.dumps(f.assessment(at(3), "P1", "bad-1", sensory=5))
    not_json = '{"event_id": "bad-2", "type": "assessment",'
    two_problems = json.dumps(
        {k: v for k, v in f.assessment(at(4), "P1", "bad-3").items() if k != "occurred_at"}
        | {"colour": "red"}
    )
    naive = json.dumps(f.assessment(at(5), "P1", "bad-4") | {"occurred_at": "2026-01-10T09:00:00"})
    lenalidomide = json.dumps(f.enrollment(at(6), "P3", "bad-5", drug="lenalidomide"))
    lines = [
        TIMELINE[0],  # 1
        grade_5,  # 2
        not_json,  # 3
        TIMELINE[1],  # 4
        "",  # 5
        two_problems,  # 6
        naive,  # 7
        "[1, 2]",  # 8
        lenalidomide,  # 9
    ]
    stderr = assert_invalid(replay(write(tmp_path, lines)))
    expected = [
        *expected_problems(2, grade_5),
        stderr[1],  # the JSON error's position: see the test below
        *expected_problems(6, two_problems),
        *expected_problems(7, naive),
        *expected_problems(8, "[1, 2]"),
        *expected_problems(9, lenalidomide),
    ]
    assert stderr == expected
    assert len(stderr) == 7  # line 6 has two problems
    assert stderr[0].startswith("line 2: grades.sensory: 5 is out of range: must be at most 4")
    assert stderr[1].startswith("line 3: event: not valid JSON")
    assert stderr[2] == "line 6: occurred_at: is required"
    assert stderr[3].startswith("line 6: colour: unknown field")
    assert stderr[4].startswith("line 7: occurred_at: '2026-01-10T09:00:00' has no UTC offset")
    assert stderr[5].startswith("line 8: event: ")
    assert stderr[6].startswith("line 9: drug: 'lenalidomide' is not supported")


def test_json_error_position_is_within_the_line(tmp_path: pathlib.Path) -> None:
    truncated = '{"event_id": "bad-2", "type": "assessment",'
    [line] = assert_invalid(replay(write(tmp_path, [TIMELINE[0], TIMELINE[1], truncated])))
    assert line.startswith("line 3: event: not valid JSON"), line
    assert "line 2" not in line, line  # the position must not point at another line


def test_line_numbers_count_blank_lines(tmp_path: pathlib.Path) -> None:
    bad = json.dumps(f.assessment(at(3), "P1", "bad-1", pain=4))
    stderr = assert_invalid(replay(write(tmp_path, ["", TIMELINE[0], "", "", bad])))
    assert stderr == [
        "line 5: grades.pain: 4 is out of range: must be at most 3 "
        "(CTCAE v5 neuralgia is graded 0-3)"
    ]


def test_one_bad_line_stops_all_output(tmp_path: pathlib.Path) -> None:
    bad = json.dumps(f.assessment(at(30), "P1", "late", motor=5))
    stderr = assert_invalid(replay(write(tmp_path, [*TIMELINE, bad])))
    assert [line.split(": ")[:2] for line in stderr] == [["line 6", "grades.motor"]]


@pytest.mark.parametrize("content", ["", "\n\n  \n\t\n"], ids=["empty-file", "blank-lines-only"])
def test_a_file_without_events(tmp_path: pathlib.Path, content: str) -> None:
    path = tmp_path / "nothing.jsonl"
    path.write_text(content, encoding="utf-8")
    assert assert_invalid(replay(path)) == ["line 1: file: is empty: there are no events to read"]


def test_missing_events_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "absent.jsonl"
    assert assert_invalid(replay(path)) == [f"{path}: cannot be read: No such file or directory"]


# --- the clock (--until) --------------------------------------------------------------------

ENROL_ONLY = lines_of(f.enrollment(at(0), "P1", "e0"))  # first reassessment due at(21), grace 2


def overdue(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in decisions if d["action"] == "reassessment_overdue"]


def test_until_fires_an_overdue_reassessment(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, ENROL_ONLY)
    assert overdue(decisions_of(replay(path))) == []  # default clock: the latest event
    [late] = overdue(decisions_of(replay(path, "--until", z(at(40)))))
    assert late["at"] == z(at(23))
    assert late["due_at"] == z(at(21))
    assert (late["trigger"], late["rule"], late["severity"]) == (
        "timer:reassessment_overdue",
        "D5",
        "warning",
    )
    assert late["audience"] == ["nurse"]


def test_until_is_inclusive_and_honours_its_offset(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, ENROL_ONLY)
    exactly = at(23).astimezone(PLUS_ONE).isoformat()  # 2026-01-28T10:00:00+01:00
    just_before = (at(23) - dt.timedelta(seconds=1)).isoformat()
    assert len(overdue(decisions_of(replay(path, "--until", exactly)))) == 1
    assert overdue(decisions_of(replay(path, "--until", just_before))) == []


def test_an_assessment_exactly_at_due_plus_grace_is_on_time(tmp_path: pathlib.Path) -> None:
    on_time = f.assessment(at(23), "P1", "a1", sensory=0, cycle=1)
    path = write(tmp_path, [*ENROL_ONLY, json.dumps(on_time)])
    decisions = decisions_of(replay(path, "--until", z(at(23))))
    assert overdue(decisions) == []
    assert [d["trigger"] for d in decisions if d["action"] == "schedule_reassessment"] == [
        "e0",
        "a1",
    ]


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        ("2026-02-01T09:00:00", ["'2026-02-01T09:00:00'", "no UTC offset", "Z"]),
        ("2026-02-01", ["'2026-02-01'"]),
        ("next tuesday", ["'next tuesday'", "RFC 3339"]),
    ],
    ids=["no-offset", "date-only", "words"],
)
def test_until_without_an_offset_is_refused(
    tmp_path: pathlib.Path, value: str, fragments: list[str]
) -> None:
    stderr = "\n".join(assert_invalid(replay(write(tmp_path, ENROL_ONLY), "--until", value)))
    assert "--until" in stderr
    for fragment in fragments:
        assert fragment in stderr


def test_until_hint_for_a_date_is_usable(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, ENROL_ONLY)
    first = "\n".join(assert_invalid(replay(path, "--until", "2026-02-01")))
    assert "2026-02-01Z" not in first, first  # a date with Z is no date-time either
    second = "\n".join(assert_invalid(replay(path, "--until", "2026-02-01Z")))
    assert "ZZ" not in second, second


# --- packs ----------------------------------------------------------------------------------

GRADE_2_WITH_PAIN = lines_of(
    f.enrollment(at(0), "P1", "e0"), f.assessment(at(20), "P1", "a1", sensory=2, pain=1, cycle=1)
)


def test_policy_label_changes_the_policy_field_and_the_rules(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, GRADE_2_WITH_PAIN)
    default = decisions_of(replay(path, "--policy", "default@1"))
    label = decisions_of(replay(path, "--policy", "label@1"))
    assert {d["policy"] for d in default} == {"default@1"}
    assert {d["policy"] for d in label} == {"label@1"}
    assert {(d["action"], d["rule"]) for d in default if d["trigger"] == "a1"} == {
        ("reduce_dose", "D1"),
        ("schedule_reassessment", "D5"),
    }
    assert {(d["action"], d["rule"]) for d in label if d["trigger"] == "a1"} == {
        ("hold", "L2"),
        ("schedule_reassessment", "D5"),
    }
    # The policy is part of every decision id.
    assert not {d["decision_id"] for d in default} & {d["decision_id"] for d in label}


def test_policy_default_is_the_default(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, GRADE_2_WITH_PAIN)
    assert replay(path, "--policy", "default").stdout == replay(path).stdout


@pytest.mark.parametrize("policy", ["default@1", "label@1", "default@2", "label@2"])
def test_policy_takes_a_version(tmp_path: pathlib.Path, policy: str) -> None:
    """Issue 13: the version a decision names (`"policy": "default@1"`) replays it; the bare
    name is the latest version (2)."""
    path = write(tmp_path, GRADE_2_WITH_PAIN)
    versioned = replay(path, "--policy", policy)
    assert versioned.returncode == 0, versioned.stderr
    bare = replay(path, "--policy", policy.partition("@")[0]).stdout
    assert (versioned.stdout == bare) == policy.endswith("@2")
    assert all(d["policy"] == policy for d in decisions_of(versioned))


def test_unknown_policy_is_refused(tmp_path: pathlib.Path) -> None:
    stderr = "\n".join(assert_invalid(replay(write(tmp_path, ENROL_ONLY), "--policy", "strict")))
    assert "--policy" in stderr
    assert "'strict'" in stderr
    assert "default" in stderr
    assert "label" in stderr


STOP = lines_of(
    f.enrollment(at(0), "P1", "e0"), f.assessment(at(20), "P1", "a1", sensory=3, cycle=1)
)


def write_toml(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_policy_file_tunes_the_coasting_window(tmp_path: pathlib.Path) -> None:
    events = write(tmp_path, STOP)
    site = write_toml(
        tmp_path, 'base = "default"\nname = "stmarys"\nversion = 2\ncoasting_window_days = 120\n'
    )
    [default_watch] = [
        d for d in decisions_of(replay(events)) if d["action"] == "coasting_watch_started"
    ]
    tuned = decisions_of(replay(events, "--policy-file", site))
    [tuned_watch] = [d for d in tuned if d["action"] == "coasting_watch_started"]
    assert default_watch["window_end"] == z(at(20 + 90))
    assert tuned_watch["window_end"] == z(at(20 + 120))
    assert {d["policy"] for d in tuned} == {"stmarys@2"}
    assert "2026-05-25" in tuned_watch["rationale"]  # watch until at(20) + 120 days


def test_policy_file_with_policy_label(tmp_path: pathlib.Path) -> None:
    site = write_toml(tmp_path, 'name = "north"\noverdue_grace_days = 1\n')
    decisions = decisions_of(
        replay(write(tmp_path, GRADE_2_WITH_PAIN), "--policy", "label@1", "--policy-file", site)
    )
    assert {d["policy"] for d in decisions} == {"north@1"}
    assert "hold" in [d["action"] for d in decisions]


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        ("coasting_windw_days = 120\n", ["coasting_windw_days: unknown setting", "known: "]),
        (
            "coasting_window_days = 400\n",
            ["coasting_window_days: 400", "less than or equal to 365"],
        ),
        (
            "dose_levels_mg_m2 = [0.7, 1.0, 1.3]\n",
            ["dose_levels_mg_m2: [0.7, 1.0, 1.3]", "strictly descend"],
        ),
        ("coasting_window_days = = 120\n", ["not valid TOML"]),
        ('rules = "label"\n', ["rules: set by `base`"]),
    ],
    ids=["unknown-key", "out-of-range", "ascending-doses", "bad-toml", "rules"],
)
def test_invalid_policy_file(tmp_path: pathlib.Path, toml: str, fragments: list[str]) -> None:
    site = write_toml(tmp_path, toml)
    [line] = assert_invalid(replay(write(tmp_path, STOP), "--policy-file", site))
    assert line.startswith(f"policy: {site}: "), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"


def test_policy_file_conflicting_with_policy(tmp_path: pathlib.Path) -> None:
    site = write_toml(tmp_path, 'base = "default"\nname = "stmarys"\n')
    stderr = assert_invalid(
        replay(write(tmp_path, STOP), "--policy", "label", "--policy-file", site)
    )
    assert stderr == [f"policy: {site}: base: 'default' differs from --policy 'label'"]


def test_missing_policy_file(tmp_path: pathlib.Path) -> None:
    site = tmp_path / "absent.toml"
    stderr = assert_invalid(replay(write(tmp_path, STOP), "--policy-file", site))
    assert stderr == [f"policy: {site}: cannot be read: No such file or directory"]
