"""The shared clinical scenarios (../shared/scenarios), run by their own checker against replay.

`../shared` exists on the team's machines and in CI, not on a user's: without it these skip.
The project's own tests cover every rule regardless (tests/policies).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
SCENARIOS = ROOT.parent / "shared" / "scenarios"
CHECKER = SCENARIOS / "check.py"

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(
        not CHECKER.is_file(), reason=f"shared scenarios not present at {SCENARIOS}"
    ),
]


def test_every_shared_scenario_passes() -> None:
    scenario_count = len(list(SCENARIOS.glob("*.json")))
    proc = subprocess.run(
        [sys.executable, str(CHECKER), "--cmd", f"{sys.executable} -m monitor", str(SCENARIOS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    last_line = proc.stdout.strip().splitlines()[-1]
    assert last_line == f"{scenario_count} passed, 0 failed", proc.stdout + proc.stderr
    assert proc.returncode == 0
