"""`POST /v1/events` over HTTP (CONTRACT.md, "HTTP API"; issue 3, items 2 and 7).

Accepted events are stored with their outbox row before the 202; the same event again is a
`duplicate`; an id reused with another body is a 409; anything invalid is a 4xx that names every
problem, and no rejected request stores anything (row counts are compared after each one).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services
from policies.events import EventValidationError, FieldProblem, canonical_body, parse_event
from tests.common import factories as f
from tests.common.service import (
    DATA_TABLES,
    Api,
    RunningService,
    row_counts,
    rows,
    running_service,
)
from tests.policies.test_events import ASSESSMENT, ENROLLMENT, INVALID, VALID, changed

NOTHING = dict.fromkeys(DATA_TABLES, 0)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """One service for the tests whose requests are all rejected (they store nothing)."""
    with running_service(tmp_path_factory.mktemp("rejections")) as running:
        assert running.api.post_events(f.enrollment(event_id="kept")).status_code == 202
        yield running


@pytest.fixture
def settled(shared: RunningService) -> dict[str, int]:
    """Row counts once the worker is idle; the test's rejections must leave them unchanged."""
    assert shared.worker.wait_idle()
    counts = row_counts(shared.services)
    assert counts["event"] == 1
    return counts


def counts_after(services: Services, worker: InProcessWorker) -> dict[str, int]:
    assert worker.wait_idle()
    return row_counts(services)


def problems_of(body: Any) -> list[dict[str, str]]:
    with pytest.raises(EventValidationError) as caught:
        parse_event(body)
    return [{"field": p.field, "message": p.message} for p in caught.value.problems]


def event(n: int, patient: str = "P1") -> dict[str, Any]:
    return f.assessment(f.at(n), patient=patient, event_id=f"ev-{patient}-{n}", sensory=n % 2)


# --- accepted and duplicate ------------------------------------------------------------------


def test_one_event_is_stored_with_its_outbox_row_and_answered_202(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    body = f.enrollment(event_id="e-1", patient="P1")
    response = api.post_events(body)
    assert response.status_code == 202
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "results": [{"event_id": "e-1", "status": "accepted"}],
    }
    # Durable when the client hears 202: the event and its outbox row are committed.
    [stored] = rows(services, "SELECT * FROM event")
    assert stored["event_id"] == "e-1"
    assert stored["patient_id"] == "P1"
    assert stored["type"] == "enrollment"
    assert stored["body"] == canonical_body(parse_event(body))
    [outbox] = rows(services, "SELECT * FROM outbox")
    assert (outbox["event_pk"], outbox["patient_id"]) == (stored["id"], "P1")
    # ... and the worker processes it.
    assert worker.wait_idle()
    [processed] = rows(services, "SELECT processed_at FROM outbox")
    assert processed["processed_at"] is not None
    # (the service clock is FIXED_NOW, months later: the reassessment is overdue)
    assert [d["action"] for d in api.decisions("P1")] == [
        "schedule_reassessment",
        "reassessment_overdue",
    ]


@pytest.mark.parametrize("kind", sorted(VALID))
def test_a_valid_event_of_every_type_is_accepted(api: Api, services: Services, kind: str) -> None:
    body, _model = VALID[kind]
    response = api.post_events(body)
    assert response.status_code == 202, response.text
    assert response.json()["results"] == [{"event_id": body["event_id"], "status": "accepted"}]
    assert row_counts(services, ["event", "outbox"]) == {"event": 1, "outbox": 1}


def test_a_batch_answers_per_event_in_request_order(api: Api, services: Services) -> None:
    batch = [event(n, patient=p) for n in (3, 1, 2) for p in ("PA", "PB")]
    response = api.post_events({"events": batch})
    assert response.status_code == 202
    assert response.json() == {
        "accepted": 6,
        "duplicates": 0,
        "results": [{"event_id": b["event_id"], "status": "accepted"} for b in batch],
    }
    assert row_counts(services, ["event", "outbox"]) == {"event": 6, "outbox": 6}


