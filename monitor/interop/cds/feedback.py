"""CDS Hooks feedback (no HTTP): what became of a card, checked against the card issued and
stored once (a repeat of the same outcome is a duplicate, not a second outcome)."""

import datetime as dt
import json
from typing import Any

from sqlmodel import col, select

from monitor.auth.tokens import Principal
from monitor.interop.cds.cards import OVERRIDE_REASONS, OVERRIDE_SYSTEM
from monitor.interop.cds.schemas import CdsFeedback
from monitor.storage.models import CdsCardRow, CdsFeedbackRow


def cards_of(session: Any, service_id: str, uuids: set[str]) -> dict[str, CdsCardRow]:
    """The cards of `uuids` that this service issued, by uuid."""
    return {
        row.uuid: row
        for row in session.execute(
            select(CdsCardRow).where(
                col(CdsCardRow.uuid).in_(uuids), col(CdsCardRow.service_id) == service_id
            )
        ).scalars()
    }


def feedback_problems(
    items: list[CdsFeedback], cards: dict[str, CdsCardRow]
) -> list[tuple[str, str]]:
    problems = []
    for index, item in enumerate(items):
        where = f"body.feedback.{index}"
        offered = set(json.loads(cards[item.card].suggestions))
        if item.outcome == "accepted":
            if not item.accepted_suggestions:
                problems.append(
                    (f"{where}.acceptedSuggestions", "is required for an accepted outcome")
                )
            for number, accepted in enumerate(item.accepted_suggestions or []):
                if accepted.id not in offered:
                    problems.append(
                        (f"{where}.acceptedSuggestions.{number}.id",
                         f"{accepted.id!r} is not a suggestion of card {item.card}")
                    )  # fmt: skip
        elif item.accepted_suggestions:
            problems.append(
                (f"{where}.acceptedSuggestions", "is only for an accepted outcome")
            )  # fmt: skip
    return problems


def store_feedback(
    session: Any,
    items: list[CdsFeedback],
    cards: dict[str, CdsCardRow],
    principal: Principal,
    received: dt.datetime,
) -> int:
    """Store each outcome; one already stored (same card, outcome, time and content) again is
    a duplicate, not a second outcome. Returns how many were new."""
    recorded = 0
    for item in items:
        card = cards[item.card]
        reason = item.override_reason.reason if item.override_reason else None
        display = None
        if reason is not None:
            display = reason.display or (
                OVERRIDE_REASONS.get(reason.code) if reason.system == OVERRIDE_SYSTEM else None
            )
        row = CdsFeedbackRow(
            card_id=card.id or 0,
            outcome=item.outcome,
            accepted_suggestions=json.dumps(sorted(s.id for s in item.accepted_suggestions or [])),
            override_system=reason.system if reason else None,
            override_code=reason.code if reason else None,
            override_display=display,
            override_comment=item.override_reason.user_comment if item.override_reason else None,
            outcome_at=item.outcome_timestamp,
            received_at=received,
            principal=principal.name,
        )
        same = session.execute(
            select(CdsFeedbackRow).where(
                col(CdsFeedbackRow.card_id) == row.card_id,
                col(CdsFeedbackRow.outcome) == row.outcome,
                col(CdsFeedbackRow.outcome_at) == row.outcome_at,
            )
        ).scalars()
        if any(_same_feedback(existing, row) for existing in same):
            continue
        session.add(row)
        session.flush()
        recorded += 1
    return recorded


def _same_feedback(a: CdsFeedbackRow, b: CdsFeedbackRow) -> bool:
    fields = ("accepted_suggestions", "override_system", "override_code", "override_comment")
    return all(getattr(a, name) == getattr(b, name) for name in fields)
