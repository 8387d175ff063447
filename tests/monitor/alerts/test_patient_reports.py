"""A review raised by a patient report carries what the patient answered in the feed (the
list, the stream's source, the acknowledgement), and only there: webhooks and other alerts keep
`patient_report` null.

The D9 decisions are stored directly (tests/common/reviews.py) until the core makes them:
re-check against real folds after issue 16's merge."""

from __future__ import annotations

import datetime as dt
from typing import Any

from monitor.alerts.router import _after
from monitor.alerts.service import AlertFilter
from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services
from tests.common import factories as f
from tests.common.reviews import D9, patient_report, store_decision
from tests.common.service import Api
from tests.conftest import FIXED_NOW

REPORTED = FIXED_NOW - dt.timedelta(days=1)
COMMENT = "<b>Can't</b> button my shirt & I fell twice"


def seed(api: Api, worker: InProcessWorker, services: Services) -> tuple[str, str]:
    """PR-1 enrolled, graded, then a report of severe numbness with new weakness and a comment,
    and its D9 review (urgent); a second patient with a plain grade-2 reduction."""
    events: list[dict[str, Any]] = [
        f.enrollment(REPORTED - dt.timedelta(days=9), patient="PR-1", event_id="pr1-e", unit="U-A"),
        f.assessment(REPORTED - dt.timedelta(days=9), patient="PR-1", event_id="pr1-a0"),
        patient_report(
            REPORTED, "PR-1", "pr-0a1", severity=3, interference=3, new_weakness=True,
            comment=COMMENT,
        ),
        f.enrollment(REPORTED - dt.timedelta(days=9), patient="PR-2", event_id="pr2-e"),
        f.assessment(REPORTED, patient="PR-2", event_id="pr2-a1", sensory=2),
    ]  # fmt: skip
    response = api.post_events({"events": events})
    assert response.status_code == 202, response.text
    assert worker.wait_idle()
    review = store_decision(services, "PR-1", "pr-0a1", REPORTED, D9, severity="urgent", unit="U-A")
    return review, "pr-0a1"


def test_the_feed_shows_the_report_behind_a_patient_reported_review(
    api: Api, worker: InProcessWorker, services: Services
) -> None:
    review, report = seed(api, worker, services)
    alerts = api.get("/v1/alerts", audience="nurse").json()["alerts"]
    by_decision = {a["decision_id"]: a for a in alerts}
    assert by_decision[review]["patient_report"] == {
        "event_id": report,
        "reported_at": "2026-09-30T12:00:00Z",
        "sensory_grade": 3,
        "numbness_tingling_severity": 3,
        "numbness_tingling_interference": 3,
        "new_weakness": True,
        "comment": COMMENT,
    }
    others = [a for a in alerts if a["decision_id"] != review]
    assert others, "the grade-2 reduction raised an alert too"
    assert all(a["patient_report"] is None for a in others)


def test_the_stream_and_the_acknowledgement_carry_it_too(
    api: Api, worker: InProcessWorker, services: Services
) -> None:
    review, _ = seed(api, worker, services)
    streamed = _after(services, AlertFilter(audiences=["nurse"]), 0)
    [alert] = [a for a in streamed if a["decision_id"] == review]
    assert alert["patient_report"]["comment"] == COMMENT
    acked = api.client.post(f"/v1/alerts/{alert['id']}/ack", json={}, headers=api.headers("nurse"))
    assert acked.status_code == 200, acked.text
    assert acked.json()["patient_report"]["new_weakness"] is True
