"""Policy packs: the rule family and its thresholds, as one validated settings object.

`default` is the mission's policy (D0-D7); `label` replaces D1-D2 by the prescribing-information
table (L1-L3). A site tunes thresholds by building a pack from a mapping (`pack_from_mapping`),
e.g. read from its TOML file by the command line; unknown keys and out-of-range values are
rejected with the key, the value and the allowed range.

Built-in packs are named with their version (`default@1`, what every decision's `policy` field
says) or without it (the latest version), so past decisions can be replayed under the pack
that made them.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from policies.events import Route, Schedule

RuleFamily = Literal["default", "label"]
CycleAnchor = Literal["course_start", "day1_dose"]  # V3


class PolicyPack(BaseModel):
    """One pack: which rules apply and every threshold they use (POLICY.md defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,39}$")]
    version: Annotated[int, Field(ge=1, le=10_000)] = 1
    rules: RuleFamily

    dose_levels_mg_m2: Annotated[tuple[float, ...], Field(strict=False)] = (1.3, 1.0, 0.7)
    dose_tolerance_mg_m2: Annotated[float, Field(ge=0, le=0.2)] = 0.05
    reduction_schedule: Schedule = "weekly"  # default pack: D1 reduces to weekly SC
    reduction_route: Route = "SC"
    resume_dose_mg_m2: Annotated[float, Field(gt=0, le=1.6)] = 0.7  # label pack: L2 resume
    resume_schedule: Schedule = "weekly"

    discontinue_grade: Annotated[int, Field(ge=2, le=4)] = 3
    severe_autonomic_grade: Annotated[int, Field(ge=1, le=4)] = 3
    risk_age_years: Annotated[int, Field(ge=18, le=120)] = 65

    coasting_window_days: Annotated[int, Field(ge=14, le=365)] = 90
    watch_interval_days: Annotated[int, Field(ge=1, le=90)] = 14
    followup_interval_days: Annotated[int, Field(ge=1, le=180)] = 28
    coasting_recheck_days: Annotated[int, Field(ge=1, le=60)] = 7
    escalation_answer_days: Annotated[int, Field(ge=1, le=60)] = 7
    overdue_grace_days: Annotated[int, Field(ge=0, le=30)] = 2

    # Version 2 (V1-V10), each off (its version-1 value) unless the pack switches it on.
    # V1. Immune-mediated red flags at any grade: the first assessment of a course with a red
    # flag asks for the work-up (D2), whatever the grade and the course's state.
    workup_on_any_red_flag: bool = False
    # V6. A new course after severe neuropathy: a risk factor for D0, and a review.
    prior_course_risk: bool = False
    # V7. An enrolment without baseline grades asks for them (D0 review).
    baseline_prompt: bool = False
    # V8. The neurotoxic co-medications D0 counts; `contains`: a concomitant name containing a
    # listed one (version 1), `exact`: equal to one, ignoring case and extra spaces (version 2).
    neurotoxic_drugs: Annotated[
        tuple[str, ...], Field(strict=False, min_length=1, max_length=64)
    ] = (
        "thalidomide",
        "vincristine",
    )
    neurotoxic_match: Literal["contains", "exact"] = "contains"
    # V3. Cycles follow the doses
    cycle_anchor: Annotated[
        CycleAnchor,
        Field(
            description=(
                "What on-treatment reassessments are due from: `course_start` (version 1: the "
                "course start and the assessment's cycle number) or `day1_dose` (version 2: "
                "the latest day-1 dose given on treatment, else the course start)"
            )
        ),
    ] = "course_start"
    pre_cycle_window_days: Annotated[
        int,
        Field(
            ge=0,
            le=6,
            description=(
                "With `day1_dose`: a grading up to this many days before a planned cycle start "
                "is that cycle's pre-cycle grading (0-6: less than the shortest cycle, 7 days)"
            ),
        ),
    ] = 3
    # V2. Dose interval, route and schedule
    min_dose_interval_hours: Annotated[
        int | None,
        Field(
            ge=0,
            le=168,
            description=(
                "D6 and clearance: a dose less than this many hours after the course's "
                "previous one is `dose_interval_too_short`, and the chair is not cleared "
                "until the interval ends. None (version 1) or 0: no minimum interval. "
                "0-168 h (a week: more would flag every weekly dose)."
            ),
        ),
    ] = None
    check_route_schedule: Annotated[
        bool,
        Field(
            description=(
                "D6: also `route_not_recommended` and `schedule_not_recommended` (weekly "
                "doses less than 6 days apart), except after a recorded `completed`. "
                "Version 1: false."
            )
        ),
    ] = False
    # V4. Recorded holds are not label holds
    recorded_hold_resumes: Annotated[
        bool,
        Field(
            description=(
                "True (version 1): a recorded `treatment_change` `held` is the same hold as "
                "the label pack's own L2 `hold`, so a later assessment with N <= 1 emits "
                "`resume`, a recorded `resumed` or an L2 `resume` ends either, and a recorded "
                "`dose_reduced` does not end it. False (version 2, V4): `resume` follows only "
                "the service's own `hold`; a recorded `held` is a hold for D6 until a recorded "
                "`resumed`, `dose_reduced`, `discontinued` or `completed`, the label rows still "
                "apply during it, and an L2 `resume` does not end it."
            )
        ),
    ] = True
    # V5. Lost to follow-up: days after a `reassessment_overdue` until a reassessment still not
    # done emits `review_required` (`reassessment_missed`); None (version 1): never
    missed_escalate_days: Annotated[int, Field(ge=1, le=90)] | None = None
    # V9. Patient-reported grades advise, clinicians decide: a `source: patient` assessment
    # changes no state and asks the nurse to review (D9) what a clinician's grading would do.
    # False (version 1): it is folded as a clinician's.
    patient_reports_advise_only: bool = False
    # V10. D8, response to immunotherapy: the first clinician or nurse grading this many days
    # after an episode's first event is compared with the last one before it; None (version
    # 1): no check. A response is G lower, MRC sum score up by `mrc_response_points`, INCAT
    # down by `incat_response_points`, or Rankin down by 1.
    response_check_days: Annotated[int, Field(ge=7, le=180)] | None = None
    mrc_response_points: Annotated[int, Field(ge=1, le=60)] = 2
    incat_response_points: Annotated[int, Field(ge=1, le=10)] = 1

    @field_validator("dose_levels_mg_m2")
    @classmethod
    def _levels_descend(cls, levels: tuple[float, ...]) -> tuple[float, ...]:
        if not 2 <= len(levels) <= 6:
            raise ValueError("needs 2 to 6 dose levels")
        if any(not 0 < level <= 1.6 for level in levels):
            raise ValueError("every level must be > 0 and <= 1.6 mg/m2")
        if any(a <= b for a, b in pairwise(levels)):
            raise ValueError("levels must strictly descend, e.g. [1.3, 1.0, 0.7]")
        return levels

    @field_validator("neurotoxic_drugs")
    @classmethod
    def _drug_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(" ".join(name.split()).lower() for name in names)
        if any(not 1 <= len(name) <= 64 for name in cleaned):
            raise ValueError("each drug name needs 1 to 64 characters")
        return cleaned

    @property
    def label(self) -> str:
        """The `policy` field of decisions: pack name and version, e.g. `default@1`."""
        return f"{self.name}@{self.version}"

    @property
    def lowest_dose(self) -> float:
        return self.dose_levels_mg_m2[-1]

    def next_lower_dose(self, dose: float) -> float | None:
        """The highest level clearly below `dose`, or None at (or under) the lowest level."""
        for level in self.dose_levels_mg_m2:
            if level < dose - self.dose_tolerance_mg_m2 / 2:
                return level
        return None