def test_the_same_event_again_is_a_duplicate_and_stores_nothing(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    body = f.enrollment(event_id="e-1")
    assert api.post_events(body).status_code == 202
    before = counts_after(services, worker)
    again = api.post_events(body)
    assert again.status_code == 202
    assert again.json() == {
        "accepted": 0,
        "duplicates": 1,
        "results": [{"event_id": "e-1", "status": "duplicate"}],
    }
    assert counts_after(services, worker) == before


def test_a_batch_sent_twice_is_all_duplicates_and_a_mixed_batch_says_which(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    first = [f.enrollment(event_id="e-0"), event(1), event(2)]
    assert api.post_events({"events": first}).json()["accepted"] == 3
    before = counts_after(services, worker)
    again = api.post_events({"events": first})
    assert again.status_code == 202
    assert again.json() == {
        "accepted": 0,
        "duplicates": 3,
        "results": [{"event_id": b["event_id"], "status": "duplicate"} for b in first],
    }
    assert counts_after(services, worker) == before
    mixed = api.post_events({"events": [event(3), first[1], event(4)]})
    assert mixed.status_code == 202
    assert mixed.json() == {
        "accepted": 2,
        "duplicates": 1,
        "results": [
            {"event_id": "ev-P1-3", "status": "accepted"},
            {"event_id": "ev-P1-1", "status": "duplicate"},
            {"event_id": "ev-P1-4", "status": "accepted"},
        ],
    }
    assert row_counts(services, ["event", "outbox"]) == {"event": 5, "outbox": 5}


def test_the_same_event_twice_in_one_batch_is_stored_once(api: Api, services: Services) -> None:
    body = event(1)
    response = api.post_events({"events": [body, dict(reversed(list(body.items())))]})
    assert response.status_code == 202
    assert response.json()["results"] == [
        {"event_id": "ev-P1-1", "status": "accepted"},
        {"event_id": "ev-P1-1", "status": "duplicate"},
    ]
    assert row_counts(services, ["event", "outbox"]) == {"event": 1, "outbox": 1}


def test_key_order_and_number_spelling_do_not_make_another_body(api: Api) -> None:
    body = f.administration(f.at(1), 1, event_id="adm-1")
    assert api.post_events(body).json()["accepted"] == 1
    respelled = dict(reversed(list(changed(body, dose_mg_m2=1.0).items())))
    assert api.post_events(respelled).json()["results"] == [
        {"event_id": "adm-1", "status": "duplicate"}
    ]


# --- conflicts: 409, nothing of the request stored -----------------------------------------------


def test_same_id_with_another_body_is_409_and_stores_nothing(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    assert api.post_events(f.assessment(f.at(1), event_id="a-1", sensory=1)).status_code == 202
    before = counts_after(services, worker)
    response = api.post_events(f.assessment(f.at(1), event_id="a-1", sensory=2))
    assert response.status_code == 409
    assert response.json() == {
        "detail": "event_id already used with a different body: nothing was stored",
        "conflicts": ["a-1"],
    }
    assert counts_after(services, worker) == before


def test_a_batch_with_one_conflict_stores_none_of_its_new_events(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    assert api.post_events(event(1)).status_code == 202
    assert api.post_events(event(2)).status_code == 202
    before = counts_after(services, worker)
    batch = [event(3), changed(event(1), grades={"sensory": 3}), event(4), event(2)]
    response = api.post_events({"events": batch})
    assert response.status_code == 409
    assert response.json()["conflicts"] == ["ev-P1-1"]
    assert counts_after(services, worker) == before
    stored = {r["event_id"] for r in rows(services, "SELECT event_id FROM event")}
    assert stored == {"ev-P1-1", "ev-P1-2"}


def test_one_id_with_two_bodies_inside_one_batch_is_409(
    shared: RunningService, settled: dict[str, int]
) -> None:
    batch = [event(1), changed(event(1), grades={"sensory": 4})]
    response = shared.api.post_events({"events": batch})
    assert response.status_code == 409
    assert response.json()["conflicts"] == ["ev-P1-1"]
    assert row_counts(shared.services) == settled


def test_the_same_instant_in_another_offset_is_another_body(api: Api) -> None:
    local = changed(ASSESSMENT, occurred_at="2026-03-02T08:40:00+01:00")
    assert api.post_events(local).status_code == 202
    utc = changed(ASSESSMENT, occurred_at="2026-03-02T07:40:00Z")
    response = api.post_events(utc)
    assert response.status_code == 409
    assert response.json()["conflicts"] == [ASSESSMENT["event_id"]]


# --- invalid events: 422, every problem listed, nothing stored -------------------------------


@pytest.mark.parametrize(
    ("body", "field", "fragments"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_every_contract_rule_is_a_422_naming_the_field(
    shared: RunningService,
    settled: dict[str, int],
    body: dict[str, Any],
    field: str,
    fragments: list[str],
) -> None:
    response = shared.api.post_events(body)
    assert response.status_code == 422
    expected = problems_of(body)
    assert [p["field"] for p in expected] == [field]  # the table's own claim
    assert response.json() == {
        "detail": "invalid events: nothing was stored",
        "errors": [{"index": 0, "event_id": body.get("event_id"), "problems": expected}],
    }
    message = response.json()["errors"][0]["problems"][0]["message"]
    for fragment in fragments:
        assert fragment in message
    assert row_counts(shared.services) == settled


@pytest.mark.parametrize(("body", "field"), [c[1:3] for c in INVALID], ids=[c[0] for c in INVALID])
def test_one_invalid_event_rejects_its_whole_batch(
    shared: RunningService, settled: dict[str, int], body: dict[str, Any], field: str
) -> None:
    batch = [event(1, patient="PV"), body, event(2, patient="PV")]
    response = shared.api.post_events({"events": batch})
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["index"] == 1
    assert [p["field"] for p in error["problems"]] == [field]
    assert row_counts(shared.services) == settled


def test_every_problem_of_every_invalid_event_of_a_batch_is_listed(
    shared: RunningService, settled: dict[str, int]
) -> None:
    bad_assessment = changed(
        ASSESSMENT, event_id="", patient_id="a b", grades={"sensory": 5, "pain": 4}, colour="red"
    )
    bad_enrollment = changed(ENROLLMENT, dose_mg_m2=1.7, route="IM", age=121)
    batch = [event(1), bad_assessment, event(2), bad_enrollment, "not an event"]
    response = shared.api.post_events({"events": batch})
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(e["index"], e["event_id"]) for e in errors] == [(1, ""), (3, "u7-0001"), (4, None)]
    assert [[p["field"] for p in e["problems"]] for e in errors] == [
        ["event_id", "patient_id", "grades.sensory", "grades.pain", "colour"],
        ["dose_mg_m2", "route", "age"],
        ["event"],
    ]
    assert errors[0]["problems"] == problems_of(bad_assessment)
    assert errors[1]["problems"] == problems_of(bad_enrollment)
    assert row_counts(shared.services) == settled


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ([], "array"),
        ([f.enrollment(event_id="in-array")], "array"),
        (None, "null"),
        (42, "number"),
        ("assessment", "string"),
    ],
    ids=["empty-array", "array-of-events", "null", "number", "string"],
)
def test_json_that_is_not_an_event_object_is_422(
    shared: RunningService, settled: dict[str, int], payload: Any, fragment: str
) -> None:
    response = shared.api.post_events(payload)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["index"] == 0
    assert error["event_id"] is None
    [problem] = error["problems"]
    assert problem["field"] == "event"
    assert fragment in problem["message"]
    assert "object" in problem["message"]
    assert row_counts(shared.services) == settled


def test_a_double_encoded_event_is_a_string_not_an_event(
    shared: RunningService, settled: dict[str, int]
) -> None:
    """A JSON string holding an event's JSON text is rejected, alone or inside a batch."""
    text = json.dumps(f.enrollment(event_id="twice-encoded"))
    for payload, index in ((text, 0), ({"events": [event(1), text]}, 1)):
        response = shared.api.post_events(payload)
        assert response.status_code == 422
        assert response.json()["errors"] == [
            {
                "index": index,
                "event_id": None,
                "problems": [
                    {
                        "field": "event",
                        "message": "a JSON string is not an event: "
                        "each line must be one JSON object",
                    }
                ],
            }
        ]
    assert row_counts(shared.services) == settled


def test_a_nul_character_in_the_event_id_is_422(
    shared: RunningService, settled: dict[str, int]
) -> None:
    """PostgreSQL text cannot hold U+0000: stored as is, the id would fail the insert (500)."""
    body = event(1, patient="PN") | {"event_id": "a\x00b"}
    response = shared.api.post_events({"events": [event(2, patient="PN"), body]})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "index": 1,
            "event_id": "a\x00b",
            "problems": [
                {
                    "field": "event_id",
                    "message": "contains the NUL character (U+0000), which cannot be stored",
                }
            ],
        }
    ]
    assert row_counts(shared.services) == settled


def test_a_nul_or_control_character_inside_extra_is_422_too(
    shared: RunningService, settled: dict[str, int]
) -> None:
    """Issue 11: NUL and control characters are refused everywhere in an event (inside
    `findings` and `extra` too, which used to be stored with the NUL escaped)."""
    for note, code in (("a\x00b", "U+0000"), ("bell\x07", "U+0007")):
        body = changed(event(3, patient="PN"), extra={"note": note})
        response = shared.api.post_events(body)
        assert response.status_code == 422
        [problem] = response.json()["errors"][0]["problems"]
        assert problem["field"] == "extra"
        assert code in problem["message"]
    assert row_counts(shared.services) == settled


BATCH_PROBLEM = {"field": "events", "message": "must be a list of 1 to 1000 events"}


@pytest.mark.parametrize(
    ("payload", "problems"),
    [
        ({"events": []}, [BATCH_PROBLEM]),
        ({"events": "e-1"}, [BATCH_PROBLEM]),
        ({"events": {"event_id": "e-1"}}, [BATCH_PROBLEM]),
        ({"events": None}, [BATCH_PROBLEM]),
        (
            {"events": [event(1)], "source": "feed", "at": 1},
            [
                {"field": "at", "message": "unknown field of a batch"},
                {"field": "source", "message": "unknown field of a batch"},
            ],
        ),
    ],
    ids=["empty", "string", "object", "null", "unknown-keys"],
)
def test_a_malformed_batch_is_422(
    shared: RunningService,
    settled: dict[str, int],
    payload: Any,
    problems: list[dict[str, str]],
) -> None:
    response = shared.api.post_events(payload)
    assert response.status_code == 422
    assert response.json() == {
        "detail": "invalid events: nothing was stored",
        "errors": [{"index": None, "problems": problems}],
    }
    assert row_counts(shared.services) == settled


def test_a_batch_of_1000_is_accepted_and_1001_is_rejected(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    over = [event(n, patient=f"PB{n % 7}") for n in range(1001)]
    response = api.post_events({"events": over})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"index": None, "problems": [BATCH_PROBLEM]}]
    assert row_counts(services, ["event", "outbox"]) == {"event": 0, "outbox": 0}
    response = api.post_events({"events": over[:1000]})
    assert response.status_code == 202
    assert response.json()["accepted"] == 1000
    assert row_counts(services, ["event", "outbox"]) == {"event": 1000, "outbox": 1000}
    assert worker.wait_idle(60)
    assert rows(services, "SELECT count(*) AS n FROM outbox WHERE processed_at IS NULL") == [
        {"n": 0}
    ]


