"""The API's pages (issue 15, item 6): `/docs` and `/redoc` load everything from this service,
so they work on a hospital network without a way out. The rendering itself, in chromium with
every other host blocked: tests/monitor/api/test_docs_browser.py."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from monitor.api.docs import ASSETS_URL, FAVICON, REDOC_JS, SWAGGER_CSS, SWAGGER_JS
from monitor.api.guard import is_public
from tests.common.service import Api

# src/href attributes, Swagger UI's `url: '...'` and Redoc's spec-url
LINKED = re.compile(r"""(?:src|href|spec-url)="([^"]*)"|url: '([^']*)'""")


def linked(html: str) -> list[str]:
    return [a or b for a, b in LINKED.findall(html)]


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("/docs", [SWAGGER_CSS, FAVICON, SWAGGER_JS, "/openapi.json"]),
        ("/redoc", [FAVICON, "/openapi.json", REDOC_JS]),
    ],
)
def test_the_pages_link_only_the_services_own_files(
    api: Api, page: str, expected: list[str]
) -> None:
    response = api.get(page, role=None)  # public, as the API description is
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert linked(html) == expected
    assert re.findall(r"https?://", html) == []  # no CDN, no fonts, no validator, no favicon


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_pages_policy_lets_the_browser_reach_this_service_only(api: Api, page: str) -> None:
    response = api.get(page, role=None)
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["img-src"] == "'self' data:"
    scripts = policy["script-src"].split()
    assert scripts[0] == "'self'"
    assert "'unsafe-inline'" not in scripts
    inline = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    assert len(scripts) == 1 + len(inline)  # each inline script by its hash, nothing else
    for body in inline:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in scripts


def test_the_swagger_page_sends_the_document_to_no_validator(api: Api) -> None:
    """Swagger UI's default validator badge would send the document to an outside service."""
    assert '"validatorUrl": null' in api.get("/docs", role=None).text


@pytest.mark.parametrize(
    ("asset", "media_type"),
    [
        (SWAGGER_JS, "text/javascript"),
        (SWAGGER_CSS, "text/css"),
        (REDOC_JS, "text/javascript"),
        (FAVICON, "image/png"),
    ],
)
def test_every_asset_is_served_without_a_token(api: Api, asset: str, media_type: str) -> None:
    response = api.get(asset, role=None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert len(response.content) > 1_000


def test_the_assets_are_swagger_ui_5_and_redoc_2(api: Api) -> None:
    """Swagger UI before 5 refuses an OpenAPI 3.1 document ("does not specify a valid version
    field"), and this service's is 3.1."""
    bundle = api.get(SWAGGER_JS, role=None).text
    assert re.search(r'"5\.\d+\.\d+"', bundle)
    assert "SwaggerUIBundle" in bundle
    assert "Redoc" in api.get(REDOC_JS, role=None).text[:2_000]


def test_only_the_assets_folder_is_public(api: Api) -> None:
    assert is_public("GET", f"{ASSETS_URL}/swagger-ui.css")
    assert not is_public("GET", "/docs/other")
    assert not is_public("GET", f"{ASSETS_URL}-not/x.js")
    assert api.get("/docs/other", role=None).status_code == 401
    assert api.get(f"{ASSETS_URL}/missing.js", role=None).status_code == 404
    assert api.get("/docs/oauth2-redirect", role=None).status_code == 401  # no OAuth2 here


def test_the_pages_are_not_api_operations(api: Api) -> None:
    paths = api.get("/openapi.json", role=None).json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]