# Version 1: what shipped first; kept so that past decisions replay exactly.
DEFAULT = PolicyPack(name="default", rules="default")
LABEL = PolicyPack(name="label", rules="label")
# Version 2: V1-V10 switched on (POLICY.md, "Version 2 of both packs"; docs/clinical-policy.md).
VERSION_2_SETTINGS: dict[str, Any] = {
    "version": 2,
    "workup_on_any_red_flag": True,  # V1
    "min_dose_interval_hours": 72,  # V2
    "check_route_schedule": True,  # V2
    "cycle_anchor": "day1_dose",  # V3
    "recorded_hold_resumes": False,  # V4 (both packs: a recorded dose_reduced ends the hold)
    "missed_escalate_days": 7,  # V5
    "prior_course_risk": True,  # V6
    "baseline_prompt": True,  # V7
    "neurotoxic_drugs": (  # V8
        "thalidomide", "vincristine", "vinblastine", "vinorelbine", "cisplatin", "oxaliplatin",
        "paclitaxel", "nab-paclitaxel", "docetaxel", "brentuximab vedotin",
        "polatuzumab vedotin", "eribulin", "ixabepilone", "metronidazole", "linezolid",
        "nitrofurantoin",
    ),
    "neurotoxic_match": "exact",  # V8
    "patient_reports_advise_only": True,  # V9
    "response_check_days": 28,  # V10
}  # fmt: skip
DEFAULT_V2 = DEFAULT.model_copy(update=VERSION_2_SETTINGS)
LABEL_V2 = LABEL.model_copy(update=VERSION_2_SETTINGS)
# every version of each built-in pack, by `name@version` (the `policy` field of its decisions)
VERSIONED_PACKS: dict[str, PolicyPack] = {
    pack.label: pack for pack in (DEFAULT, LABEL, DEFAULT_V2, LABEL_V2)
}
# the latest version of each, by its bare name
BUILTIN_PACKS: dict[str, PolicyPack] = {"default": DEFAULT_V2, "label": LABEL_V2}
PackName = Literal["default", "label", "default@1", "label@1", "default@2", "label@2"]


