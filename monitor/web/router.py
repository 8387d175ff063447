"""The web pages (the alert feed, the patient page, the infusion chair list): static files;
their data comes from the API with the user's token, so the pages themselves are public (no
patient data in them).

No `from __future__ import annotations`: FastAPI reads the annotations at run time.
"""

import pathlib

from fastapi.responses import FileResponse

from monitor.api.deps import PatientIdPath
from monitor.api.json_body import StrictJsonRouter

router = StrictJsonRouter(include_in_schema=False)
STATIC_DIR = pathlib.Path(__file__).with_name("static")
# The page loads only its own script and style, talks only to this API, and cannot be framed.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type="text/html", headers=PAGE_HEADERS)


@router.get("/")
def feed_page() -> FileResponse:
    return _page("index.html")


@router.get("/patients/{patient_id}")
def patient_page(patient_id: PatientIdPath) -> FileResponse:
    return _page("patient.html")


@router.get("/chair")
def chair_page() -> FileResponse:
    return _page("chair.html")


@router.get("/report")
def report_page() -> FileResponse:
    """The patients' symptom report (their invite link opens it; no account)."""
    return _page("report.html")
