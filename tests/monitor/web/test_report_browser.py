"""The patient intake in Debian's chromium at a phone's width (issue 16): a nurse invites from
the chair list (a dialog with the QR code, the link, its expiry), the patient opens the link on
their phone, answers one question per screen with the keyboard only, sends, and sees "Sent"; the
report is then an assessment with the composite grade. axe-core finds no serious or critical
violation on any screen. Screenshots of each screen go to the test's tmp dir (and to
MONITOR_SCREENSHOTS when set)."""

from __future__ import annotations

import datetime as dt
import io
import json
import pathlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from monitor.settings import Settings
from tests.common import factories as f
from tests.common.service import rows
from tests.conftest import FIXED_NOW
from tests.monitor.web.site import (
    WAIT_MS,
    Console,
    Site,
    assert_accessible,
    assert_fits,
    keep_screenshot,
    log_in,
    tab_to,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

PHONE = {"width": 390, "height": 844}
PHONE_NUMBER = "+44 20 7946 0000"


@pytest.fixture
def sqlite_settings(sqlite_settings: Settings) -> Settings:
    return sqlite_settings.model_copy(
        update={
            "policy": "default@2",
            "alert_info_decisions": False,
            "care_team_phone": PHONE_NUMBER,
        }
    )


@pytest.fixture
def unit(site: Site) -> Site:
    site.post_events(f.enrollment(FIXED_NOW - dt.timedelta(days=10), "PT-R", "ptr-e", unit="U-R"))
    return site


@pytest.fixture
def phone(browser: Browser, console: Console) -> Iterator[Page]:
    """The patient's phone: a context of its own (no staff token in it)."""
    context = browser.new_context(viewport=PHONE, timezone_id="UTC", locale="en-GB")
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    opened.on("console", console.on_console)
    opened.on("pageerror", console.on_page_error)
    try:
        yield opened
    finally:
        context.close()


def shot(page: Page, tmp_path: pathlib.Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    keep_screenshot(page, name)


def scanned(png: bytes) -> list[str]:
    """What a phone's camera would read: the QR codes in a screenshot (zxing-cpp)."""
    import zxingcpp
    from PIL import Image

    return [found.text for found in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def focused_heading(page: Page) -> str:
    text: str = page.evaluate(
        "() => document.activeElement.tagName === 'H1' ? document.activeElement.innerText : ''"
    )
    return text


def invite_from_the_chair(page: Page, site: Site, tmp_path: pathlib.Path) -> str:
    page.set_viewport_size(PHONE)
    log_in(page, site, "/chair", site.tokens["nurse"])
    page.locator("#chair").wait_for(state="visible")
    page.fill("#chair-date", "2026-10-01")
    page.fill("#unit", "U-R")
    page.press("#unit", "Enter")
    button = '#chair-patients > li[data-patient-id="PT-R"] button.invite-open'
    page.locator(button).wait_for()
    tab_to(page, button)
    page.keyboard.press("Enter")
    dialog = page.locator("#invite-dialog")
    dialog.locator("#invite-link").wait_for()
    assert dialog.locator("#invite-title").inner_text() == "Invite PT-R to report symptoms"
    qr = dialog.locator("img.invite-qr")
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")  # the SVG rendered
    assert "Valid until 15 Oct 2026 12:00" in dialog.locator("#invite-expiry").inner_text()
    url = page.input_value("#invite-link")
    assert url.startswith(f"{site.url}/report#bmr_")
    assert scanned(qr.screenshot()) == [url]  # the code on screen is the link
    assert_fits(page, PHONE["width"])
    assert_accessible(page)
    shot(page, tmp_path, "intake-0-invite-dialog")
    page.keyboard.press("Escape")
    page.locator("#invite-dialog").wait_for(state="hidden")
    assert page.evaluate("() => document.activeElement.classList.contains('invite-open')")
    return url


def next_screen(page: Page, step: str) -> None:
    tab_to(page, f"#step-{step} button[type=submit]")
    page.keyboard.press("Enter")


def check_screen(page: Page, tmp_path: pathlib.Path, name: str) -> None:
    assert_fits(page, PHONE["width"])
    assert_accessible(page)
    shot(page, tmp_path, name)


def test_a_nurse_invites_and_the_patient_reports_by_keyboard_on_a_phone(
    page: Page, phone: Page, unit: Site, tmp_path: pathlib.Path
) -> None:
    url = invite_from_the_chair(page, unit, tmp_path)

    phone.goto(url)
    phone.locator("#step-severity").wait_for(state="visible")
    assert phone.url == f"{unit.url}/report"  # the secret left the address bar
    assert focused_heading(phone).startswith("In the past 7 days, what was the severity")
    assert phone.inner_text("#progress") == "Question 1 of 4"
    check_screen(phone, tmp_path, "intake-1-severity")
    tab_to(phone, 'input[name="severity"]')
    for _ in range(3):  # None -> Mild -> Moderate -> Severe
        phone.keyboard.press("ArrowDown")
    next_screen(phone, "severity")

    phone.locator("#step-interference").wait_for(state="visible")
    assert focused_heading(phone).startswith("In the past 7 days, how much did numbness")
    check_screen(phone, tmp_path, "intake-2-interference")
    next_screen(phone, "interference")  # no answer yet: said, and the focus on the answers
    assert phone.inner_text("#interference-error") == "Please choose an answer."
    assert phone.evaluate("() => document.activeElement.name") == "interference"
    check_screen(phone, tmp_path, "intake-2b-interference-unanswered")
    for _ in range(2):  # the first answer has the focus: Not at all -> A little bit -> Somewhat
        phone.keyboard.press("ArrowDown")
    next_screen(phone, "interference")

    phone.locator("#step-weakness").wait_for(state="visible")
    assert focused_heading(phone).startswith("Have you had new weakness")
    assert phone.inner_text("#progress") == "Question 3 of 4"
    check_screen(phone, tmp_path, "intake-3-weakness")
    tab_to(phone, "#step-weakness [data-back]")  # back, and the answer given is kept
    phone.keyboard.press("Enter")
    phone.locator("#step-interference").wait_for(state="visible")
    assert phone.is_checked('input[name="interference"][value="2"]')
    next_screen(phone, "interference")
    phone.locator("#step-weakness").wait_for(state="visible")
    tab_to(phone, 'input[name="weakness"]')
    phone.keyboard.press("Space")  # Yes
    next_screen(phone, "weakness")

    phone.locator("#step-comment").wait_for(state="visible")
    assert focused_heading(phone) == "Is there anything else you want your care team to know?"
    tab_to(phone, "#comment")
    phone.keyboard.type("Worse at night, in both feet.")
    assert phone.inner_text("#comment-count") == "29 of 500 used."
    check_screen(phone, tmp_path, "intake-4-comment")
    next_screen(phone, "comment")

    phone.locator("#step-review").wait_for(state="visible")
    assert focused_heading(phone) == "Check your answers"
    assert phone.locator("#review-answers dd").all_inner_texts() == [
        "Severe",
        "Somewhat",
        "Yes",
        "Worse at night, in both feet.",
    ]
    check_screen(phone, tmp_path, "intake-5-review")
    next_screen(phone, "review")

    phone.locator("#step-sent").wait_for(state="visible")
    assert focused_heading(phone) == "Sent"
    said = phone.inner_text("#step-sent")
    assert "Your care team will see this." in said
    assert f"If you feel unwell, call {PHONE_NUMBER}." in said
    assert phone.get_attribute("#sent-call a", "href") == "tel:+442079460000"
    check_screen(phone, tmp_path, "intake-6-sent")

    assert unit.worker.wait_idle()
    [event] = rows(unit.services, "SELECT * FROM event WHERE event_id LIKE 'pr-%'")
    assert event["patient_id"] == "PT-R"
    body = json.loads(event["body"])
    assert body["source"] == "patient"
    assert body["grades"] == {"sensory": 2}  # severe x somewhat
    assert body["findings"] == {
        "pro_ctcae": {"numbness_tingling_severity": 3, "numbness_tingling_interference": 2},
        "new_weakness": True,
        "patient_comment": "Worse at night, in both feet.",
    }
    assert rows(unit.services, "SELECT count(*) AS n FROM dead_letter") == [{"n": 0}]

    # the nurse's feed shows the review (D9), apart; the report itself changes no dose (V9)
    page.goto(f"{unit.url}/")
    page.locator(".badge.patient", has_text="Patient report").first.wait_for(state="visible")
    check_screen(page, tmp_path, "intake-7-nurse-feed")
    [review] = [a for a in unit.alerts_after(0) if a.get("patient_report")]
    assert (review["patient_id"], review["action"], review["severity"]) == (
        "PT-R",
        "review_required",
        "urgent",  # new weakness
    )
    decisions = unit.get("/v1/patients/PT-R/decisions", role="admin")["decisions"]
    assert [
        d["action"] for d in decisions if d["action"] in ("reduce_dose", "hold", "discontinue")
    ] == []


def test_no_numbness_skips_a_question_and_a_revoked_link_says_so_kindly(
    phone: Page, unit: Site, console: Console, tmp_path: pathlib.Path
) -> None:
    created = unit.http.post("/v1/patients/PT-R/invites", headers=unit.auth("nurse")).json()
    phone.goto(created["url"])
    phone.locator("#step-severity").wait_for(state="visible")
    tab_to(phone, 'input[name="severity"]')
    phone.keyboard.press("Space")  # None
    next_screen(phone, "severity")
    phone.locator("#step-weakness").wait_for(state="visible")
    assert phone.inner_text("#progress") == "Question 2 of 3"  # interference is not asked
    tab_to(phone, 'input[name="weakness"][value="yes"]')
    phone.keyboard.press("ArrowDown")  # No
    next_screen(phone, "weakness")
    phone.locator("#step-comment").wait_for(state="visible")
    next_screen(phone, "comment")
    phone.locator("#step-review").wait_for(state="visible")
    assert phone.locator("#review-answers dd").all_inner_texts() == ["None", "No", "Nothing added"]

    revoked = unit.http.delete(
        f"/v1/patients/PT-R/invites/{created['id']}", headers=unit.auth("nurse")
    )
    assert revoked.status_code == 200
    console.allow(r"status of 401")  # the browser logs the refused request
    next_screen(phone, "review")
    phone.locator("#step-stopped").wait_for(state="visible")
    assert focused_heading(phone) == "This link cannot be used"
    assert phone.inner_text("#stopped-text") == (
        "This link is no longer valid; ask your care team for a new one."
    )
    check_screen(phone, tmp_path, "intake-7-revoked")
    assert rows(unit.services, "SELECT count(*) AS n FROM event WHERE event_id LIKE 'pr-%'") == [
        {"n": 0}
    ]


def test_the_patient_page_offers_the_invite(page: Page, unit: Site, tmp_path: pathlib.Path) -> None:
    page.set_viewport_size(PHONE)
    log_in(page, unit, "/patients/PT-R", unit.tokens["infusion"])
    page.locator("#patient-actions button.invite-open").click()
    page.locator("#invite-link").wait_for()
    page.locator("#invite-revoke").click()
    page.locator("#invite-status").filter(has_text="Revoked: that link no longer works.").wait_for()
    [view] = unit.get("/v1/patients/PT-R/invites", role="infusion")["invites"]
    assert view["state"] == "revoked"
    check_screen(page, tmp_path, "intake-8-patient-page-revoked")
