"""The app factory: the HTTP boundary (request log, guard, error shape) and each domain's
router, in the order an event flows; nothing else. A route lives in its domain's `router.py`.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from monitor.admin.router import router as admin_router
from monitor.alerts.push import WAKEUP, Listener
from monitor.alerts.router import router as alerts_router
from monitor.api.cors import CdsCors
from monitor.api.docs import add_api_pages
from monitor.api.errors import add_error_handlers
from monitor.api.guard import RequestGuard, RequestLog, leaf_routes, route_template
from monitor.api.http_metrics import instrument_http
from monitor.api.json_body import StrictJsonRoute
from monitor.api.openapi import openapi_document
from monitor.auth.router import router as auth_router
from monitor.chair.router import router as chair_router
from monitor.ingest.router import OPENAPI_COMPONENTS as EVENT_COMPONENTS
from monitor.ingest.router import router as ingest_router
from monitor.intake.router import router as intake_router
from monitor.interop.cds.jwt_auth import JwtVerifier
from monitor.interop.cds.router import OPENAPI_COMPONENTS as CDS_COMPONENTS
from monitor.interop.cds.router import router as cds_router
from monitor.interop.fhir.router import router as fhir_router
from monitor.operations.metrics import DatabaseCollector
from monitor.operations.router import router as operations_router
from monitor.operations.tracing import trace_app
from monitor.patients.router import router as patients_router
from monitor.policy.router import router as policy_router
from monitor.report_windows.router import router as report_windows_router
from monitor.reports.router import router as reports_router
from monitor.services import Services
from monitor.web.router import STATIC_DIR
from monitor.web.router import router as web_router
from monitor.web.signin.router import configure_sign_in
from monitor.web.signin.router import router as signin_router
from monitor.webhooks.router import router as webhooks_router

ROUTERS = (
    ingest_router,  # events in
    patients_router,  # what was decided
    chair_router,  # the infusion chair
    intake_router,  # patients' own reports, by invite link
    report_windows_router,  # ... and who has not reported this week
    alerts_router,  # who is told
    webhooks_router,  # ... and which systems
    reports_router,  # were the recommendations followed
    policy_router,  # the sources behind every decision
    fhir_router,  # the EHR's formats
    cds_router,
    admin_router,  # operators
    auth_router,  # who the caller is
    web_router,  # the pages
    signin_router,  # ... and their sign-in at the hospital's OpenID Connect provider
    operations_router,  # the platform
)
EXTRA_COMPONENTS: dict[str, Any] = {**EVENT_COMPONENTS, **CDS_COMPONENTS}


def alert_push(services: Services) -> Any:
    """The lifespan: one LISTEN per API process wakes its SSE streams (PostgreSQL only)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        settings = services.settings
        listener = None
        if settings.stream_push and not settings.is_sqlite:
            listener = Listener(settings.database_url, WAKEUP)
            listener.start()
        _app.state.alert_listener = listener
        try:
            yield
        finally:
            if listener is not None:
                listener.stop()

    return lifespan


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        lifespan=alert_push(services),
        title="bipn-monitor",
        version="0.1.0",
        description="Bortezomib-induced peripheral neuropathy monitor (CONTRACT.md).",
        license_info={"name": "Proprietary", "identifier": "LicenseRef-Proprietary"},
        servers=[{"url": "/", "description": "this service"}],
        docs_url=None,  # served from the service's own files (add_api_pages): no CDN
        redoc_url=None,
    )
    # what the dependencies read (monitor.api.deps): one set per app
    app.state.services = services
    app.state.cds_verifier = JwtVerifier(  # bad keys: no start
        services.settings.cds_clients, services.settings.cds_jwt_max_lifetime_s
    )
    app.state.database_metrics = CollectorRegistry(auto_describe=False)
    app.state.database_metrics.register(DatabaseCollector(services))

    add_error_handlers(app)
    configure_sign_in(app, services.settings)  # the provider's tokens; within the guard
    # the guard within the request log: every answer, the guard's 401/413/422 too, is logged
    app.add_middleware(RequestGuard, services=services)
    # CORS for the CDS Hooks routes only, outside the guard: it answers preflights itself and
    # its headers are on the guard's refusals too
    app.add_middleware(CdsCors, origins=services.settings.cds_allowed_origins)
    app.add_middleware(RequestLog)
    # outermost: every answer counted by route template, the guard's and the log's too
    app.state.http_metrics = instrument_http(app)
    trace_app(app, route_template)  # when tracing is on: a span per request, around it all

    for router in ROUTERS:
        app.include_router(router)
    routes = list(leaf_routes(app.routes))
    loose = [r.path for r in routes if isinstance(r, APIRoute) and not _strict(r)]
    if loose:  # a router made with plain APIRouter would read JSON bodies leniently
        raise RuntimeError(f"routes without StrictJsonRoute: {loose}")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    add_api_pages(app)  # /docs, /redoc and their assets
    app.openapi = lambda: openapi_document(app, EXTRA_COMPONENTS)  # type: ignore[method-assign]
    return app


def _strict(route: APIRoute) -> bool:
    return isinstance(route, StrictJsonRoute)
