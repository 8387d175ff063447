"""The web page (monitor/web/) in a real browser: Debian's chromium driven by Playwright, against
the service served by uvicorn on a free port (SQLite, in-process worker), events posted over
HTTP (fixtures in conftest.py, helpers in site.py). Without chromium or the playwright module
the tests skip; with CI set they fail instead.

Screenshots of failures go to pytest's tmp_path only, never into the repository.
"""

from __future__ import annotations

import pathlib
import re
from typing import TYPE_CHECKING

import pytest
from starlette.testclient import TestClient

from monitor.app import create_app
from tests.common import factories as f
from tests.monitor.web.site import (
    SHOTS,
    Console,
    Site,
    alert_ids_shown,
    days_ago,
    item,
    log_in,
    wait_live,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request


# --- the feed -----------------------------------------------------------------------------


def test_an_alert_raised_appears_live_and_is_acknowledged_by_click(page: Page, site: Site) -> None:
    site.post_events(
        f.enrollment(days_ago(10), patient="PT-1", event_id="pt1-e", unit="U-A"),
        f.assessment(days_ago(3), patient="PT-1", event_id="pt1-a1", sensory=1),
    )
    existing = site.get("/v1/alerts", limit=200)["alerts"]
    assert existing, "the seed raised no alert: the test would not show the feed's list"

    log_in(page, site, "/", site.tokens["nurse"])
    page.wait_for_selector("#feed", state="visible")
    assert page.locator("#login").is_hidden()
    wait_live(page)
    # the existing alerts, newest first, as GET /v1/alerts lists them
    assert alert_ids_shown(page) == [a["id"] for a in existing]
    assert page.locator("#empty").is_hidden()
    page.evaluate("window.__noReload = 'still the same document'")

    before = site.last_alert_id()
    # grade 3 sensory: discontinue bortezomib, urgent, for the nurse too
    site.post_events(f.assessment(days_ago(1), patient="PT-1", event_id="pt1-a2", sensory=3))
    raised = site.alerts_after(before)
    urgent = [a for a in raised if a["action"] == "discontinue" and "nurse" in a["audience"]]
    assert len(urgent) == 1, raised
    alert_id = urgent[0]["id"]
    assert urgent[0]["severity"] == "urgent"

    shown = item(page, alert_id)
    shown.wait_for(state="visible")
    assert page.evaluate("window.__noReload") == "still the same document"
    # every alert raised by the event arrived, and the list stays newest first
    count = "document.querySelectorAll('#alerts [data-alert-id]').length"
    page.wait_for_function(f"() => {count} === {len(existing) + len(raised)}")
    ids = alert_ids_shown(page)
    assert ids == sorted({*ids}, reverse=True)
    assert set(ids) == {a["id"] for a in existing + raised}
    assert "urgent" in (shown.get_attribute("class") or "")
    assert "discontinue" in shown.locator(".title").inner_text()
    assert shown.locator("a").inner_text() == "PT-1"
    assert shown.locator("a").get_attribute("href") == "/patients/PT-1"

    shown.locator("button.ack-button").click()
    ack = shown.locator(".ack")
    ack.filter(has_text="Acknowledged by test-nurse").wait_for(state="visible")
    assert shown.locator("button.ack-button").count() == 0
    assert "acknowledged" in (item(page, alert_id).get_attribute("class") or "")

    acked = site.get("/v1/alerts", acknowledged="true", limit=500)["alerts"]
    assert [a["id"] for a in acked] == [alert_id]
    assert acked[0]["ack"]["by"] == "test-nurse"
    assert acked[0]["ack"]["token"] == "test-nurse"
    # the other alerts are untouched and still offer their button
    others = [a["id"] for a in existing + raised if a["id"] != alert_id]
    for other in others:
        assert item(page, other).locator("button.ack-button").count() == 1
    assert page.evaluate("window.__noReload") == "still the same document"


def test_a_wrong_token_shows_the_login_form_again_with_an_error(
    page: Page, site: Site, console: Console
) -> None:
    console.allow(r"Failed to load resource: .*401")  # the browser's own log of the 401
    log_in(page, site, "/", "not-a-token")
    page.wait_for_function("() => document.getElementById('login-error').textContent !== ''")
    assert page.locator("#login").is_visible()
    assert page.locator("#feed").is_hidden()
    assert page.locator("#session").is_hidden()
    assert page.inner_text("#login-error") == "Your token was not accepted: log in again."
    assert page.evaluate("sessionStorage.getItem('bipn-monitor-token')") is None

    # the right token, in the same form, then works
    page.fill("#token", site.tokens["nurse"])
    page.click("#login button[type=submit]")
    page.wait_for_selector("#feed", state="visible")
    wait_live(page)


def test_a_token_of_a_role_without_the_feed_is_told_so(
    page: Page, site: Site, console: Console
) -> None:
    console.allow(r"Failed to load resource: .*403")
    log_in(page, site, "/", site.tokens["auditor"])
    page.wait_for_function("() => document.getElementById('login-error').textContent !== ''")
    assert page.locator("#login").is_visible()
    assert page.locator("#feed").is_hidden()
    assert re.match(r"^403: role 'auditor' may not GET /v1/alerts", page.inner_text("#login-error"))


# --- the patient page ---------------------------------------------------------------------


def test_the_patient_page_shows_course_timeline_and_chart(page: Page, site: Site) -> None:
    site.post_events(
        f.enrollment(days_ago(30), patient="PT-2", event_id="pt2-e", unit="U-B"),
        f.administration(days_ago(29), 1.3, patient="PT-2", event_id="pt2-d1"),
        f.assessment(days_ago(20), patient="PT-2", event_id="pt2-a1", sensory=1, pain=0),
        f.assessment(days_ago(10), patient="PT-2", event_id="pt2-a2", sensory=2, pain=1, motor=0),
    )
    state = site.get("/v1/patients/PT-2", role="infusion")
    decisions = site.get("/v1/patients/PT-2/decisions", role="infusion")["decisions"]
    history = site.get("/v1/patients/PT-2/history", role="infusion")
    assert decisions
    assert state["status"] != "none"

    log_in(page, site, "/patients/PT-2", site.tokens["infusion"])
    page.wait_for_selector("#patient", state="visible")
    page.wait_for_selector("#decisions li")
    assert page.inner_text("#patient-title") == "Patient PT-2"
    assert page.inner_text("#patient-error") == ""

    course = dict(
        zip(
            page.locator("#course dt").all_inner_texts(),
            page.locator("#course dd").all_inner_texts(),
            strict=True,
        )
    )
    assert course["status"] == state["status"]
    assert course["dose"] == f"{state['dose_mg_m2']} mg/m²"
    assert course["unit"] == "U-B"

    # the timeline: every current decision, newest first
    entries = page.locator("#decisions li")
    assert entries.count() == len(decisions)
    newest = decisions[-1]
    assert newest["rule"] in entries.first.locator(".when").inner_text()

    # the chart: one polyline per graded domain, and the dose as a step path
    graded = {
        d for g in history["grades"] for d in g if d in ("sensory", "motor", "pain", "autonomic")
    }
    assert graded == {"sensory", "pain", "motor"}
    lines = page.locator("#chart path[data-series]:not([data-series=dose])").evaluate_all(
        "nodes => nodes.map(n => n.getAttribute('data-series'))"
    )
    assert sorted(lines) == sorted(graded)
    sensory = page.locator('#chart path[data-series="sensory"]')
    assert sensory.get_attribute("data-points") == "2"  # two assessments graded it
    # one stretch of time (no gap): one line, two points
    assert (sensory.get_attribute("d") or "").count("M") == 1
    dose = page.locator('#chart path[data-series="dose"]')
    assert dose.count() == 1
    assert (dose.get_attribute("d") or "").startswith("M ")


def test_a_nurse_opens_a_patient_from_the_feed(page: Page, site: Site, console: Console) -> None:
    site.post_events(f.enrollment(days_ago(5), patient="PT-3", event_id="pt3-e"))
    log_in(page, site, "/", site.tokens["nurse"])
    wait_live(page)
    page.fill("#patient-id", "PT-3")
    page.click("#open-patient button[type=submit]")
    page.wait_for_url(site.url + "/patients/PT-3")
    # the token is kept for the tab: no second login
    page.wait_for_selector("#decisions li")
    assert page.locator("#login").is_hidden()
    assert page.locator("#decisions li").count() == len(
        site.get("/v1/patients/PT-3/decisions")["decisions"]
    )


def test_the_page_is_served_with_its_security_headers(site: Site) -> None:
    for path in ("/", "/patients/PT-1", "/chair"):
        response = site.http.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
    for asset in ("/static/common.js", "/static/app.js", "/static/chair.js", "/static/app.css"):
        assert site.http.get(asset).status_code == 200


# --- reconnection ---------------------------------------------------------------------------


def test_the_feed_resumes_after_the_server_restarts_with_last_event_id(
    page: Page, site: Site, console: Console
) -> None:
    # while uvicorn is down, the browser logs the broken stream and refused reconnects
    console.allow(
        r"Failed to load resource: net::ERR_\w+ \(http://127\.0\.0\.1:\d+/v1/alerts/stream\)"
    )
    stream_requests: list[Request] = []
    page.on(
        "request", lambda r: stream_requests.append(r) if "/v1/alerts/stream" in r.url else None
    )
    log_in(page, site, "/", site.tokens["nurse"])
    wait_live(page)
    page.evaluate("window.__noReload = 'same document'")

    site.post_events(f.enrollment(days_ago(10), patient="PT-4", event_id="pt4-e"))
    seen = site.last_alert_id()
    assert seen > 0
    item(page, seen).wait_for(state="visible")

    site.server.stop()
    page.wait_for_selector("#live.off")
    assert page.inner_text("#live") == "reconnecting…"
    # alerts raised while the page is cut off (the same service, in process)
    with TestClient(create_app(site.services)) as client:
        body = f.assessment(days_ago(1), patient="PT-4", event_id="pt4-a", sensory=3)
        response = client.post("/v1/events", json=body, headers=site.auth("ingest"))
        assert response.status_code == 202, response.text
        assert site.worker.wait_idle()
    site.server.start()

    page.wait_for_selector("#live.on", timeout=15_000)
    raised = site.alerts_after(seen)
    assert raised, "the grade 3 assessment raised no alert"
    for alert in raised:
        item(page, alert["id"]).wait_for(state="visible")
    assert page.evaluate("window.__noReload") == "same document"
    resumed = stream_requests[-1]
    assert len(stream_requests) >= 2
    assert resumed.headers.get("last-event-id") == str(seen)


# --- a patient whose monitoring stopped (issue 11) --------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(1280, 900), (390, 844)], ids=["desktop", "phone"])
def test_the_patient_page_says_when_monitoring_stopped_and_what_was_set_aside(
    page: Page, site: Site, console: Console, tmp_path: pathlib.Path, width: int, height: int
) -> None:
    from tests.monitor.processing.test_monitoring_stopped import store_unchecked

    page.set_viewport_size({"width": width, "height": height})
    site.post_events(f.enrollment(days_ago(30), patient="PT-9", event_id="pt9-e", unit="U-A"))
    old = f.assessment(days_ago(20), patient="PT-9", event_id="pt9-old", sensory=1)
    store_unchecked(site.services, old | {"cycle": 100_000_000})
    assert site.worker.wait_idle()

    log_in(page, site, "/patients/PT-9", site.tokens["nurse"])
    banner = page.get_by_role("alert").filter(has_text="Monitoring stopped.")
    banner.wait_for(state="visible")
    text = banner.inner_text()
    assert "at event pt9-old" in text
    assert "no new advice will come" in text
    assert page.locator("#quarantine").is_hidden()
    shot = tmp_path / f"stopped-{width}.png"
    page.screenshot(path=str(shot), full_page=True)
    if SHOTS:
        page.screenshot(path=str(SHOTS / f"patient-stopped-{width}.png"), full_page=True)
    # nothing spills out sideways on a phone
    assert page.evaluate("document.documentElement.scrollWidth") <= width

    response = site.http.post(
        "/v1/admin/quarantined-events",
        json={"event_id": "pt9-old", "reason": "cycle 100000000: a typo in the feed"},
        headers=site.auth("admin"),
    )
    assert response.status_code == 200, response.text
    assert site.worker.wait_idle()
    page.reload()
    region = page.get_by_role("region", name="Events set aside")
    region.wait_for(state="visible")
    assert page.locator("#monitoring").is_hidden()
    listed = region.locator("li")
    assert listed.count() == 1
    assert "pt9-old" in listed.inner_text()
    assert "cycle 100000000: a typo in the feed" in listed.inner_text()
    assert "by test-admin" in listed.inner_text()
    if SHOTS:
        page.screenshot(path=str(SHOTS / f"patient-quarantined-{width}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
