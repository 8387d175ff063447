"""Replay equivalence through the production topology (CONTRACT.md, the central invariant).

Events go over HTTP to the `api` process in shuffled order, in random batches, with about a
third re-sent as duplicates; two `worker` processes fold them into PostgreSQL. Once no outbox
row is open, every patient's `GET /v1/patients/{id}/decisions` must equal what
`python -m monitor replay FILE --until <clock> --policy <pack>` prints for the same file.
"""

from __future__ import annotations

import collections
import json
import pathlib
import random
import subprocess
import sys
from typing import Any

import pytest

from tests.common.shared_scenarios import scenario_policy
from tests.integration.conftest import (
    FIXED_NOW_TEXT,
    ROOT,
    Stack,
    StackFactory,
    child_env,
    db_engine,
    wait_processed,
)

SCENARIOS = ROOT.parent / "shared" / "scenarios"
EXAMPLE = ROOT / "examples" / "timeline.jsonl"


@pytest.fixture(scope="module")
def default_stack(make_stack: StackFactory) -> Stack:
    stack = make_stack("replay-default")
    stack.start(workers=2)
    return stack


def send_shuffled(stack: Stack, events: list[dict[str, Any]], rng: random.Random) -> list[str]:
    """Post the events shuffled, in batches of 1-25 (some as a bare single event), a third of
    them twice; checks each response exactly. Returns the lines as sent (duplicates too)."""
    plan = [*events, *rng.sample(events, k=len(events) // 3)]
    rng.shuffle(plan)
    seen: set[str] = set()
    with stack.client() as client:
        position = 0
        while position < len(plan):
            chunk = plan[position : position + rng.randint(1, 25)]
            position += len(chunk)
            expected = []
            for event in chunk:
                status = "duplicate" if event["event_id"] in seen else "accepted"
                seen.add(event["event_id"])
                expected.append({"event_id": event["event_id"], "status": status})
            bare = len(chunk) == 1 and rng.random() < 0.5
            response = client.post("/v1/events", json=chunk[0] if bare else {"events": chunk})
            assert response.status_code == 202, response.text
            accepted = sum(1 for e in expected if e["status"] == "accepted")
            assert response.json() == {
                "accepted": accepted,
                "duplicates": len(chunk) - accepted,
                "results": expected,
            }
    assert seen == {e["event_id"] for e in events}
    return [json.dumps(event) for event in plan]


def replay(lines: list[str], policy: str, tmp_path: pathlib.Path) -> dict[str, list[Any]]:
    """`python -m monitor replay` over the lines as sent, grouped by patient (order kept)."""
    path = tmp_path / f"sent-{policy}.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    command = ["replay", str(path), "--until", FIXED_NOW_TEXT, "--policy", policy]
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", *command],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    grouped: dict[str, list[Any]] = collections.defaultdict(list)
    for line in proc.stdout.splitlines():
        decision = json.loads(line)
        grouped[decision["patient_id"]].append(decision)
    return grouped


def assert_service_equals_replay(
    stack: Stack, events: list[dict[str, Any]], lines: list[str], tmp_path: pathlib.Path
) -> int:
    """Waits for the outbox to drain, then compares every patient; returns decisions seen."""
    engine = db_engine(stack.database_url)
    try:
        stack.accepted += len({e["event_id"] for e in events})
        wait_processed(engine, stack.accepted, 60, stack.diagnostics)
    finally:
        engine.dispose()
    expected = replay(lines, stack.policy, tmp_path)
    patients = sorted({e["patient_id"] for e in events})
    compared = 0
    with stack.client() as client:
        for patient in patients:
            state = client.get(f"/v1/patients/{patient}")
            assert state.status_code == 200, state.text
            assert state.json()["pending_events"] == 0
            response = client.get(f"/v1/patients/{patient}/decisions")
            assert response.status_code == 200, response.text
            assert response.json() == {
                "patient_id": patient,
                "decisions": expected.get(patient, []),
            }, f"patient {patient}: the service and replay differ"
            compared += len(expected.get(patient, []))
    assert set(expected) <= set(patients)
    return compared


def _scenarios() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(SCENARIOS.glob("*.json"))]


def test_shared_scenarios_over_http_equal_replay(
    default_stack: Stack, make_stack: StackFactory, tmp_path: pathlib.Path
) -> None:
    scenarios = _scenarios()
    if not scenarios:
        pytest.skip(f"shared scenarios not present at {SCENARIOS}")
    by_policy: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    owner: dict[str, str] = {}
    for scenario in scenarios:
        for event in scenario["events"]:
            # one database per policy holds several scenarios: they must not share patients
            assert owner.setdefault(event["patient_id"], scenario["name"]) == scenario["name"]
        by_policy[scenario_policy(scenario)].extend(scenario["events"])
    assert set(by_policy) <= {"default@1", "label@1"}  # the scenarios name their pack's version
    rng = random.Random(20261001)
    compared = 0
    for policy, events in sorted(by_policy.items()):
        if policy == default_stack.policy:
            stack = default_stack
        else:
            stack = make_stack(f"replay-{policy}", policy=policy)
            stack.start(workers=2)
        lines = send_shuffled(stack, events, rng)
        compared += assert_service_equals_replay(stack, events, lines, tmp_path)
    assert compared > 0  # the scenarios do produce decisions


def test_example_timeline_over_http_equals_replay(
    default_stack: Stack, tmp_path: pathlib.Path
) -> None:
    events = [json.loads(line) for line in EXAMPLE.read_text().splitlines() if line.strip()]
    assert len(events) == 112
    lines = send_shuffled(default_stack, events, random.Random(7))
    compared = assert_service_equals_replay(default_stack, events, lines, tmp_path)
    assert compared > 20