# --- not JSON, wrong type, too big: 4xx before validation ------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/xml", "json"],
)
def test_a_body_that_is_not_declared_json_is_415(
    shared: RunningService, settled: dict[str, int], content_type: str | None
) -> None:
    response = shared.api.post_raw(json.dumps(event(1)).encode(), content_type=content_type)
    assert response.status_code == 415
    shown = (content_type or "").lower()
    assert response.json() == {"detail": f"Content-Type must be application/json, not {shown!r}"}
    assert row_counts(shared.services) == settled


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json "]
)
def test_json_content_type_with_parameters_or_case_is_accepted(api: Api, content_type: str) -> None:
    response = api.post_raw(json.dumps(event(1)).encode(), content_type=content_type)
    assert response.status_code == 202


def _nested(depth: int) -> bytes:
    return b'{"extra": ' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "Expecting value"),
        (b"   ", "Expecting value"),
        (b"{not json", "Expecting property name"),
        (b'{"event_id": "e1",', "Expecting property name"),
        (b"{'event_id': 'e1'}", "Expecting property name"),
        (b'{"event_id": "e1"} trailing', "Extra data"),
        (b"\xff\xfe{}", "not UTF-8 (byte 0xff at offset 0)"),  # UTF-16 (BOM): not UTF-8
        (b'{"event_id": "\xe9"}', "not UTF-8 (byte 0xe9 at offset 14)"),  # Latin-1
        (b"\xef\xbb\xbf{}", "BOM"),  # JSON texts carry no byte order mark (RFC 8259)
        (b'{"age": 1, "age": 2}', "the key 'age' appears twice in one object"),
        (b'{"extra": {"a": {"b": 1, "b": 1}}}', "the key 'b' appears twice"),
        (b'{"extra": ' + b'{"k": ' * 65 + b"1" + b"}" * 66, "nested too deeply (at most 64"),
        (b'{"dose_mg_m2": NaN}', "NaN is not a JSON value"),
        (b'{"dose_mg_m2": Infinity}', "Infinity is not a JSON value"),
        (b'{"age": -Infinity}', "-Infinity is not a JSON value"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (_nested(50_000), "nested too deeply"),
        (b'{"age": ' + b"9" * 5_000 + b"}", "integer string conversion"),
        (
            b'{"event_id": "a\\ud800", "type": "course_end", "patient_id": "P1", '
            b'"occurred_at": "2026-03-02T08:40:00Z", "reason": "death"}',
            "unpaired UTF-16 surrogate",
        ),
        (
            b'{"event_id": "e-s", "type": "course_end", "patient_id": "P1", '
            b'"occurred_at": "2026-03-02T08:40:00Z", "reason": "death", '
            b'"extra": {"note": ["ok", {"\\uDC00key": 1}]}}',
            "unpaired UTF-16 surrogate",
        ),
    ],
    ids=[
        "empty",
        "blank",
        "broken",
        "truncated",
        "single-quotes",
        "trailing-data",
        "utf-16-bom",
        "latin-1",
        "utf-8-bom",
        "duplicate-key",
        "duplicate-key-deep",
        "nested-66",
        "nan",
        "infinity",
        "minus-infinity",
        "deep-arrays",
        "deep-objects",
        "huge-integer",
        "lone-surrogate-in-id",
        "lone-surrogate-in-extra-key",
    ],
)
def test_a_body_that_is_not_json_is_400_with_the_reason(
    shared: RunningService, settled: dict[str, int], content: bytes, fragment: str
) -> None:
    response = shared.api.post_raw(content)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("the body is not valid JSON: ")
    assert fragment in detail
    assert row_counts(shared.services) == settled


