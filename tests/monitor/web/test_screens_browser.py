"""The three screens (issue 14): the feed, the patient page and the chair list, for each role
that uses them, at a desktop's and a phone's width, in Debian's chromium; the main actions with
the keyboard only; axe-core finds no serious or critical violation on any of them.

The service runs version 2 of the default pack (the 72-hour rule) with the informational
decisions off the feed (the defaults of issue 14); the ward is tests/monitor/web/ward.py.
MONITOR_SCREENSHOTS=DIR keeps a screenshot of each screen there.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from monitor.auth.roles import Role
from monitor.settings import Settings
from tests.monitor.web.site import (
    VIEWPORT_IDS,
    VIEWPORTS,
    Console,
    Site,
    alert_ids_shown,
    assert_accessible,
    assert_fits,
    item,
    keep_screenshot,
    log_in,
    log_in_by_keyboard,
    tab_to,
    wait_live,
)
from tests.monitor.web.ward import ward_events

if TYPE_CHECKING:
    from playwright.sync_api import Page

FEED_ROLES: list[Role] = ["nurse", "physician", "pharmacy", "infusion", "admin"]
CHAIR_ROLES: list[Role] = ["nurse", "infusion", "admin"]
viewports = pytest.mark.parametrize(("width", "height"), VIEWPORTS, ids=VIEWPORT_IDS)


@pytest.fixture
def sqlite_settings(sqlite_settings: Settings) -> Settings:
    return sqlite_settings.model_copy(update={"policy": "default@2", "alert_info_decisions": False})


@pytest.fixture
def ward(site: Site) -> Site:
    site.post_events(*ward_events())
    return site


def texts(page: Page, selector: str) -> list[str]:
    return page.locator(selector).all_inner_texts()


def alert_of(site: Site, role: Role, patient: str, action: str, **params: Any) -> dict[str, Any]:
    alerts = site.get("/v1/alerts", role=role, limit=200, **params)["alerts"]
    found = [a for a in alerts if a["patient_id"] == patient and a["action"] == action]
    assert len(found) == 1, alerts
    alert: dict[str, Any] = found[0]
    return alert


# --- the feed -----------------------------------------------------------------------------


@viewports
@pytest.mark.parametrize("role", FEED_ROLES)
def test_the_feed_for_each_care_role(
    page: Page, ward: Site, role: Role, width: int, height: int
) -> None:
    page.set_viewport_size({"width": width, "height": height})
    expected = ward.get("/v1/alerts", role=role, limit=200)["alerts"]
    assert expected, f"the ward raised no alert for {role}"

    log_in(page, ward, "/", ward.tokens[role])
    wait_live(page)
    assert alert_ids_shown(page) == [a["id"] for a in expected]
    # each alert: the clinical time it is about and when it was raised, both labelled
    for alert in expected:
        shown = item(page, alert["id"])
        assert shown.locator(".clinical .label").inner_text().strip() == "about:"
        assert shown.locator(".raised .label").inner_text().strip() == "raised:"
        assert shown.locator(".raised time").get_attribute("datetime") == alert["created_at"]
        if alert["clinical_at"]:
            clinical = shown.locator(".clinical time")
            assert clinical.get_attribute("datetime") == alert["clinical_at"]
    # the due reassessments, overdue first, as the API lists them
    due = ward.get("/v1/reassessments", role=role, within_days=7)["reassessments"]
    page.wait_for_function(
        f"() => document.querySelectorAll('#reassessment-list li').length === {len(due)}"
    )
    listed = page.locator("#reassessment-list li").evaluate_all(
        "nodes => nodes.map(n => [n.dataset.patientId, n.classList.contains('overdue')])"
    )
    assert listed == [[r["patient_id"], r["overdue"]] for r in due]
    assert [r["overdue"] for r in due] == sorted((r["overdue"] for r in due), reverse=True)

    assert_fits(page, width)
    assert_accessible(page)
    keep_screenshot(page, f"feed-{role}-{width}")


@viewports
def test_an_april_escalation_reads_as_april_and_the_feed_groups_by_patient(
    page: Page, ward: Site, width: int, height: int
) -> None:
    page.set_viewport_size({"width": width, "height": height})
    escalation = alert_of(ward, "physician", "PT-E", "escalate_immunotherapy")
    assert escalation["clinical_at"] == "2026-04-12T09:00:00Z"
    assert escalation["created_at"] == "2026-10-01T12:00:00Z"

    log_in(page, ward, "/", ward.tokens["physician"])
    wait_live(page)
    shown = item(page, escalation["id"])
    assert shown.locator(".clinical").inner_text() == "about: 12 Apr 2026 09:00"
    assert shown.locator(".raised").inner_text() == "raised: 1 Oct 2026 12:00"

    ids_before = alert_ids_shown(page)
    page.check("#group-by-patient")
    groups = page.locator("#alerts > li.group")
    expected = ward.get("/v1/alerts", role="physician", limit=200)["alerts"]
    order: list[str] = []
    for alert in expected:  # newest first: a patient's group comes where its newest alert is
        if alert["patient_id"] not in order:
            order.append(alert["patient_id"])
    assert groups.evaluate_all("ns => ns.map(n => n.dataset.patientGroup)") == order
    for patient in order:
        group = page.locator(f'#alerts > li.group[data-patient-group="{patient}"]')
        ids = group.locator("[data-alert-id]").evaluate_all(
            "ns => ns.map(n => Number(n.dataset.alertId))"
        )
        assert ids == [a["id"] for a in expected if a["patient_id"] == patient]
        assert group.locator("h3 a").inner_text() == patient
    assert sorted(alert_ids_shown(page)) == sorted(ids_before)
    assert_fits(page, width)
    assert_accessible(page)
    keep_screenshot(page, f"feed-grouped-{width}")
    page.uncheck("#group-by-patient")
    assert groups.count() == 0
    assert alert_ids_shown(page) == ids_before


def test_log_in_and_acknowledge_with_a_note_by_keyboard_only(page: Page, ward: Site) -> None:
    target = alert_of(ward, "nurse", "PT-A", "discontinue")
    log_in_by_keyboard(page, ward, "/", ward.tokens["nurse"])
    wait_live(page)
    tab_to(page, f"#note-{target['id']}")
    page.keyboard.type("Discussed with Dr Lee, carfilzomib planned")
    page.keyboard.press("Enter")
    acked = item(page, target["id"])
    acked.locator(".ack").filter(has_text="Acknowledged by test-nurse").wait_for()
    assert "Discussed with Dr Lee, carfilzomib planned" in acked.locator(".ack").inner_text()
    assert page.inner_text("#feed-status") == f"Alert {target['id']} acknowledged."

    stored = ward.get("/v1/alerts", role="nurse", acknowledged="true")["alerts"]
    assert [(a["id"], a["ack"]["note"]) for a in stored] == [
        (target["id"], "Discussed with Dr Lee, carfilzomib planned")
    ]


def test_an_acknowledgement_the_role_may_not_give_shows_the_reason(
    page: Page, ward: Site, console: Console
) -> None:
    console.allow(r"Failed to load resource: .*403.*/ack")
    escalation = alert_of(ward, "nurse", "PT-E", "escalate_immunotherapy", audience="physician")
    log_in(page, ward, "/", ward.tokens["nurse"])
    wait_live(page)
    assert item(page, escalation["id"]).count() == 0  # not addressed to the nurse
    page.select_option("#filter-audience", "all")
    shown = item(page, escalation["id"])
    shown.wait_for()
    wait_live(page)
    shown.locator("#note-" + str(escalation["id"])).fill("seen")
    shown.locator("button.ack-button").click()
    error = shown.locator(".ack-error")
    page.wait_for_function(
        "id => document.querySelector(`[data-alert-id='${id}'] .ack-error`).textContent !== ''",
        arg=escalation["id"],
    )
    assert error.inner_text() == (
        f"Not acknowledged: alert {escalation['id']} is addressed to physician, neurology; "
        "role 'nurse' acknowledges alerts for nurse"
    )
    assert shown.locator("button.ack-button").is_enabled()  # still not acknowledged
    assert ward.get("/v1/alerts", role="physician", acknowledged="true")["alerts"] == []
    keep_screenshot(page, "feed-ack-refused-1280")


# --- the patient page ---------------------------------------------------------------------


def facts(page: Page, selector: str) -> dict[str, str]:
    return dict(
        zip(
            texts(page, f"{selector} dt"),
            texts(page, f"{selector} dd"),
            strict=True,
        )
    )


@viewports
@pytest.mark.parametrize("role", FEED_ROLES)
def test_the_patient_page_for_each_care_role(
    page: Page, ward: Site, console: Console, role: Role, width: int, height: int
) -> None:
    page.set_viewport_size({"width": width, "height": height})
    sees_clearance = role in ("infusion", "admin")  # the page asks /v1/me first: no 403
    log_in(page, ward, "/patients/PT-A", ward.tokens[role])
    page.wait_for_selector("#comparison-rows tr")

    # what the monitor recommends now, at the top
    now = page.locator("#now-cards > li")
    assert now.evaluate_all("ns => ns.map(n => n.dataset.now)") == [
        "dose",
        "reassessment",
        "escalation",
        "watch",
    ]
    dose = page.locator('[data-now="dose"]').inner_text()
    assert "discontinued" in dose
    assert "discontinue (D2, 20 Sep 2026 09:00)" in dose
    assert "due 12 Oct 2026 09:00" in page.locator('[data-now="reassessment"]').inner_text()
    escalation = page.locator('[data-now="escalation"]').inner_text()
    assert "escalated to immunotherapy 28 Sep 2026 09:00" in escalation

    # the clearance: only for the infusion chair (and admin)
    if sees_clearance:
        page.wait_for_selector("#clearance", state="visible")
        cleared = ward.get("/v1/patients/PT-A/clearance", role="infusion")
        assert page.inner_text("#clearance-verdict") == "Not cleared"
        assert texts(page, "#clearance-reasons li") == cleared["reasons"]
        shown = facts(page, "#clearance-facts")
        assert shown["body surface area"] == "1.82 m²"
        assert shown["last dose"] == "17 Feb 2026 09:00"
        assert shown["72 h rule: not before"] == "20 Feb 2026 09:00"
    else:
        page.wait_for_timeout(300)  # the clearance request has been answered (a 403)
        assert page.locator("#clearance").is_hidden()

    # the chart: the dose on its own (right) axis, a time axis, the gap, the decisions
    chart = page.locator("#chart")
    assert chart.locator("[data-dose-tick]").evaluate_all(
        "ns => ns.map(n => n.dataset.doseTick)"
    ) == ["0.0", "0.5", "1.0", "1.5"]
    time_ticks = chart.locator("[data-time-tick]").evaluate_all(
        "ns => ns.map(n => n.dataset.timeTick)"
    )
    assert len(time_ticks) >= 3
    assert time_ticks == sorted(time_ticks)
    assert chart.locator("g.gap").evaluate_all("ns => ns.map(n => n.dataset.gap)") == ["7 mo"]
    # the sensory line is broken at the gap: two pieces, five gradings
    sensory = chart.locator('path[data-series="sensory"]')
    assert sensory.get_attribute("data-points") == "5"
    assert (sensory.get_attribute("d") or "").count("M") == 2
    markers = chart.locator("[data-marker]").evaluate_all("ns => ns.map(n => n.dataset.marker)")
    assert sorted(markers) == sorted(
        ["reduce_dose", "reduce_dose", "discontinue", "escalate_immunotherapy"]
    )
    assert chart.locator('rect[data-series="given"]').count() == 3

    # recommended beside given: the February reduction to 0.7 was not followed (1.0 given)
    rows = page.locator("#comparison-rows tr")
    assert rows.evaluate_all("ns => ns.map(n => n.dataset.comparison)") == [
        "match",
        "match",
        "differs",
        "match",
    ]
    february = rows.nth(2).locator("td")
    assert february.nth(0).inner_text().startswith("reduce dose to 0.7 mg/m²")
    assert february.nth(1).inner_text().startswith("1 mg/m²")
    assert february.nth(2).inner_text() == "above the recommendation"

    assert_fits(page, width)
    assert_accessible(page)
    keep_screenshot(page, f"patient-{role}-{width}")


def test_the_infusion_chair_sees_a_cleared_dose_in_mg_m2_and_mg(page: Page, ward: Site) -> None:
    log_in(page, ward, "/patients/PT-B", ward.tokens["infusion"])
    page.wait_for_selector("#clearance", state="visible")
    page.wait_for_function("() => document.getElementById('clearance-facts').children.length")
    assert page.inner_text("#clearance-verdict") == "Cleared to dose now"
    shown = facts(page, "#clearance-facts")
    assert shown["dose"] == "1.3 mg/m²"
    assert shown["dose in mg"] == "2.6 mg"
    assert shown["route"] == "SC"
    assert shown["72 h rule: not before"] == "25 Sep 2026 09:00"
    assert_accessible(page)


# --- the chair list -----------------------------------------------------------------------


def open_unit(page: Page, unit: str) -> None:
    """Type the unit and show its list (the unit with the keyboard only)."""
    page.locator("#chair").wait_for(state="visible")
    page.fill("#chair-date", "2026-10-01")  # the service's day (FIXED_NOW), not the browser's
    tab_to(page, "#unit")
    page.keyboard.press("Control+A")
    page.keyboard.type(unit)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => /^Unit /.test(document.getElementById('chair-status').textContent)"
    )


def chair_card(page: Page, patient: str) -> Any:
    return page.locator(f'#chair-patients > li[data-patient-id="{patient}"]')


@viewports
@pytest.mark.parametrize("role", CHAIR_ROLES)
def test_the_chair_list_for_each_role(
    page: Page, ward: Site, role: Role, width: int, height: int
) -> None:
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, ward, "/chair", ward.tokens[role])
    open_unit(page, "U-A")
    listed = ward.get("/v1/units/U-A/chair", role=role, date="2026-10-01")
    cards = page.locator("#chair-patients > li")
    assert cards.evaluate_all("ns => ns.map(n => n.dataset.patientId)") == [
        p["patient_id"] for p in listed["patients"]
    ]
    for patient in listed["patients"]:
        card = chair_card(page, patient["patient_id"])
        verdict = "Cleared" if patient["clearance"]["cleared"] else "Not cleared"
        assert card.locator(".verdict").inner_text() == verdict
        assert card.locator(".reasons li").all_inner_texts() == patient["clearance"]["reasons"]
        weekly = card.locator("dt:text-is('weekly report') + dd").inner_text()
        assert weekly.startswith("not yet this week (due by ")  # the job has not marked any
        due = patient["reassessment"] is not None and patient["reassessment"]["overdue"]
        grading = card.locator("details:has(.grading-form)")
        if due:
            assert grading.get_attribute("open") is not None
    # the unit is remembered
    page.reload()
    page.locator("#chair").wait_for(state="visible")
    assert page.input_value("#unit") == "U-A"
    open_unit(page, "U-A")  # the service's day again (the reload shows the browser's today)
    assert_fits(page, width)
    assert_accessible(page)
    keep_screenshot(page, f"chair-{role}-{width}")


def test_record_a_grading_by_keyboard_only(page: Page, ward: Site) -> None:
    log_in_by_keyboard(page, ward, "/chair", ward.tokens["nurse"])
    open_unit(page, "U-A")
    card = chair_card(page, "PT-C")  # its reassessment is overdue: the form is open
    assert card.locator("details:has(.grading-form)").get_attribute("open") is not None
    tab_to(page, "#p-PT-C-grade-sensory")
    page.keyboard.press("ArrowDown")  # "not graded" -> 0
    page.keyboard.press("ArrowDown")  # -> 1
    tab_to(page, "#p-PT-C-grade-cycle")
    page.keyboard.type("2")
    page.keyboard.press("Enter")
    result = card.locator(".grading-form .form-result")
    result.filter(has_text="Grading recorded").wait_for()
    assert ward.worker.wait_idle()
    grades = ward.get("/v1/patients/PT-C/history")["grades"]
    assert grades[-1]["sensory"] == 1
    assert grades[-1]["cycle"] == 2


def test_record_an_administration_by_keyboard_only(page: Page, ward: Site) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    log_in_by_keyboard(page, ward, "/chair", ward.tokens["infusion"])
    open_unit(page, "U-A")
    card = chair_card(page, "PT-B")  # cleared
    tab_to(
        page,
        '#chair-patients > li[data-patient-id="PT-B"] details:not(:has(.grading-form)) > summary',
    )
    page.keyboard.press("Enter")  # opens "Record administration"
    assert page.input_value("#p-PT-B-dose-m2") == "1.3"
    tab_to(page, '#chair-patients > li[data-patient-id="PT-B"] .administration-form button')
    requests.clear()
    page.keyboard.press("Enter")
    card.locator(".administration-form .form-result").filter(
        has_text="Administration recorded"
    ).wait_for()
    # the list was fetched again (clearance re-checked) before the dose was posted
    posts = [i for i, r in enumerate(requests) if r.startswith("POST ")]
    gets = [i for i, r in enumerate(requests) if r.startswith("GET ") and "/chair?" in r]
    assert posts, requests
    assert gets, requests
    assert gets[0] < posts[0], requests
    assert ward.worker.wait_idle()
    doses = ward.get("/v1/patients/PT-B/history")["doses"]
    assert doses[-1]["source"] == "given"
    assert doses[-1]["dose_mg_m2"] == 1.3


def test_a_refused_administration_shows_the_reasons(
    page: Page, ward: Site, console: Console
) -> None:
    console.allow(r"Failed to load resource: .*409")
    log_in(page, ward, "/chair", ward.tokens["infusion"])
    open_unit(page, "U-A")
    card = chair_card(page, "PT-D")  # dosed yesterday: the 72-hour rule
    card.locator("details:not(:has(.grading-form)) > summary").click()
    card.locator(".administration-form button").click()
    result = card.locator(".administration-form .form-result")
    result.filter(has_text="Administration refused").wait_for()
    reasons = result.locator("li").all_inner_texts()
    assert reasons
    assert any(re.search(r"72 h|minimum interval", r) for r in reasons), reasons
    assert ward.get("/v1/patients/PT-D/history")["doses"][-1]["at"] == "2026-09-30T09:00:00Z"
    keep_screenshot(page, "chair-refused-1280")
