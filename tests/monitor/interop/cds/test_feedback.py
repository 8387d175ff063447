"""CDS Hooks feedback: accepted / overridden outcomes stored against the card they answer, and
the adherence report's count of cards, outcomes and override reasons."""

from __future__ import annotations

import json
from typing import Any

import pytest

from monitor.interop.cds.cards import OVERRIDE_SYSTEM
from tests.common.cds import CHECK, SELECT, CdsService, draft_order, hook_request
from tests.common.service import rows

AT = "2026-10-01T12:05:00Z"


def warning_card(cds: CdsService, patient: str = "P-ACT") -> Any:
    [card] = cds.cards(patient, draft_order("mr-1", patient, dose=1.3))
    assert card["indicator"] == "warning"
    return card


def feedback_rows(cds: CdsService, card: dict[str, Any]) -> list[dict[str, Any]]:
    return rows(
        cds.services,
        "SELECT f.* FROM cds_feedback f JOIN cds_card c ON c.id = f.card_id WHERE c.uuid = :u "
        "ORDER BY f.id",
        u=card["uuid"],
    )


def test_an_accepted_suggestion_is_stored(cds: CdsService) -> None:
    card = warning_card(cds)
    suggestion = card["suggestions"][0]["uuid"]
    response = cds.feedback(
        [{"card": card["uuid"], "outcome": "accepted", "acceptedSuggestions": [{"id": suggestion}],
          "outcomeTimestamp": AT}]
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json() == {"recorded": 1, "duplicates": 0}
    [stored] = feedback_rows(cds, card)
    assert stored["outcome"] == "accepted"
    assert json.loads(stored["accepted_suggestions"]) == [suggestion]
    assert stored["override_code"] is None
    assert stored["principal"] == "t-cds"
    assert stored["outcome_at"].startswith("2026-10-01 12:05:00")


def test_an_override_with_a_reason_is_stored_with_its_display(cds: CdsService) -> None:
    card = warning_card(cds)
    response = cds.feedback(
        [{"card": card["uuid"], "outcome": "overridden",
          "overrideReason": {"reason": {"system": OVERRIDE_SYSTEM, "code": "clinical-judgement"},
                             "userComment": "discussed with the patient"},
          "outcomeTimestamp": "2026-10-01T14:05:00+02:00"}]
    )  # fmt: skip
    assert response.status_code == 200, response.text
    [stored] = feedback_rows(cds, card)
    assert (stored["outcome"], stored["override_code"], stored["override_comment"]) == (
        "overridden",
        "clinical-judgement",
        "discussed with the patient",
    )
    # the display comes from the card's own list when the client sends only the code
    assert stored["override_display"] == next(
        r["display"] for r in card["overrideReasons"] if r["code"] == "clinical-judgement"
    )
    assert stored["outcome_at"].startswith("2026-10-01 12:05:00")  # stored in UTC


def test_the_same_feedback_again_is_a_duplicate(cds: CdsService) -> None:
    card = warning_card(cds)
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": AT}
    assert cds.feedback([item]).json() == {"recorded": 1, "duplicates": 0}
    assert cds.feedback([item, item]).json() == {"recorded": 0, "duplicates": 2}
    assert len(feedback_rows(cds, card)) == 1


def test_an_unknown_card_is_404_and_nothing_is_stored(cds: CdsService) -> None:
    card = warning_card(cds)
    known = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": AT}
    unknown = {**known, "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719"}
    response = cds.feedback([known, unknown])
    assert response.status_code == 404
    assert response.json()["errors"] == [
        {
            "field": "body.feedback.1.card",
            "message": f"'{unknown['card']}' is not a card {CHECK} issued",
        }
    ]
    assert feedback_rows(cds, card) == []  # all or nothing


def test_a_card_of_another_service_is_unknown_here(cds: CdsService) -> None:
    body = hook_request("P-HELD", draft_order("mr-1", "P-HELD"), hook="order-select",
                        selections=["MedicationRequest/mr-1"])  # fmt: skip
    [card] = cds.call(body, service=SELECT).json()["cards"]
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": AT}
    assert cds.feedback([item], service=CHECK).status_code == 404
    assert cds.feedback([item], service=SELECT).status_code == 200


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"outcome": "accepted"}, "body.feedback.0.acceptedSuggestions"),
        ({"outcome": "accepted", "acceptedSuggestions": [{"id": "not-offered"}]},
         "body.feedback.0.acceptedSuggestions.0.id"),
        ({"outcome": "overridden", "acceptedSuggestions": [{"id": "x"}]},
         "body.feedback.0.acceptedSuggestions"),
        ({"outcome": "ignored"}, "body.feedback.0.outcome"),
        ({"outcome": "overridden", "outcomeTimestamp": "2026-10-01T12:05:00"},
         "body.feedback.0.outcomeTimestamp"),
        ({"outcome": "overridden", "outcomeTimestamp": None}, "body.feedback.0.outcomeTimestamp"),
        ({"outcome": "overridden", "outcomeTimestamp": "9999-12-31T23:59:59-23:59"},
         "body.feedback.0.outcomeTimestamp"),
        ({"outcome": "overridden", "outcomeTimestamp": "0001-01-01T00:00:00+01:00"},
         "body.feedback.0.outcomeTimestamp"),
        ({"outcome": "overridden", "overrideReason": {"reason": {"system": "x"}}},
         "body.feedback.0.overrideReason.reason.code"),
    ],
)  # fmt: skip
def test_bad_feedback_is_422_naming_the_field(
    cds: CdsService, item: dict[str, Any], field: str
) -> None:
    card = warning_card(cds)
    body = {"card": card["uuid"], "outcomeTimestamp": AT, **item}
    body = {k: v for k, v in body.items() if v is not None}
    response = cds.feedback([body])
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert feedback_rows(cds, card) == []


