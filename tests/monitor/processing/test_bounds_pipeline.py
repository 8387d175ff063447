"""Issue 11, "accepted means processable", through the service: any timeline the event models
accept is stored (HTTP 202), folded by the worker without a dead letter, read back from every
patient endpoint, and replayed by `python -m monitor replay` to the same decisions.

The events come from the models' own JSON schemas (`tests.common.event_strategies`). The service
clock is the far end of the accepted range, so every event is applied and every timer fires.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.cli import run_replay
from policies import EventValidationError, parse_event
from policies.events import LATEST, canonical_body
from tests.common.service import RunningService, rows, running_service
from tests.policies.test_bounds import ANY_EVENT, ENROLMENT

_patients = itertools.count()


@pytest.fixture(scope="module")
def far_clock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    with running_service(tmp_path_factory.mktemp("bounds"), fixed_now=LATEST) as service:
        yield service


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(enrolment=ENROLMENT, rest=st.lists(ANY_EVENT, max_size=5))
def test_any_accepted_timeline_is_stored_folded_read_back_and_replayed(
    far_clock: RunningService, tmp_path_factory: pytest.TempPathFactory, enrolment: Any, rest: Any
) -> None:
    patient = f"PB{next(_patients)}"
    bodies = []
    for number, body in enumerate([enrolment, *rest]):
        candidate = {**body, "patient_id": patient, "event_id": f"{patient}-{number}"}
        try:
            parse_event(candidate)
        except EventValidationError:
            continue
        bodies.append(candidate)
    if not bodies:
        return
    api = far_clock.api
    response = api.post_events({"events": bodies})
    assert response.status_code == 202, response.text
    assert far_clock.worker.wait_idle(30)
    assert rows(far_clock.services, "SELECT id FROM dead_letter") == []
    for path in ("", "/decisions", "/history", "/clearance"):
        role = "infusion" if path == "/clearance" else "nurse"
        got = api.get(f"/v1/patients/{patient}{path}", role=role)
        assert got.status_code == 200, (path, got.text)
    state = api.get(f"/v1/patients/{patient}").json()
    assert state["monitoring"] == {"status": "running"}
    assert state["pending_events"] == 0
    summary = api.get(f"/fhir/r4/Patient/{patient}/$monitor-summary")
    assert summary.status_code == 200, summary.text

    # replay of what was stored gives the decisions the service holds
    stored = rows(
        far_clock.services,
        "SELECT body FROM event WHERE patient_id = :p ORDER BY id",
        p=patient,
    )
    events_file = pathlib.Path(tmp_path_factory.mktemp("replay")) / "events.jsonl"
    events_file.write_text("".join(r["body"] + "\n" for r in stored))
    assert [canonical_body(parse_event(r["body"])) for r in stored] == [r["body"] for r in stored]
    out, err = io.StringIO(), io.StringIO()
    args = argparse.Namespace(
        file=str(events_file), policy="default@1", policy_file=None, until=LATEST
    )
    assert run_replay(args, out, err) == 0, err.getvalue()
    replayed = [json.loads(line) for line in out.getvalue().splitlines()]
    served = api.decisions(patient)
    key = lambda d: (d["at"], d["decision_id"])  # noqa: E731
    assert sorted(served, key=key) == sorted(replayed, key=key)