def pack_names() -> list[str]:
    """What `--policy`, `MONITOR_POLICY` and a site file's `base` accept."""
    return [*sorted(BUILTIN_PACKS), *sorted(VERSIONED_PACKS)]


class PackError(ValueError):
    """A pack definition that can't be used; `problems` are `key: why` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def builtin_pack(name: str) -> PolicyPack:
    """A built-in pack: `default@1` (that version), or `default` (the latest)."""
    pack = BUILTIN_PACKS.get(name) or VERSIONED_PACKS.get(name)
    if pack is None:
        known = ", ".join(pack_names())
        raise PackError([f"policy: unknown pack {name!r}: expected one of {known}"])
    return pack


def pack_from_mapping(settings: dict[str, Any]) -> PolicyPack:
    """A site pack: `base` (a built-in pack), a `name`, and threshold overrides.

    Example (TOML): base = "default@1", name = "stmarys", version = 2, coasting_window_days = 120
    (`base` with or without its version: without, the latest).
    A pack whose thresholds differ from its base's must have its own name (not a built-in
    pack's), so decisions made with tuned thresholds never pass for the built-in pack's: their
    `policy` field and decision ids differ.
    """
    values = dict(settings)
    base_name = values.pop("base", "default")
    base = BUILTIN_PACKS.get(base_name) or VERSIONED_PACKS.get(base_name)
    if base is None:
        known = ", ".join(pack_names())
        raise PackError([f"base: {base_name!r} is not a built-in pack: expected one of {known}"])
    if "rules" in values:
        raise PackError(["rules: set by `base`, not directly"])
    try:
        pack = PolicyPack.model_validate(base.model_dump() | values)
    except ValidationError as exc:
        raise PackError([_pack_problem(err) for err in exc.errors()]) from None
    tuned = pack.model_copy(update={"name": base.name, "version": base.version}) != base
    if tuned and pack.name in BUILTIN_PACKS:
        raise PackError(
            [
                f"name: {pack.name!r} is a built-in pack's name, but the thresholds differ from "
                f'pack {base.name!r}: give the site pack its own name (e.g. "stmarys")'
            ]
        )
    return pack


def _pack_problem(err: Any) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "pack"
    if err["type"] == "extra_forbidden":
        known = ", ".join(sorted({*PolicyPack.model_fields, "base"} - {"rules"}))
        return f"{key}: unknown setting (known: {known})"
    return f"{key}: {err.get('input')!r}: {err['msg']}"
