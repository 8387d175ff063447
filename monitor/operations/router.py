"""Health and metrics for the platform (public: no patient data): liveness, readiness
(database and queue reachable), Prometheus counters, the database's gauges and the app's HTTP
request metrics.

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

from typing import Literal

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from monitor.api.deps import PUBLIC, ServicesDep
from monitor.api.json_body import StrictJsonRouter
from monitor.operations.metrics import REGISTRY

router = StrictJsonRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    database: str
    queue: str


@router.get("/healthz", summary="Liveness", response_model=Health, openapi_extra=PUBLIC)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database and queue reachable",
    openapi_extra=PUBLIC,
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "not ready: what is unreachable"}},
)
def readyz(services: ServicesDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with services.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as exc:  # reported, not raised: this endpoint is the report
        checks["database"] = f"unreachable: {type(exc).__name__}"
    dispatcher = services.dispatcher
    checks["queue"] = "ok" if dispatcher is not None and dispatcher.ping() else "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(status_code=200 if ready else 503, content={"ready": ready, **checks})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    openapi_extra=PUBLIC,
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    scrape: CollectorRegistry = request.app.state.database_metrics
    http: CollectorRegistry | None = getattr(request.app.state, "http_metrics", None)
    body = generate_latest(REGISTRY) + generate_latest(scrape)
    if http is not None:  # this app's requests (monitor.api.http_metrics)
        body += generate_latest(http)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
