"""`GET /v1/sources` (issue 13, item 6): every source id a decision may cite, with its full
reference and the rules that cite it."""

from __future__ import annotations

import pathlib

import pytest

from monitor.auth.roles import ROLES, Role
from monitor.replay.timeline import read_timeline
from policies import builtin_pack, evaluate
from policies.rules import sources
from tests.common.service import Api

EXAMPLE = pathlib.Path(__file__).resolve().parents[3] / "examples" / "timeline.jsonl"


def test_every_cited_source_is_listed_with_its_reference(api: Api) -> None:
    response = api.client.get("/v1/sources", headers=api.headers("nurse"))
    assert response.status_code == 200
    body = response.json()
    listed = {s["id"]: s for s in body["sources"]}
    cited = {s for ids in sources.RULE_SOURCES.values() for s in ids}
    assert set(listed) == cited == {f"S{n}" for n in range(1, 13)}
    assert all(s["reference"] and s["supports"] and s["cited_by"] for s in listed.values())
    assert listed["S5"]["cited_by"] == ["D0", "D1", "D2", "D6", "D7", "L1-L3"]
    assert "doi:10.1038/leu.2011.346" in listed["S6"]["reference"]
    assert body["documentation"] == "docs/clinical-policy.md"


@pytest.mark.parametrize("role", ROLES)
def test_every_role_may_read_the_sources(api: Api, role: Role) -> None:
    assert api.client.get("/v1/sources", headers=api.headers(role)).status_code == 200


def test_the_sources_need_a_token(api: Api) -> None:
    assert api.client.get("/v1/sources").status_code == 401


@pytest.mark.parametrize("policy", ["default@1", "label@1"])
def test_decisions_cite_only_listed_sources(policy: str) -> None:
    """The example timeline's decisions, under both packs, cite ids the list explains."""
    with EXAMPLE.open("rb") as handle:
        timeline = read_timeline(handle)
    assert timeline.latest is not None
    decisions = evaluate(builtin_pack(policy), timeline.events, timeline.latest)
    cited = {source for decision in decisions for source in decision.sources}
    assert cited
    assert cited <= set(sources.SOURCES)