def test_escaped_surrogate_pairs_are_valid_text_and_are_processed(
    api: Api, services: Services, worker: InProcessWorker
) -> None:
    body = (
        b'{"event_id": "smile-\\ud83d\\ude00", "type": "enrollment", "patient_id": "P1", '
        b'"occurred_at": "2026-01-05T09:00:00Z", "drug": "bortezomib", "dose_mg_m2": 1.3, '
        b'"route": "SC", "schedule": "weekly", "extra": {"note": "\\ud83d\\ude00 \\u00e9"}}'
    )
    response = api.post_raw(body)
    assert response.status_code == 202, response.text
    assert response.json()["results"] == [{"event_id": "smile-\U0001f600", "status": "accepted"}]
    assert worker.wait_idle()
    assert rows(services, "SELECT count(*) AS n FROM dead_letter") == [{"n": 0}]
    assert [d["trigger"] for d in api.decisions("P1")] == [
        "smile-\U0001f600",
        "timer:reassessment_overdue",
    ]


@pytest.fixture
def small_bodies(services: Services) -> int:
    """A 2 KiB body limit (the setting's minimum is 1 KiB)."""
    services.settings = services.settings.model_copy(update={"max_body_bytes": 2048})
    return 2048


def _padded(size: int) -> bytes:
    """A valid event, padded with JSON whitespace to exactly `size` bytes."""
    text = json.dumps(event(1)).encode()
    return text + b" " * (size - len(text))


