"""The OpenAPI document: FastAPI's, plus the schemas of the bodies that routes read
themselves (to report every problem at once), made once per app and kept.

It is an OpenAPI 3.1 document and validates as one (tests/monitor/api/test_openapi.py): the
Server-Sent Events route's `itemSchema` (an OpenAPI 3.2 key FastAPI emits) is replaced by the
3.1 way of saying it, a `text/event-stream` string.
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
        )
        document.setdefault("components", {}).setdefault("schemas", {}).update(components)
        _event_streams_as_31(document)
        app.openapi_schema = document
    return app.openapi_schema


def _event_streams_as_31(document: dict[str, Any]) -> None:
    for path in document.get("paths", {}).values():
        for operation in path.values():
            for response in operation.get("responses", {}).values():
                stream = response.get("content", {}).get(EVENT_STREAM)
                if stream is not None and "itemSchema" in stream:
                    item = stream.pop("itemSchema")
                    stream["schema"] = {
                        "type": "string",
                        "description": "Server-Sent Events; each event's data is JSON",
                        "contentMediaType": EVENT_STREAM,
                    }
                    stream.setdefault("x-item-schema", item)
