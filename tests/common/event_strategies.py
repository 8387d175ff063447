"""Hypothesis strategies of events drawn from the event models' own JSON schemas.

The models publish a JSON schema (the same one the API's OpenAPI document carries for
`POST /v1/events`): every field, enum, range, length and pattern they declare. schemathesis'
generator (the one the API fuzz test uses) draws bodies from it, through a one-operation OpenAPI
document. A JSON schema cannot say one thing the models check, the range of clinical times:
that is supplied as the strategy of a format of our own, `clinical-date-time`, that hits both
ends of the range, a second beyond each, and anything between, in many UTC offsets.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import schemathesis
from hypothesis import strategies as st
from pydantic import BaseModel
from schemathesis import GenerationMode

from policies.events import EARLIEST, LATEST

TIME_FORMAT = "clinical-date-time"
OFFSETS = [dt.timedelta(hours=h) for h in (-12, -5, -1, 0, 0, 1, 5.5, 9, 14)]


@st.composite
def clinical_times(draw: st.DrawFn) -> str:
    """RFC 3339 text around and inside the accepted range, in many offsets."""
    edges = [EARLIEST, LATEST, EARLIEST - dt.timedelta(seconds=1), LATEST + dt.timedelta(seconds=1)]
    inside = draw(
        st.datetimes(
            min_value=EARLIEST.replace(tzinfo=None), max_value=LATEST.replace(tzinfo=None)
        ).map(lambda moment: moment.replace(tzinfo=dt.UTC))
    )
    moment = draw(st.sampled_from([*edges, inside, inside, inside]))
    offset = draw(st.sampled_from(OFFSETS))
    try:
        local = moment.astimezone(dt.timezone(offset))
    except OverflowError:  # beyond year 9999 in that offset: keep UTC
        local = moment
    return local.isoformat()


schemathesis.openapi.format(TIME_FORMAT, clinical_times())


def _own_time_format(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: TIME_FORMAT
            if key == "format" and value == "date-time"
            else _own_time_format(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_own_time_format(item) for item in node]
    return node


def schema_bodies(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects drawn from `model`'s JSON schema (schemathesis' positive generation)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    name = model.__name__
    document = {
        "openapi": "3.1.0",
        "info": {"title": f"{name} bodies", "version": "1"},
        "paths": {
            "/body": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                        },
                    },
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
        "components": {"schemas": _own_time_format({name: schema, **definitions})},
    }
    [operation] = [op.ok() for op in schemathesis.openapi.from_dict(document).get_all_operations()]
    return operation.as_strategy(GenerationMode.POSITIVE).map(lambda case: case.body)
