"""Version 1 of the packs replays exactly (issue 13, item 1): `replay --policy default@1` (and
`label@1`) of the example timeline and of the benchmark's synthetic timelines prints, byte for
byte, what version 1 printed when it shipped.

The digests below are SHA-256 of the printed decisions (JSON lines). They were taken on
2026-12-02 with the code before the version-2 work began, and checked equal to the output of the
release before the architecture change (commit f9051ee, `python -m monitor replay --policy
default examples/timeline.jsonl | sha256sum`, and the same synthetic timelines): a rule change
that alters version 1 fails here. They are never regenerated to make a change pass.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pathlib

import pytest

from monitor.bench.synthetic import generate
from monitor.replay.command import run_replay

ROOT = pathlib.Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "timeline.jsonl"

# (policy, timeline) -> (sha256 of the output, decisions printed)
GOLDEN: dict[tuple[str, str], tuple[str, int]] = {
    ("default@1", "example"): (
        "4d8680e260032c1fccfdbd31cd4b0be442171ca1c4e5cc02abb2d62954b9906f", 50),
    ("label@1", "example"): (
        "87500b53ed4db18d345d55daa65c1f8ba30fd561dac25b0d9b642a47d2e1db8b", 57),
    ("default@1", "synthetic-300x12-seed1"): (
        "e728e62c412344c776dff8ec8a4bc5963e956d1fe0f02e0f0d3def1fa2fdfe52", 1412),
    ("default@1", "synthetic-50x40-seed7"): (
        "1bf0a3993af820b8297b2ca6aeaf5a550b33ef9fe9400a2dcd5dffa1346b3110", 1099),
    ("default@1", "synthetic-1x400-seed3"): (
        "17abd799675292f3db3a27a7a7cc9ce5e1988be287b86a4cb125c2ca5a11e729", 224),
    ("label@1", "synthetic-300x12-seed1"): (
        "159329ae0d4c1fac3b89288fb742be8afdfe8c0ee9a66f1a27d0d405dbc74a7c", 1520),
    ("label@1", "synthetic-50x40-seed7"): (
        "55e54ff225a78cc9aa5828997ff608a776cdc40622295577b4ecb6a66ad12304", 1197),
    ("label@1", "synthetic-1x400-seed3"): (
        "b4721f9000eb1a9570a4efceb6b4946ab51186c6834014880bad797400e9db89", 253),
}  # fmt: skip
SYNTHETIC = {
    "synthetic-300x12-seed1": (300, 12, 1),
    "synthetic-50x40-seed7": (50, 40, 7),
    "synthetic-1x400-seed3": (1, 400, 3),
}


def _timeline(name: str, directory: pathlib.Path) -> pathlib.Path:
    if name == "example":
        return EXAMPLE
    patients, events, seed = SYNTHETIC[name]
    path = directory / f"{name}.jsonl"
    path.write_text("\n".join(generate(patients, events, seed)) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("policy", "timeline"), sorted(GOLDEN), ids=lambda v: str(v))
def test_version_1_replays_byte_for_byte(
    policy: str, timeline: str, tmp_path: pathlib.Path
) -> None:
    path = _timeline(timeline, tmp_path)
    out, err = io.StringIO(), io.StringIO()
    args = argparse.Namespace(file=str(path), policy=policy, policy_file=None, until=None)
    assert run_replay(args, out, err) == 0, err.getvalue()
    printed = out.getvalue()
    digest, count = GOLDEN[(policy, timeline)]
    assert (hashlib.sha256(printed.encode()).hexdigest(), printed.count("\n")) == (digest, count)
    assert all(f'"policy":"{policy}"' in line for line in printed.splitlines())
