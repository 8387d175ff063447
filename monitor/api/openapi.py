"""The OpenAPI document: FastAPI's, plus the schemas of the bodies that routes read
themselves (to report every problem at once), made once per app and kept.

It is an OpenAPI 3.1 document and validates as one (tests/monitor/api/test_openapi.py): the
Server-Sent Events route's `itemSchema` (an OpenAPI 3.2 key FastAPI emits) becomes the
`text/event-stream` schema, of one event (as schemathesis reads it); a route naming its events'
data model (`x-event-data`) has the `data` field described as that model in JSON.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

EVENT_STREAM = "text/event-stream"


def openapi_document(app: FastAPI, components: dict[str, Any]) -> dict[str, Any]:
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            description=app.description,
            routes=app.routes,
            license_info=app.license_info,
            servers=app.servers,
        )
        document.setdefault("components", {}).setdefault("schemas", {}).update(components)
        _event_streams_as_31(document)
        app.openapi_schema = document
    return app.openapi_schema


def _event_streams_as_31(document: dict[str, Any]) -> None:
    for path in document.get("paths", {}).values():
        for operation in path.values():
            data_model = operation.pop("x-event-data", None)
            for response in operation.get("responses", {}).values():
                stream = response.get("content", {}).get(EVENT_STREAM)
                if stream is None or "itemSchema" not in stream:
                    continue
                event = stream.pop("itemSchema")
                event["description"] = "one Server-Sent Event"
                if data_model is not None:
                    event["properties"]["data"] = {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": f"#/components/schemas/{data_model}"},
                    }
                stream["schema"] = event
