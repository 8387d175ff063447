"""D8 (V10): whether neuropathy responded to an immunotherapy episode, about 28 days after it.

The check answers a grading; no timer reminds when none comes (POLICY.md V10 names the grading
as its trigger, and the contract's timer kinds have no D8 one): the D5 reassessments and their
overdue and missed timers already ask for the grading.
"""

from __future__ import annotations

from policies.decisions import utc_minute
from policies.events import Assessment, Immunotherapy
from policies.fold import Fold
from policies.packs import PolicyPack
from policies.rules import sources
from policies.rules.reassessment import DAY
from policies.state import Course, ImmunotherapyEpisode, Measures

EPISODE_DAYS = 7  # events of the same therapy within 7 days of its first are one episode
RANKIN_RESPONSE_POINTS = 1
THERAPY_TEXT = {
    "ivig": "IVIg",
    "plasma_exchange": "plasma exchange",
    "rituximab": "rituximab",
    "corticosteroids": "corticosteroids",
    "other": "another immunotherapy",
}
# the options D8 names when there is no response, in POLICY.md's order
OPTION_TEXT = {
    "ivig": "IVIg",
    "plasma_exchange": "plasma exchange",
    "rituximab": "rituximab",
    "corticosteroids": "corticosteroids (not for a Guillain-Barre pattern)",
}


def d8_immunotherapy_given(fold: Fold, course: Course, event: Immunotherapy) -> None:
    """An event of a therapy more than 7 days after its episode's first starts a new episode,
    measured from the last clinician or nurse grading before it (none: it is not checked)."""
    if fold.pack.response_check_days is None:
        return
    at = event.occurred_at
    course.therapies_recorded.add(event.therapy)
    started = course.episode_started.get(event.therapy)
    if started is not None and at <= started + EPISODE_DAYS * DAY:
        return
    course.episode_started[event.therapy] = at
    before = course.measures
    if before is not None and before.at >= at:  # graded at this very instant: not "before"
        before = course.measures_earlier
    if before is not None:
        course.episodes.append(ImmunotherapyEpisode(event.therapy, at, before))


def d8_record_grading(fold: Fold, course: Course, event: Assessment, measures: Measures) -> None:
    """Keep the latest clinician or nurse grading (and the latest at an earlier instant)."""
    if fold.pack.response_check_days is None:
        return
    latest = course.measures
    if latest is not None and latest.at < event.occurred_at:
        course.measures_earlier = latest
    course.measures = measures


def d8_response_check(fold: Fold, course: Course, event: Assessment, now: Measures) -> None:
    """The first clinician or nurse grading at or after an episode's first event + 28 days
    checks it: one `immunotherapy_response` for the episodes that responded, one
    `review_required` (`immunotherapy_no_response`) for those that did not."""
    days = fold.pack.response_check_days
    if days is None or not course.episodes:
        return
    due = [e for e in course.episodes if event.occurred_at >= e.first_at + days * DAY]
    if not due:
        return
    course.episodes = [e for e in course.episodes if e not in due]
    responded: list[str] = []
    not_responded: list[str] = []
    for episode in due:
        assert episode.before is not None
        changes = _changes(fold.pack, episode.before, now)
        described = f"{_episode(episode)}: {'; '.join(text for text, _ in changes)}"
        if any(better for _, better in changes):
            responded.append(described)
        else:
            not_responded.append(described)
    if responded:
        fold.emit(
            "immunotherapy_response",
            rule="D8",
            trigger=event.event_id,
            at=event.occurred_at,
            rationale=(
                f"Response to immunotherapy {days} days or more after it "
                f"({' | '.join(responded)}): continue the plan and keep grading."
            ),
            sources=sources.D8,
        )
    if not_responded:
        fold.emit(
            "review_required",
            rule="D8",
            trigger=event.event_id,
            at=event.occurred_at,
            reason="immunotherapy_no_response",
            severity="urgent",
            audience=("physician", "neurology"),
            rationale=(
                f"No response to immunotherapy {days} days or more after it "
                f"({' | '.join(not_responded)}; a response is a lower overall grade, the MRC "
                f"sum score up by {fold.pack.mrc_response_points}, INCAT down by "
                f"{fold.pack.incat_response_points} or Rankin down by "
                f"{RANKIN_RESPONSE_POINTS}): review the treatment; {_options(course)}."
            ),
            sources=sources.D8,
        )


def _episode(episode: ImmunotherapyEpisode) -> str:
    return f"{THERAPY_TEXT[episode.therapy]} from {utc_minute(episode.first_at)}"


def _changes(pack: PolicyPack, before: Measures, now: Measures) -> list[tuple[str, bool]]:
    """Each measure both gradings carry: its change, and whether it is a response."""
    changes = [(f"overall grade {before.overall} -> {now.overall}", now.overall < before.overall)]
    if before.mrc_sum_score is not None and now.mrc_sum_score is not None:
        gain = now.mrc_sum_score - before.mrc_sum_score
        changes.append(
            (
                f"MRC sum score {before.mrc_sum_score} -> {now.mrc_sum_score}",
                gain >= pack.mrc_response_points,
            )
        )
    if before.incat is not None and now.incat is not None:
        changes.append(
            (
                f"INCAT {before.incat} -> {now.incat}",
                before.incat - now.incat >= pack.incat_response_points,
            )
        )
    if before.rankin is not None and now.rankin is not None:
        changes.append(
            (
                f"Rankin {before.rankin} -> {now.rankin}",
                before.rankin - now.rankin >= RANKIN_RESPONSE_POINTS,
            )
        )
    return changes


def _options(course: Course) -> str:
    left = [
        text for therapy, text in OPTION_TEXT.items() if therapy not in course.therapies_recorded
    ]
    if not left:
        return "every listed option (IVIg, plasma exchange, rituximab, corticosteroids) is recorded"
    return "options not yet recorded: " + ", ".join(left)
