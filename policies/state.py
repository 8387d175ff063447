"""The small explicit state the fold keeps per patient and course (ARCHITECTURE.md, "Policies")."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from policies.events import Assessment, BaselineGrades

CourseStatus = Literal["active", "held", "discontinued", "completed"]
WatchState = Literal["none", "active", "closed"]


class GradeSet(NamedTuple):
    """The four graded domains of one assessment, absent domains as 0."""

    sensory: int = 0
    motor: int = 0
    pain: int = 0
    autonomic: int = 0

    @classmethod
    def of(cls, grades: BaselineGrades | None) -> GradeSet:
        if grades is None:
            return ZERO_GRADES
        return cls(grades.sensory or 0, grades.motor or 0, grades.pain or 0, grades.autonomic or 0)

    @property
    def overall(self) -> int:
        """G of POLICY.md: max(sensory, motor, pain)."""
        return max(self.sensory, self.motor, self.pain)

    def worse_than(self, other: GradeSet) -> bool:
        """Worsening: any of the four domains higher than in `other`."""
        return (
            self.sensory > other.sensory
            or self.motor > other.motor
            or self.pain > other.pain
            or self.autonomic > other.autonomic
        )

    def label_tier(self, severe_autonomic_grade: int) -> int:
        """Row of the `label` pack table, N = max(sensory, motor), pain = pain >= 1.

        0 continue, 1 reduce (L1), 2 hold (L2), 3 discontinue (L3); the most severe row wins.
        """
        n = max(self.sensory, self.motor)
        pain = self.pain >= 1
        if n >= 4 or self.autonomic >= severe_autonomic_grade:
            return 3
        if n == 3 or (n == 2 and pain):
            return 2
        if n == 2 or (n == 1 and pain):
            return 1
        return 0

    def describe(self) -> str:
        return (
            f"sensory {self.sensory}, motor {self.motor}, pain {self.pain}, "
            f"autonomic {self.autonomic}"
        )


ZERO_GRADES = GradeSet()


def finding_red_flags(assessment: Assessment) -> list[str]:
    """Red-flag findings that point to an immune-mediated neuropathy (D2, D4 trigger 4)."""
    flags: list[str] = []
    findings = assessment.findings
    if findings is not None:
        if findings.ncs_pattern in ("demyelinating", "mixed"):
            flags.append(f"{findings.ncs_pattern} nerve-conduction pattern")
        if findings.csf_albuminocytologic_dissociation:
            flags.append("CSF albumino-cytological dissociation")
        if findings.asymmetric_weakness:
            flags.append("asymmetric weakness")
    return flags


def immune_red_flags(assessment: Assessment, grades: GradeSet) -> list[str]:
    """D2 red flags: the findings above, or motor-predominant (motor >= 2 and >= sensory)."""
    flags = []
    if grades.motor >= 2 and grades.motor >= grades.sensory:
        flags.append("motor-predominant neuropathy")
    return flags + finding_red_flags(assessment)


class Measures(NamedTuple):
    """What D8 (V10) compares of one clinician or nurse grading; None: not measured."""

    at: dt.datetime
    overall: int  # G
    mrc_sum_score: int | None
    incat: int | None
    rankin: int | None

    @classmethod
    def of(cls, assessment: Assessment, grades: GradeSet) -> Measures:
        findings = assessment.findings
        return cls(
            at=assessment.occurred_at,
            overall=grades.overall,
            mrc_sum_score=findings.mrc_sum_score if findings else None,
            incat=findings.incat if findings else None,
            rankin=findings.rankin if findings else None,
        )


@dataclass(slots=True)
class ImmunotherapyEpisode:
    """V10: one therapy's events within 7 days of its first; checked once (D8)."""

    therapy: str
    first_at: dt.datetime
    before: Measures | None  # the last clinician or nurse grading before `first_at`


@dataclass(slots=True)
class PendingReassessment:
    due_at: dt.datetime
    trigger: str  # the event that set `due_at`
    scheduled_at: dt.datetime  # its scheduling event's time (V3 moves the due time from it)


