"""schemathesis against the service's own OpenAPI (issue 3, item 7): for every operation, a
bounded number of generated requests, valid and invalid (schemathesis' positive and negative
modes), sent in-process over ASGI with an admin token: never a 5xx, and every 2xx answer
conforms to the response schema and media type the document declares (issue 12).

Bounded: 25 + 25 examples per operation, no shrinking phase beyond Hypothesis' defaults, no
example database (the run is the same size every time).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, response_schema_conformance
from sqlalchemy import text

from tests.common import factories as f
from tests.common.service import RunningService, running_service
from tests.monitor.api.test_auth_matrix import ALLOWED, PAGES, PUBLIC

OPERATIONS = sorted(ALLOWED) + sorted(PUBLIC - PAGES)
EXAMPLES = 25


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    with running_service(tmp_path_factory.mktemp("schemathesis")) as service:
        # Something to find: a patient with decisions, a dead letter to retry.
        body = f.enrollment(f.at(0), patient="P1", event_id="st-e0")
        assert service.api.post_events(body).status_code == 202
        assert service.worker.wait_idle()
        yield service


@pytest.fixture(scope="module")
def schema(running: RunningService) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", running.api.client.app)


def test_the_schema_lists_every_route(schema: schemathesis.BaseSchema) -> None:
    found = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_generated_request_gets_a_5xx(
    schema: schemathesis.BaseSchema, running: RunningService, method: str, path: str
) -> None:
    [operation] = [
        op.ok()
        for op in schema.get_all_operations()
        if (op.ok().method.upper(), op.ok().path) == (method, path)
    ]
    headers = running.api.headers("admin")
    statuses: dict[int, int] = {}
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=2 * EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, f"{case.as_curl_command()}\n{response.text[:2000]}"
        if response.status_code < 300:  # what a 2xx says it answers, it answers (issue 12)
            case.validate_response(
                response, checks=[response_schema_conformance, content_type_conformance]
            )

    try:
        check()
    finally:
        # an operation may revoke the token the run uses (POST /v1/admin/tokens/{id}/revoke):
        # the next one gets it back
        with running.services.engine.begin() as connection:
            connection.execute(text("UPDATE api_token SET revoked_at = NULL"))
    assert sum(statuses.values()) >= 1
    assert all(400 <= s < 500 or s in (200, 201, 202) for s in statuses), statuses
