"""CORS for the CDS Hooks routes only: browser-based CDS clients (the CDS Hooks sandbox, EHRs
that call from the page) need it, the rest of the API must not offer it.

Starlette's `CORSMiddleware` does the work, for `/cds-services` and below and only for the
origins of `Settings.cds_allowed_origins` (none: no CORS headers at all). It sits outside the
request guard, so it answers preflights itself (a preflight carries no token: the Fetch
standard sends it without credentials) and its headers are on the guard's 401/413/422 too: a
browser client can read why it was refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from monitor.api.guard import CDS_PREFIX, REQUEST_ID_HEADER

# what a CDS client sends: GET discovery, POST a hook call or feedback, with its JWT (or token)
# and a JSON body; the safelisted headers (Accept, ...) are always allowed
ALLOWED_METHODS = ("GET", "POST")
ALLOWED_HEADERS = ("authorization", "content-type")
MAX_AGE_S = 600  # how long a browser may reuse a preflight's answer


def is_cds_path(path: str) -> bool:
    return path == CDS_PREFIX or path.startswith(f"{CDS_PREFIX}/")


class CdsCors:
    """CORS headers on CDS Hooks answers for the allowed origins; every other path passes
    through untouched."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.cors: ASGIApp | None = (
            CORSMiddleware(
                app,
                allow_origins=list(origins),
                allow_methods=ALLOWED_METHODS,
                allow_headers=ALLOWED_HEADERS,
                expose_headers=(REQUEST_ID_HEADER,),
                max_age=MAX_AGE_S,
            )
            if origins
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.cors is not None and scope["type"] == "http" and is_cds_path(scope["path"]):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