@dataclass(slots=True)
class Course:
    """One bortezomib course, from its enrolment to its `course_end` (or the next enrolment)."""

    enrollment_id: str
    started_at: dt.datetime
    cycle_length_days: int
    dose_mg_m2: float
    schedule: str
    route: str
    unit: str | None
    baseline: GradeSet
    reference: int  # D1: G at the last dose change; label pack: the tier at the last change
    status: CourseStatus = "active"
    last_grades: GradeSet | None = None  # the latest assessment of this course
    previous_grades: GradeSet | None = None  # what the next assessment compares with
    stopped_at: dt.datetime | None = None
    stop_grades: GradeSet | None = None
    window_end: dt.datetime | None = None
    watch_closed: bool = False
    escalated_at: dt.datetime | None = None
    escalation_answered: bool = False
    last_therapy_at: dt.datetime | None = None
    escalation_timer_fired: bool = False
    pending: PendingReassessment | None = None
    overdue: PendingReassessment | None = None  # missed and not yet made up by an assessment
    workup_emitted: bool = False  # V1: the course's one immune work-up has been asked for
    bsa_m2: float | None = None  # the enrolment's body surface area (given, or Mosteller's)
    day1_dose_at: dt.datetime | None = None  # V3: the latest day-1 dose given on treatment
    last_dose_at: dt.datetime | None = None  # the course's latest administration (V2)
    next_dose_not_before: dt.datetime | None = None  # when its minimum interval ends (V2)
    # The two holds (V4), read only while the drug has not stopped; `status` says "held" while
    # either is on. Version 1 packs (`recorded_hold_resumes`) treat them as one hold: either
    # starts it, and a `resume` (the service's or a recorded one) ends both.
    recorded_hold: bool = False  # a recorded `treatment_change` `held`, not yet ended
    label_hold: bool = False  # the label pack's own L2 `hold`, until its `resume`
    missed_fired: bool = False  # V5: `overdue` has had its one `reassessment_missed`
    # V10 (D8), kept only when the pack sets `response_check_days`: the latest clinician or
    # nurse grading, and the latest one at an earlier instant than it ("before" an episode
    # that starts at the same instant as the latest)
    measures: Measures | None = None
    measures_earlier: Measures | None = None
    episodes: list[ImmunotherapyEpisode] = field(default_factory=list)  # not yet checked
    episode_started: dict[str, dt.datetime] = field(default_factory=dict)  # by therapy
    therapies_recorded: set[str] = field(default_factory=set)

    @property
    def stopped(self) -> bool:
        return self.stopped_at is not None

    @property
    def on_treatment(self) -> bool:
        """Neither held nor stopped."""
        return not self.stopped and self.status != "held"

    @property
    def cycle_anchor(self) -> dt.datetime:
        """V3 (pack `cycle_anchor` = `day1_dose`): planned cycle starts are this + k x cycle
        length, k >= 1."""
        return self.day1_dose_at or self.started_at

    @property
    def on_hold(self) -> bool:
        """A hold for D6 (`dose_during_hold`): either hold, while the drug has not stopped."""
        return self.status == "held"

    def set_holds(self, *, recorded: bool, label: bool) -> None:
        """Set both holds; until the stop, the status follows them ("held" while either is on),
        so the stored status the API shows stays meaningful."""
        self.recorded_hold, self.label_hold = recorded, label
        if not self.stopped:
            self.status = "held" if recorded or label else "active"

    @property
    def watch_state(self) -> WatchState:
        if self.stopped_at is None:
            return "none"
        return "closed" if self.watch_closed else "active"


@dataclass(slots=True)
class PatientState:
    """What the fold knows of one patient after the events so far."""

    patient_id: str
    course: Course | None = None
    ended_courses: int = 0
    # V6: a course of this patient reached G >= 3 at a clinician's or nurse's grading, or had an
    # immune work-up or an escalation to immunotherapy (read at the next enrolment)
    severe_neuropathy_seen: bool = False
