"""The API's pages, `/docs` (Swagger UI) and `/redoc`, served with their scripts from this
service: a hospital network often has no way out to a CDN, and the pages stayed blank there.

The assets come with the `fastapi-offline` package (Swagger UI 5, which renders OpenAPI 3.1, and
Redoc 2; `swagger-ui-bundle` ships Swagger UI 4, which refuses a 3.1 document). Only its files
are used: the pages are FastAPI's own, pointed at them. No page names another host: no Google
fonts, no favicon from elsewhere, no Swagger validator badge (it would send the document out);
and a Content-Security-Policy lets the browser reach this service only (Redoc's sidebar shows
Redocly's logo from their CDN: it is not loaded, and the link text stays).
"""

from __future__ import annotations

import base64
import hashlib
import pathlib
import re

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

ASSETS_DIR = pathlib.Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"  # public, as /docs is (monitor.api.guard.PUBLIC_PREFIXES)
SWAGGER_JS = f"{ASSETS_URL}/swagger-ui-bundle.js"
SWAGGER_CSS = f"{ASSETS_URL}/swagger-ui.css"
REDOC_JS = f"{ASSETS_URL}/redoc.standalone.js"
FAVICON = f"{ASSETS_URL}/favicon.png"

# Only this service; the inline script (Swagger UI's start) by its hash; inline styles, data:
# images and Redoc's search worker (a blob:) as the two UIs use them.
CSP = (
    "default-src 'self'; script-src 'self'{scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def with_policy(page: HTMLResponse) -> HTMLResponse:
    """The page with its Content-Security-Policy: its inline scripts allowed by their hash."""
    inline = _INLINE_SCRIPT.findall(bytes(page.body).decode())
    hashes = "".join(f" 'sha256-{_digest(body)}'" for body in inline)
    page.headers["Content-Security-Policy"] = CSP.format(scripts=hashes)
    return page


def _digest(script: str) -> str:
    return base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def add_api_pages(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the assets and both pages (create the app with `docs_url=None, redoc_url=None`).

    Plain Starlette routes, as FastAPI's own docs routes are: not API operations, so not in
    the OpenAPI document."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{SWAGGER_JS}",
            swagger_css_url=f"{root}{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{FAVICON}",
            oauth2_redirect_url=None,  # bearer tokens only: no OAuth2 flow to come back from
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )
        return with_policy(page)

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{REDOC_JS}",
            redoc_favicon_url=f"{root}{FAVICON}",
            with_google_fonts=False,
        )
        return with_policy(page)

    app.add_route(docs_url, swagger_ui, include_in_schema=False)
    app.add_route(redoc_url, redoc, include_in_schema=False)
