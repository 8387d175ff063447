"""The shared clinical scenarios (`../shared/scenarios`), for the tests that read them directly.

They exist on development machines and in CI, not on a user's machine: every test that uses
them skips when `SCENARIO_FILES` is empty.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from policies.packs import pack_names

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCENARIOS = ROOT.parent / "shared" / "scenarios"
SCENARIO_FILES = sorted(SCENARIOS.glob("*.json")) if SCENARIOS.is_dir() else []


def load_scenario(path: pathlib.Path) -> dict[str, Any]:
    scenario: dict[str, Any] = json.loads(path.read_text())
    return scenario


def scenario_policy(scenario: dict[str, Any]) -> str:
    """The pack a scenario names, with its version (`default@1`): the service knows pack
    versions, so the name is used as it is."""
    named = str(scenario.get("policy", "default"))
    if named not in pack_names():
        raise AssertionError(f"scenario names an unknown pack {named!r}")
    return named