def test_a_body_at_the_limit_is_accepted(api: Api, small_bodies: int) -> None:
    response = api.post_raw(_padded(small_bodies))
    assert response.status_code == 202


def test_a_body_over_the_limit_is_413(api: Api, services: Services, small_bodies: int) -> None:
    response = api.post_raw(_padded(small_bodies + 1))
    assert response.status_code == 413
    assert response.json() == {"detail": "body over 2048 bytes"}
    assert row_counts(services) == NOTHING


def test_a_streamed_body_over_the_limit_is_413(
    api: Api, services: Services, small_bodies: int
) -> None:
    """No Content-Length (chunked): the size is checked on the bytes received."""
    padded = _padded(small_bodies + 1)
    response = api.post_raw(iter([padded[:1000], padded[1000:]]))
    assert response.status_code == 413
    assert row_counts(services) == NOTHING


def test_the_default_limit_rejects_a_6_mb_batch(api: Api, services: Services) -> None:
    assert services.settings.max_body_bytes == 5_000_000
    note = "x" * 6_000
    batch = [changed(event(n), extra={"note": note}) for n in range(1_000)]
    response = api.post_events({"events": batch})
    assert response.status_code == 413
    assert row_counts(services) == NOTHING


def test_get_on_the_events_endpoint_is_405(api: Api) -> None:
    response = api.client.get("/v1/events", headers=api.headers("ingest"))
    assert response.status_code == 405


