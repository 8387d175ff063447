"""The shared clinical scenarios (../shared/scenarios) sent as FHIR give the same decisions as
their JSON events (issue 6, item 4).

Each scenario's events are written as one FHIR Bundle (tests/common/fhir_builders.py) and
mapped by the service's mapper. Decisions are then compared field by field, except
`decision_id` (it hashes the trigger) and `trigger`, which is compared through the event
correspondence: a mapped event's `extra.fhir_source` names the resources it came from, and the
builders know which JSON event each resource expresses. Timer triggers compare as they are.

`../shared` exists on the team's machines and in CI, not on a user's: without it these skip.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from monitor.interop.fhir.inbound import map_fhir
from policies import Event, builtin_pack, evaluate, parse_event
from tests.common import fhir_builders as b
from tests.common.service import RunningService, row_counts, running_service
from tests.common.shared_scenarios import SCENARIO_FILES, SCENARIOS, scenario_policy

SETTINGS = b.fhir_settings()

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not SCENARIO_FILES, reason=f"shared scenarios not present at {SCENARIOS}"),
]

# a trigger -> the JSON event id it stands for (timer triggers map to themselves)
TriggerMap = Callable[[str], str]


def load(path: pathlib.Path) -> dict[str, Any]:
    scenario: dict[str, Any] = json.loads(path.read_text())
    return scenario


def until_of(scenario: dict[str, Any]) -> dt.datetime | None:
    until = scenario.get("until")
    return dt.datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None


def normalised(decisions: Iterable[dict[str, Any]], source: TriggerMap) -> list[dict[str, Any]]:
    """Decisions without their id, the trigger as a JSON event id, in one canonical order
    (by `at`, then content: the ids that break ties in replay's order differ)."""
    found = [
        {k: v for k, v in d.items() if k != "decision_id"} | {"trigger": source(d["trigger"])}
        for d in decisions
    ]
    return sorted(found, key=lambda d: (d["at"], json.dumps(d, sort_keys=True)))


def as_is(trigger: str) -> str:
    return trigger


def fhir_triggers(expressed: b.Expressed, events: Iterable[Event]) -> TriggerMap:
    """A FHIR event's id -> the JSON event its source resources express."""
    origin: dict[str, str] = {}
    for event in events:
        assert event.extra is not None, f"{event.event_id} has no extra.fhir_source"
        origin[event.event_id] = expressed.source_event(event.extra["fhir_source"])

    def source(trigger: str) -> str:
        return trigger if trigger.startswith("timer:") else origin[trigger]

    return source


def mapped_events(expressed: b.Expressed) -> list[Event]:
    mapping = map_fhir(expressed.json(), SETTINGS)
    assert mapping.problems == [], mapping.problems
    assert mapping.entry_count == len(expressed.origin)
    return [m.event for m in mapping.events]


def dumped(decisions: Iterable[Any]) -> list[dict[str, Any]]:
    return [d.model_dump(mode="json", exclude_none=True) for d in decisions]


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[p.stem for p in SCENARIO_FILES])
@pytest.mark.parametrize("kind", ["transaction", "batch", "collection"])
def test_scenario_as_fhir_gives_the_decisions_of_its_json_events(
    path: pathlib.Path, kind: b.BundleKind
) -> None:
    scenario = load(path)
    pack, until = builtin_pack(scenario_policy(scenario)), until_of(scenario)
    expressed = b.events_bundle(scenario["events"], SETTINGS, kind)
    events = mapped_events(expressed)
    assert len(events) == len(scenario["events"])
    source = fhir_triggers(expressed, events)
    json_events = [parse_event(e) for e in scenario["events"]]
    # the same events, field by field, but for their ids and where they came from
    assert sorted(
        (source(e.event_id), e.model_dump(exclude={"event_id", "extra"})) for e in events
    ) == sorted((e.event_id, e.model_dump(exclude={"event_id", "extra"})) for e in json_events)

    from_json = dumped(evaluate(pack, json_events, until))
    from_fhir = dumped(evaluate(pack, events, until))
    assert from_json, "a scenario with no decisions would prove nothing"
    assert normalised(from_fhir, source) == normalised(from_json, as_is)


def test_scenarios_as_panels_and_coded_grades_give_the_same_decisions() -> None:
    """The other assessment forms: one Observation with components, grades as codes."""
    for path in SCENARIO_FILES:
        scenario = load(path)
        pack, until = builtin_pack(scenario_policy(scenario)), until_of(scenario)
        expressed = b.events_bundle(
            scenario["events"], SETTINGS, "batch", assessment="panel", value="coded"
        )
        events = mapped_events(expressed)
        from_json = dumped(evaluate(pack, [parse_event(e) for e in scenario["events"]], until))
        from_fhir = dumped(evaluate(pack, events, until))
        assert normalised(from_fhir, fhir_triggers(expressed, events)) == normalised(
            from_json, as_is
        ), path.name


# --- through HTTP ------------------------------------------------------------------------------


def post_fhir(service: RunningService, body: dict[str, Any]) -> Any:
    api = service.api
    headers = api.headers("ingest") | {"Content-Type": "application/fhir+json"}
    return api.client.post("/fhir/r4", content=json.dumps(body).encode(), headers=headers)


def response_statuses(response: Any) -> list[str]:
    """The entry statuses of a transaction-response, which must be a valid FHIR Bundle."""
    assert response.status_code == 200, response.text
    answer = Bundle.model_validate(response.json())
    assert answer.type == "transaction-response"
    statuses = []
    for entry in answer.entry or []:
        assert entry.response is not None
        assert entry.response.status is not None
        statuses.append(str(entry.response.status))
    return statuses


def settle(service: RunningService) -> None:
    assert service.worker.wait_idle()


def current(service: RunningService, patients: Iterable[str]) -> list[dict[str, Any]]:
    return [d for p in sorted(set(patients)) for d in service.api.decisions(p)]


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[p.stem for p in SCENARIO_FILES])
def test_scenario_posted_as_fhir_gives_the_decisions_of_its_json_events(
    path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    scenario = load(path)
    policy = scenario_policy(scenario)
    patients = [e["patient_id"] for e in scenario["events"]]
    expressed = b.events_bundle(scenario["events"], SETTINGS, "transaction")
    events = mapped_events(expressed)  # the ids the service will store, for the triggers
    source = fhir_triggers(expressed, events)

    with running_service(tmp_path / "json", policy=policy) as by_json:
        response = by_json.api.post_events({"events": scenario["events"]})
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == len(scenario["events"])
        settle(by_json)
        from_json = current(by_json, patients)

    with running_service(tmp_path / "fhir", policy=policy) as by_fhir:
        first = response_statuses(post_fhir(by_fhir, expressed.json()))
        assert first == ["201 Created"] * len(expressed.origin)
        settle(by_fhir)
        counts = row_counts(by_fhir.services)
        assert counts["event"] == len(scenario["events"])
        from_fhir = current(by_fhir, patients)

        again = response_statuses(post_fhir(by_fhir, expressed.json()))
        assert again == ["200 OK"] * len(expressed.origin)
        settle(by_fhir)
        assert row_counts(by_fhir.services) == counts
        assert current(by_fhir, patients) == from_fhir

    assert from_json, "a scenario with no decisions would prove nothing"
    assert normalised(from_fhir, source) == normalised(from_json, as_is)
