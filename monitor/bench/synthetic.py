"""Deterministic synthetic timelines of contract events, for the benchmark and load tests.

`generate(patients, events_per_patient, seed)` yields JSON lines (without the newline) that
validate against the contract (CONTRACT.md, "Events"). Each patient gets exactly
`events_per_patient` events: an enrolment, then per 21-day cycle an assessment before the cycle
(grades drifting up, occasionally grade 3, sometimes with findings) and the doses of the
schedule, occasional treatment changes (reduced, held/resumed, discontinued, completed), the
coasting watch after the drug stops (sometimes with immunotherapy), and a `course_end`. A patient
whose budget outlasts one course is re-enrolled for another. The timeline is cut at the budget,
so the last course may be cut short, as a real export would be. Times carry mixed offsets (`Z`,
`+01:00`, `-05:00`), and the lines of all patients are shuffled together: a replay must sort.

All randomness comes from one `random.Random(seed)`: the same arguments give the same lines.
Standard library only, so it can run anywhere the events are needed.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from typing import Any, get_args

from policies.events import RiskFactor

DOSE_LEVELS = (1.3, 1.0, 0.7)
# Infusion units and the offset their feeds write (a feed may also send UTC `Z`).
UNIT_ZONES = {
    "onc-a": dt.timezone(dt.timedelta(hours=1)),
    "onc-b": dt.timezone(dt.timedelta(hours=1)),
    "onc-c": dt.timezone(dt.timedelta(hours=-5)),
    "day-hosp-1": dt.UTC,
}
UNITS = tuple(UNIT_ZONES)
RISK_FACTORS: tuple[str, ...] = get_args(RiskFactor)
CONCOMITANT = ("dexamethasone", "lenalidomide", "thalidomide", "acyclovir", "daratumumab")
EPOCH = dt.datetime(2025, 1, 6, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


def rfc3339(moment: dt.datetime, zone: dt.tzinfo) -> str:
    """`moment` written in `zone`, seconds precision; UTC as `Z`."""
    text = moment.astimezone(zone).isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class _Patient:
    """One patient's chronological timeline, built course by course until the budget is spent."""

    def __init__(self, rng: random.Random, index: int, budget: int) -> None:
        self.rng = rng
        self.patient_id = f"SYN-{index:06d}"
        self.budget = budget
        self.lines: list[str] = []
        self.zone: dt.tzinfo = dt.UTC

    @property
    def full(self) -> bool:
        return len(self.lines) >= self.budget

    def emit(self, kind: str, when: dt.datetime, **fields: Any) -> None:
        if self.full:
            return
        zone = self.zone if self.rng.random() < 0.8 else dt.UTC
        body = {
            "event_id": f"{self.patient_id}-e{len(self.lines) + 1:05d}",
            "type": kind,
            "patient_id": self.patient_id,
            "occurred_at": rfc3339(when, zone),
            **fields,
        }
        self.lines.append(json.dumps(body, separators=(",", ":")))

    def clinic_time(self, day: dt.datetime, earliest: int = 8, latest: int = 16) -> dt.datetime:
        """A time in clinic hours, local to the patient's unit, on the date of `day`."""
        hour = self.rng.randint(earliest, latest)
        local = dt.time(hour, self.rng.randrange(0, 60, 5), tzinfo=self.zone)
        return dt.datetime.combine(day.date(), local)

    def build(self) -> list[str]:
        start = EPOCH + self.rng.randrange(0, 365) * DAY
        while not self.full:
            end = self.course(start)
            start = end + self.rng.randint(21, 90) * DAY
        return self.lines

    # --- one course -----------------------------------------------------------------------

    def course(self, start: dt.datetime) -> dt.datetime:
        """Enrolment to `course_end`; returns the day the course ended."""
        rng = self.rng
        route = rng.choice(("IV", "SC", "SC"))
        schedule = rng.choice(("twice_weekly", "weekly"))
        cycle_days = 21 if schedule == "twice_weekly" or rng.random() < 0.8 else 28
        age = rng.randint(42, 86)
        risks = sorted(rng.sample(RISK_FACTORS, k=rng.choice((0, 0, 0, 1, 1, 2))))
        baseline = 1 if "baseline_neuropathy" in risks or rng.random() < 0.08 else 0
        unit = rng.choice(UNITS)
        self.zone = UNIT_ZONES[unit]
        enrolment: dict[str, Any] = {
            "drug": "bortezomib",
            "dose_mg_m2": 1.3,
            "route": route,
            "schedule": schedule,
            "cycle_length_days": cycle_days,
            "age": age,
            "unit": unit,
        }
        if risks:
            enrolment["risk_factors"] = risks
        if rng.random() < 0.5:
            enrolment["concomitant"] = sorted(rng.sample(CONCOMITANT, k=rng.randint(1, 2)))
        if baseline or rng.random() < 0.3:
            enrolment["baseline"] = {"sensory": baseline}
        self.emit("enrollment", self.clinic_time(start, 7, 8), **enrolment)

        # Neurotoxicity: a latent sensory score that drifts up each cycle, faster for IV,
        # twice-weekly dosing and at-risk patients; it slows down after a dose reduction.
        latent = float(baseline)
        rate = rng.uniform(0.1, 0.55)
        rate *= 1.3 if route == "IV" else 1.0
        rate *= 1.2 if schedule == "twice_weekly" else 1.0
        rate *= 1.25 if risks else 1.0
        dose_days = (1, 4, 8, 11) if schedule == "twice_weekly" else (1, 8, 15)
        dose, reference, stopped = 1.3, baseline, False
        cycles = rng.randint(4, 8)
        cycle_start = start
        for cycle in range(1, cycles + 1):
            if cycle > 1:
                latent += rng.uniform(0.0, rate)
                if rng.random() < 0.94:  # a few reassessments are missed (overdue)
                    late = rng.choices((0, 1, 3), weights=(85, 10, 5))[0] * DAY
                    when = self.clinic_time(cycle_start - DAY + late, 9, 17)
                    grades = self.grades(latent, on_treatment=True)
                    self.assessment(when, grades, cycle=cycle)
                    overall = max(grades.get("sensory", 0), grades.get("motor", 0))
                    overall = max(overall, grades.get("pain", 0))
                    if overall >= 3 or grades.get("autonomic", 0) >= 3:
                        if rng.random() < 0.85:
                            self.emit(
                                "treatment_change",
                                when + 2 * HOUR,
                                action="discontinued",
                                reason="grade 3 neuropathy",
                            )
                        stopped = True
                        cycle_start = when
                        break
                    if 1 <= overall <= 2 and overall > reference:
                        reference = overall
                        lower = [level for level in DOSE_LEVELS if level < dose - 0.01]
                        if lower and rng.random() < 0.75:
                            dose = lower[0]
                            rate *= 0.6
                            self.emit(
                                "treatment_change",
                                when + 3 * HOUR,
                                action="dose_reduced",
                                dose_mg_m2=dose,
                                schedule="weekly",
                                route="SC",
                                reason=f"grade {overall} neuropathy",
                            )
                            dose_days = (1, 8, 15)
            if cycle > 1 and rng.random() < 0.04:  # a week's hold, e.g. for an infection
                self.emit("treatment_change", self.clinic_time(cycle_start), action="held")
                cycle_start += 7 * DAY
                resumed = self.clinic_time(cycle_start, 7, 8)  # before the day's dose
                self.emit("treatment_change", resumed, action="resumed")
            for day in dose_days:
                given = dose
                if dose < 1.3 and rng.random() < 0.03:  # the old dose given by mistake
                    given = 1.3
                self.emit(
                    "administration",
                    self.clinic_time(cycle_start + (day - 1) * DAY, 9, 15),
                    dose_mg_m2=given,
                    route=route if dose == 1.3 else "SC",
                    cycle=cycle,
                    day=day,
                )
            cycle_start += cycle_days * DAY
        if not stopped:
            self.emit(
                "treatment_change",
                self.clinic_time(cycle_start),
                action="completed",
                reason=f"{cycles} cycles given",
            )
        return self.watch(cycle_start, latent)

    def watch(self, stop: dt.datetime, latent: float) -> dt.datetime:
        """The coasting watch: worse for a few weeks, then better; sometimes immune-mediated."""
        rng = self.rng
        immune = rng.random() < 0.06
        motor = 0
        day = stop
        for visit in range(rng.randint(5, 9)):
            day += 14 * DAY
            if visit < 3:
                latent += rng.uniform(-0.2, 0.5)  # coasting
            else:
                latent = max(0.0, latent - rng.uniform(0.2, 0.7))
            if immune and visit == 2:
                motor = 2
            grades = self.grades(latent, on_treatment=False)
            if motor:
                grades["motor"] = motor
            findings = {"ncs_pattern": "demyelinating", "mrc_sum_score": 44} if motor else None
            when = self.clinic_time(day, 9, 17)
            self.assessment(when, grades, findings=findings)
            if immune and visit == 2:
                self.emit(
                    "immunotherapy",
                    when + rng.randint(1, 5) * DAY,
                    therapy=rng.choice(("ivig", "ivig", "plasma_exchange")),
                    dose="2 g/kg over 5 days",
                )
        reason = rng.choices(("completed", "transferred", "other", "death"), (85, 8, 5, 2))[0]
        end = day + rng.randint(1, 20) * DAY
        self.emit("course_end", self.clinic_time(end), reason=reason)
        return end

    def grades(self, latent: float, *, on_treatment: bool) -> dict[str, int]:
        rng = self.rng
        sensory = max(0, min(4, int(latent + rng.uniform(-0.3, 0.3))))
        if on_treatment and rng.random() < 0.015:  # an abrupt severe episode
            sensory = 3
        grades = {"sensory": min(sensory, 3)}
        if sensory >= 1 and rng.random() < 0.35:
            grades["pain"] = min(3, rng.randint(1, sensory))
        if sensory >= 2 and rng.random() < 0.1:
            grades["motor"] = 1
        if rng.random() < 0.05:
            grades["autonomic"] = 1
        return grades

    def assessment(
        self,
        when: dt.datetime,
        grades: dict[str, int],
        *,
        cycle: int | None = None,
        findings: dict[str, Any] | None = None,
    ) -> None:
        rng = self.rng
        fields: dict[str, Any] = {"grades": grades}
        if cycle is not None:
            fields["cycle"] = cycle
        if findings is None and grades.get("sensory", 0) >= 2 and rng.random() < 0.2:
            findings = {"ncs_pattern": "axonal", "mrc_sum_score": rng.randint(52, 60)}
        if findings is not None:
            fields["findings"] = findings
        fields["source"] = rng.choice(("nurse", "nurse", "clinician", "patient"))
        if fields["source"] != "patient":
            fields["assessor"] = f"staff-{rng.randint(1, 40):02d}"
        self.emit("assessment", when, **fields)


def generate(patients: int, events_per_patient: int, seed: int) -> Iterator[str]:
    """`patients` x `events_per_patient` event lines (JSON, no newline), shuffled, seeded."""
    if patients < 0:
        raise ValueError("patients must be >= 0")
    if events_per_patient < 1:
        raise ValueError("events_per_patient must be >= 1 (the enrolment)")
    rng = random.Random(seed)
    lines: list[str] = []
    for index in range(1, patients + 1):
        lines += _Patient(rng, index, events_per_patient).build()
    rng.shuffle(lines)
    yield from lines