def test_field_problem_shape_is_what_the_api_lists() -> None:
    """The API serialises `FieldProblem` as {field, message}: both names are the contract's."""
    assert set(FieldProblem.model_fields) == {"field", "message"}


# --- issue 17: the 202's audit row commits with the events ------------------------------------


def test_a_202_is_audited_in_the_events_transaction(api: Api, services: Services) -> None:
    before = rows(services, "SELECT count(*) AS n FROM audit_log")[0]["n"]
    body = {
        "events": [
            f.enrollment(patient="PA-1", event_id="pa-1"),
            f.enrollment(patient="PA-2", event_id="pa-2"),
        ]
    }
    assert api.post_events(body).status_code == 202
    audited = rows(
        services, "SELECT actor, action, resource, status_code FROM audit_log ORDER BY id"
    )
    assert len(audited) == before + 1
    assert audited[-1] == {
        "actor": "test-ingest",
        "action": "POST /v1/events",
        "resource": "2 events",
        "status_code": 202,
    }
    assert services.audit.verify().broken_at is None


def test_when_the_audit_row_fails_the_events_are_not_stored(
    api: Api, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any) -> str:
        raise RuntimeError("the audit row cannot be written")

    monkeypatch.setattr(services.audit, "_mac", broken)
    response = api.post_events(f.enrollment(patient="PA-3", event_id="pa-3"))
    assert response.status_code == 500
    assert rows(services, "SELECT count(*) AS n FROM event WHERE event_id = 'pa-3'") == [{"n": 0}]
    assert rows(services, "SELECT count(*) AS n FROM outbox WHERE patient_id = 'PA-3'") == [
        {"n": 0}
    ]