def test_an_empty_feedback_list_is_422(cds: CdsService) -> None:
    response = cds.feedback([])
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.feedback"]


# --- the adherence report ---------------------------------------------------------------------


def report(cds: CdsService, **params: str) -> Any:
    response = cds.client.get(
        "/v1/reports/adherence",
        params={"from": "2026-09-01T00:00:00Z", "to": "2026-10-02T00:00:00Z", **params},
        headers=cds.headers("auditor"),
    )
    assert response.status_code == 200, response.text
    return response


def test_the_adherence_report_counts_cards_outcomes_and_override_reasons(
    fresh: CdsService,
) -> None:
    assert report(fresh).json()["cds"] == {
        "cards": 0,
        "by_indicator": {"critical": 0, "warning": 0, "info": 0},
        "accepted": 0,
        "overridden": 0,
        "no_feedback": 0,
        "override_reasons": {},
    }
    warning = warning_card(fresh)  # P-ACT, unit U-A
    [held] = fresh.cards("P-HELD", draft_order("mr-2", "P-HELD"))  # critical, U-A
    [stopped] = fresh.cards("P-DISC", draft_order("mr-3", "P-DISC"))  # critical, U-B
    [in_line] = fresh.cards("P-ACT", draft_order("mr-4", "P-ACT"))  # info, U-A
    [late] = fresh.cards("P-LATE", draft_order("mr-5", "P-LATE", dose=1.3))  # warning, U-B

    def overridden(card: Any, at: str, code: str | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"card": card["uuid"], "outcome": "overridden",
                                "outcomeTimestamp": at}  # fmt: skip
        if code:
            item["overrideReason"] = {"reason": {"system": OVERRIDE_SYSTEM, "code": code}}
        return item

    def accepted(card: Any, at: str) -> dict[str, Any]:
        return {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": at,
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}  # fmt: skip

    response = fresh.feedback(
        [
            # overridden first, accepted later: the latest outcome counts
            overridden(warning, "2026-10-01T12:01:00Z", "patient-preference"),
            accepted(warning, "2026-10-01T12:03:00Z"),
            overridden(held, "2026-10-01T12:02:00Z", "clinical-judgement"),
            overridden(stopped, "2026-10-01T12:02:00Z", "clinical-judgement"),
            overridden(late, "2026-10-01T12:02:00Z"),  # no reason given
        ]
    )
    assert response.json() == {"recorded": 5, "duplicates": 0}
    assert in_line["indicator"] == "info"  # no feedback
    assert report(fresh).json()["cds"] == {
        "cards": 5,
        "by_indicator": {"critical": 2, "warning": 2, "info": 1},
        "accepted": 1,
        "overridden": 3,
        "no_feedback": 1,
        "override_reasons": {"(no reason given)": 1, "clinical-judgement": 2},
    }
    assert report(fresh, unit="U-B").json()["cds"] == {
        "cards": 2,
        "by_indicator": {"critical": 1, "warning": 1, "info": 0},
        "accepted": 0,
        "overridden": 2,
        "no_feedback": 0,
        "override_reasons": {"(no reason given)": 1, "clinical-judgement": 1},
    }
    # cards count in the period they were issued (the service clock, 2026-10-01 12:00)
    earlier = report(fresh, to="2026-09-30T00:00:00Z").json()["cds"]
    assert (earlier["cards"], earlier["overridden"]) == (0, 0)

    page = report(fresh, format="html").text
    assert 'data-table="cds"' in page
    assert '<tr data-reason="clinical-judgement"><th scope="row">clinical-judgement</th>' in page
    assert '<span data-figure="cds.cards">5</span>' in page
