"""The HTML adherence report (monitor/reports/html.py): headline figures, the three charts as
inline SVG, the tables and the drill-down, self-contained, deterministic and escaped; then the
page in a real browser (Debian's chromium via Playwright) with the network cut off.

The report is the offline one over examples/timeline.jsonl (no alert section); an alert
section and its acknowledgement times are added from a real AdherenceReport fed with alerts.
"""

from __future__ import annotations

import copy
import datetime as dt
import pathlib
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

import pytest

from monitor.policy_file import load_pack
from monitor.replay.timeline import read_timeline
from monitor.reports.adherence import AdherenceReport, Period
from monitor.reports.html import _months, render_html
from monitor.reports.sources import report_from_events
from tests.common.browser import launched_browser
from tests.monitor.web.test_page_browser import Console

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

ROOT = pathlib.Path(__file__).resolve().parents[3]
TIMELINE = ROOT / "examples" / "timeline.jsonl"
PERIOD = Period(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 7, 1, tzinfo=dt.UTC))
CHARTS = ("by-month", "time-to-action", "ack-times")
DASH = "—"


# --- a small DOM over html.parser, for the assertions ------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def clean_text(self) -> str:
        return " ".join(self.text().split())

    def walk(self) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.walk()

    def find(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Descendants with the tag and attributes (`data_chart="x"` is data-chart="x")."""
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [
            n
            for n in self.walk()
            if (tag is None or n.tag == tag) and all(n.attrs.get(k) == v for k, v in wanted.items())
        ]

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.find(tag, **attrs)
        assert len(found) == 1, f"{len(found)} <{tag} {attrs}>"
        return found[0]

    def rows(self) -> list[Node]:
        return [r for body in self.find("tbody") for r in body.find("tr")]


class Dom(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root
        self.feed(text)
        self.close()
        assert self.current is self.root, f"<{self.current.tag}> is never closed"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Node(tag, dict(attrs), self.current))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.current.tag == tag, f"</{tag}> closes <{self.current.tag}>"
        assert self.current.parent is not None
        self.current = self.current.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse(text: str) -> Node:
    return Dom(text).root


# --- the report ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> tuple[dict[str, Any], dict[str, Any]]:
    """The offline report over the example timeline: (result, distributions)."""
    with TIMELINE.open("rb") as lines:
        timeline = read_timeline(lines)
    report = report_from_events(load_pack("default@1", None), timeline.events, PERIOD)
    result, distributions = report.result(), report.distributions()
    # what the assertions below rely on: the sample has something in every section
    assert result["alerts"] is None
    assert result["recommendations"]["deviated"] > 0
    assert result["recommendations"]["median_hours_to_action"] is not None
    assert result["reassessments"]["missed"] > 0
    assert result["escalations"]["median_days_to_therapy"] is not None
    assert result["deviations"]["by_reason"]
    assert distributions["hours_to_action"]
    assert any(p["items"] for p in result["patients"])
    return result, distributions


def alert_section() -> tuple[dict[str, Any], dict[str, list[float]]]:
    """An alert section and its acknowledgement minutes, from a real AdherenceReport."""
    report = AdherenceReport(PERIOD, "default@1", ack_target_minutes=60.0)
    created = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    for severity, minutes in (
        ("urgent", [2, 5, 9, 14, 30, 45, 75, 200, None]),
        ("warning", [20, 60, 90, 150, 400, 1300, None, None]),
        ("info", [300, 600, 900, 2400]),
    ):
        for m in minutes:
            acked = None if m is None else created + dt.timedelta(minutes=m)
            report.add_alert(severity, created, acked)
    return report.result()["alerts"], report.distributions()["minutes_to_ack"]


@pytest.fixture(scope="module")
def with_alerts(
    sample: tuple[dict[str, Any], dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    result, distributions = copy.deepcopy(sample)
    result["alerts"], distributions["minutes_to_ack"] = alert_section()
    return result, distributions


@pytest.fixture(scope="module")
def offline_html(sample: tuple[dict[str, Any], dict[str, Any]]) -> str:
    return render_html(*sample)


@pytest.fixture(scope="module")
def alerts_html(with_alerts: tuple[dict[str, Any], dict[str, Any]]) -> str:
    return render_html(*with_alerts)


def pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def figures(doc: Node) -> dict[str, str]:
    return {
        n.attrs["data-figure"] or "": n.clean_text()
        for n in doc.find(None)
        if "data-figure" in n.attrs
    }


# --- content ----------------------------------------------------------------------------------


def test_the_header_names_period_unit_and_policy_and_no_generation_time(
    sample: tuple[dict[str, Any], dict[str, Any]], offline_html: str
) -> None:
    doc = parse(offline_html)
    assert doc.one("h1").text() == "Adherence audit report"
    assert doc.one("dd", data_meta="period").clean_text() == (
        "2026-01-01 00:00 to 2026-07-01 00:00 UTC"
    )
    times = [t.attrs["datetime"] for t in doc.one("dd", data_meta="period").find("time")]
    assert times == ["2026-01-01T00:00:00Z", "2026-07-01T00:00:00Z"]
    assert doc.one("dd", data_meta="unit").text() == "all units"
    assert doc.one("dd", data_meta="policy").text() == sample[0]["policy"] == "default@1"
    assert "generated" not in offline_html.lower()

    result = copy.deepcopy(sample[0])
    result["unit"] = "onc-b"
    unit_doc = parse(render_html(result, sample[1]))
    assert unit_doc.one("dd", data_meta="unit").text() == "onc-b"


def test_the_headline_figures_are_the_report_s_numbers_formatted(
    sample: tuple[dict[str, Any], dict[str, Any]], offline_html: str
) -> None:
    result = sample[0]
    rec, rea, esc, dev = (
        result[k] for k in ("recommendations", "reassessments", "escalations", "deviations")
    )
    pr = result["patient_reports"]
    shown = figures(parse(offline_html))
    expected = {
        "recommendations.rate": pct(rec["followed"] / (rec["followed"] + rec["deviated"])),
        "recommendations.followed": str(rec["followed"]),
        "recommendations.deviated": str(rec["deviated"]),
        "recommendations.pending": str(rec["pending"]),
        "recommendations.total": str(rec["total"]),
        "recommendations.median_hours_to_action": f"{rec['median_hours_to_action']:.2f} h",
        "reassessments.rate": pct(rea["on_time"] / rea["due"]),
        "reassessments.due": str(rea["due"]),
        "reassessments.on_time": str(rea["on_time"]),
        "reassessments.late": str(rea["late"]),
        "reassessments.missed": str(rea["missed"]),
        "escalations.total": str(esc["total"]),
        "escalations.answered_within_7d": str(esc["answered_within_7d"]),
        "escalations.answered_late": str(esc["answered_late"]),
        "escalations.unanswered": str(esc["unanswered"]),
        "escalations.median_days_to_therapy": f"{esc['median_days_to_therapy']:.2f} d",
        "deviations.total": str(dev["total"]),
        "alerts.acknowledged": DASH,  # offline: no alert section
        # the example has no patient report: every week due went unreported
        "patient_reports.completion_rate": pct(pr["weekly_reports"]["completion_rate"]),
        "patient_reports.reviews_per_patient_week": str(pr["reviews"]["per_patient_week"]),
        **{f"deviations.{reason}": str(n) for reason, n in dev["by_reason"].items()},
    }
    assert shown == expected
    # the example's numbers, by hand: 5 of 6 followed; 29 of 33 reassessments on time
    assert shown["recommendations.rate"] == "83.3%"
    assert shown["reassessments.rate"] == "87.9%"


def test_the_alert_figures_when_the_report_has_alerts(
    with_alerts: tuple[dict[str, Any], dict[str, Any]], alerts_html: str
) -> None:
    shown = figures(parse(alerts_html))
    # urgent: 9 alerts, 8 acknowledged, 6 within 60 min; 21 alerts, 18 acknowledged in all
    assert shown["alerts.acknowledged"] == "18"
    assert shown["alerts.total"] == "21"
    assert shown["alerts.urgent_within_target.share"] == "66.7%"
    doc = parse(alerts_html)
    rows = {
        r.attrs["data-severity"]: [c.clean_text() for c in r.find()]
        for r in doc.one(data_table="ack-by-severity").rows()
    }
    assert list(rows) == ["urgent", "warning", "info"]
    by_severity = with_alerts[0]["alerts"]["by_severity"]
    assert rows["urgent"] == [
        "urgent",
        "9",
        "8",
        f"{by_severity['urgent']['median_minutes_to_ack']:.2f} min",
        f"{by_severity['urgent']['p90_minutes_to_ack']:.2f} min",
    ]
    assert rows["info"][:3] == ["info", "4", "4"]


def test_null_rates_and_medians_show_a_dash() -> None:
    empty = AdherenceReport(PERIOD, "default@1")
    result, distributions = empty.result(), empty.distributions()
    doc = parse(render_html(result, distributions))
    shown = figures(doc)
    for name in (
        "recommendations.rate",
        "recommendations.median_hours_to_action",
        "reassessments.rate",
        "escalations.median_days_to_therapy",
        "alerts.urgent_within_target.share",
    ):
        assert shown[name] == DASH, name
    assert shown["recommendations.total"] == "0"
    assert shown["alerts.acknowledged"] == "0"
    hold = doc.one("tr", data_action="hold").find("td")
    assert [c.text() for c in hold] == ["0", "0", "0", "0", DASH]
    # nothing to chart and nothing to review: notes instead
    for name in CHARTS:
        figure = doc.one("figure", data_chart=name)
        assert figure.find("svg") == []
        assert figure.one("p").attrs["class"] == "no-data"
    assert doc.find("table", data_table="drill-down") == []
    assert "Nothing to review" in doc.one("section", **{"class": "drill-down"}).text()


def test_one_drill_down_row_per_review_item_with_its_evidence(
    sample: tuple[dict[str, Any], dict[str, Any]], offline_html: str
) -> None:
    doc = parse(offline_html)
    tables = doc.find("table", data_table="drill-down")
    patients = [p for p in sample[0]["patients"] if p["items"]]
    assert [t.attrs["data-patient"] for t in tables] == [p["patient_id"] for p in patients]
    for table, patient in zip(tables, patients, strict=True):
        assert patient["patient_id"] in table.one("caption").text()
        rows = table.rows()
        assert [r.attrs["data-decision"] for r in rows] == [
            i["decision_id"] for i in patient["items"]
        ]
        for row, item in zip(rows, patient["items"], strict=True):
            cells = row.find("td")
            assert len(cells) == 7
            kind, action, _decided, due, outcome, evidence, elapsed = (
                c.clean_text() for c in cells
            )
            assert kind == item["kind"]
            assert action.startswith(item["action"].replace("_", " "))
            assert cells[2].one("time").attrs["datetime"] == item["at"]
            if item["due_at"] is None:
                assert due == DASH
            else:
                assert cells[3].one("time").attrs["datetime"] == item["due_at"]
            assert outcome == item["outcome"].replace("_", " ")
            if item["evidence"] is None:
                assert evidence == DASH
            else:
                assert cells[5].one("code").text() == item["evidence"]["event_id"]
                assert item["evidence"]["type"] in evidence
            if item["hours_to_action"] is not None:
                assert elapsed == f"{item['hours_to_action']:.2f} h"
            elif item["days_to_therapy"] is not None:
                assert elapsed == f"{item['days_to_therapy']:.2f} d"
            else:
                assert elapsed == DASH
    total_items = sum(len(p["items"]) for p in patients)
    assert sum(len(t.rows()) for t in tables) == total_items
    # the deviated reduce_dose of the example, with its dose and the administration above it
    deviated = [r for t in tables for r in t.rows() if "deviated" in r.clean_text()]
    assert len(deviated) == sample[0]["recommendations"]["deviated"]
    assert "mg/m²" in deviated[0].find("td")[1].text()
    assert "administration" in deviated[0].find("td")[5].text()


@pytest.mark.parametrize(
    ("dose_mg_m2", "shown"),
    [(2.4 / 1.82, "2.4 mg (1.32 mg/m²)"), (None, "2.4 mg (no body surface area: not comparable)")],
    ids=["converted", "not-comparable"],
)
def test_a_dose_given_in_mg_shows_in_the_evidence(
    sample: tuple[dict[str, Any], dict[str, Any]], dose_mg_m2: float | None, shown: str
) -> None:
    result, distributions = copy.deepcopy(sample)
    patient = next(p for p in result["patients"] if p["items"])
    patient["items"][0]["evidence"] = {
        "event_id": "x-mg",
        "type": "administration",
        "at": "2026-03-01T00:00:00Z",
        "dose_mg_m2": dose_mg_m2,
        "dose_mg": 2.4,
        "action": None,
    }
    doc = parse(render_html(result, distributions))
    [row] = [r for t in doc.find("table", data_table="drill-down") for r in t.rows()
             if "x-mg" in r.clean_text()]  # fmt: skip
    assert shown in row.find("td")[5].clean_text()


def test_the_by_action_and_by_unit_tables(
    sample: tuple[dict[str, Any], dict[str, Any]], offline_html: str
) -> None:
    doc = parse(offline_html)
    by_action = sample[0]["recommendations"]["by_action"]
    rows = doc.one("table", data_table="by-action").rows()
    assert [r.attrs["data-action"] for r in rows] == ["reduce_dose", "hold", "discontinue"]
    for row in rows:
        counts = by_action[row.attrs["data-action"] or ""]
        cells = [c.text() for c in row.find("td")]
        rate = DASH if counts["rate"] is None else pct(counts["rate"])
        assert cells == [str(counts[k]) for k in ("total", "followed", "deviated", "pending")] + [
            rate
        ]
    by_unit = sample[0]["by_unit"]
    rows = doc.one("table", data_table="by-unit").rows()
    assert [r.attrs["data-unit"] for r in rows] == list(by_unit)
    for row in rows:
        summary = by_unit[row.attrs["data-unit"] or ""]
        rec, rea, esc = summary["recommendations"], summary["reassessments"], summary["escalations"]
        assert [c.text() for c in row.find("td")] == [
            *(str(rec[k]) for k in ("total", "followed", "deviated", "pending")),
            pct(rec["rate"]),
            *(str(rea[k]) for k in ("due", "on_time", "late", "missed")),
            pct(rea["rate"]),
            *(str(esc[k]) for k in ("total", "answered_within_7d", "answered_late", "unanswered")),
        ]


def test_sections_come_in_order_with_a_figure_and_caption_per_chart(offline_html: str) -> None:
    markers = [
        "<h1>",
        'class="headline"',
        'data-chart="by-month"',
        'data-chart="time-to-action"',
        'data-table="by-action"',
        'data-chart="ack-times"',
        'data-table="by-unit"',
        'data-table="drill-down"',
    ]
    body = offline_html.index("<body>")
    positions = [offline_html.index(m, body) for m in markers]
    assert positions == sorted(positions)
    doc = parse(offline_html)
    assert [f.attrs["data-chart"] for f in doc.find("figure")] == list(CHARTS)
    for name in CHARTS:
        assert doc.one("figure", data_chart=name).one("figcaption").text()


def test_offline_the_ack_chart_is_a_note_and_with_alerts_it_is_drawn(
    offline_html: str, alerts_html: str
) -> None:
    offline = parse(offline_html)
    for name in ("by-month", "time-to-action"):
        svg = offline.one("figure", data_chart=name).one("svg")
        assert svg.attrs["viewbox"]
        assert svg.find("path"), f"{name}: an empty chart"
    ack = offline.one("figure", data_chart="ack-times")
    assert ack.find("svg") == []
    assert "offline" in ack.one("p", **{"class": "no-data"}).text()
    assert offline.find("table", data_table="ack-by-severity") == []

    drawn = parse(alerts_html)
    for name in CHARTS:
        assert drawn.one("figure", data_chart=name).one("svg").find("path"), name
    assert "60 min" in drawn.one("figure", data_chart="ack-times").one("figcaption").text()


def test_no_time_to_action_shows_a_note_instead_of_the_histogram(
    sample: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    result, distributions = copy.deepcopy(sample)
    distributions["hours_to_action"] = []
    result["recommendations"]["median_hours_to_action"] = None
    doc = parse(render_html(result, distributions))
    figure = doc.one("figure", data_chart="time-to-action")
    assert figure.find("svg") == []
    assert "no time to action" in figure.one("p", **{"class": "no-data"}).text()
    assert doc.one("figure", data_chart="by-month").find("svg")


def test_alerts_without_any_acknowledgement_show_a_note(
    sample: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    result, distributions = copy.deepcopy(sample)
    report = AdherenceReport(PERIOD, "default@1")
    report.add_alert("urgent", dt.datetime(2026, 3, 1, tzinfo=dt.UTC), None)
    result["alerts"] = report.result()["alerts"]
    distributions["minutes_to_ack"] = report.distributions()["minutes_to_ack"]
    figure = parse(render_html(result, distributions)).one("figure", data_chart="ack-times")
    assert figure.find("svg") == []
    assert "acknowledged" in figure.one("p").text()


@pytest.mark.parametrize(
    ("period", "by_month", "expected"),
    [
        # the end is inclusive: a period ending at a month's first instant adds no empty month
        (("2026-01-01T00:00:00Z", "2026-07-01T00:00:00Z"), {}, [f"2026-0{m}" for m in range(1, 7)]),
        # ...unless something falls on that instant
        (
            ("2026-01-01T00:00:00Z", "2026-07-01T00:00:00Z"),
            {"2026-07": {}},
            [f"2026-0{m}" for m in range(1, 8)],
        ),
        (
            ("2025-11-15T00:00:00Z", "2026-02-10T00:00:00Z"),
            {},
            ["2025-11", "2025-12", "2026-01", "2026-02"],
        ),
        # a period of decades charts only the months that have items
        (("1990-01-01T00:00:00Z", "2026-01-01T00:00:00Z"), {"2025-03": {}}, ["2025-03"]),
    ],
)
def test_the_months_of_the_rates_chart_include_the_empty_ones_as_gaps(
    period: tuple[str, str], by_month: dict[str, Any], expected: list[str]
) -> None:
    assert _months({"from": period[0], "to": period[1]}, by_month) == expected


# --- self-contained, deterministic, escaped -----------------------------------------------------

XMLNS = re.compile(r'xmlns(?::\w+)?="(https?://[^"]*)"')


@pytest.mark.parametrize("which", ["offline", "alerts"])
def test_the_page_references_nothing_outside_itself(
    which: str, offline_html: str, alerts_html: str
) -> None:
    text = offline_html if which == "offline" else alerts_html
    lowered = text.lower()
    for forbidden in ("<script", "<link", "@import", "<iframe", "<img", "<object", "src="):
        assert forbidden not in lowered, forbidden
    # references only to ids inside the page (the SVGs' clip paths and glyphs)
    assert set(re.findall(r"url\(([^)]*)\)", text)) == set(re.findall(r"url\((#[\w-]+)\)", text))
    assert set(re.findall(r'href="([^"]*)"', text)) == set(re.findall(r'href="(#[\w-]+)"', text))
    # the only URIs are the SVG namespaces, which are names, not fetched
    namespaces = set(XMLNS.findall(text))
    assert namespaces <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert lowered.count("http") == len(XMLNS.findall(text))
    # each SVG inline: no XML prolog, no SVG doctype, no matplotlib metadata
    assert "<?xml" not in text
    assert lowered.count("<!doctype") == 1
    assert lowered.startswith("<!doctype html>")
    assert "<metadata" not in text
    assert text.count("<svg") == (3 if which == "alerts" else 2)


def test_the_same_report_renders_the_same_bytes_even_concurrently(
    with_alerts: tuple[dict[str, Any], dict[str, Any]], alerts_html: str
) -> None:
    assert render_html(*with_alerts) == alerts_html
    with ThreadPoolExecutor(max_workers=3) as pool:
        renders = list(pool.map(lambda _: render_html(*with_alerts), range(3)))
    assert renders == [alerts_html] * 3


def test_strings_from_the_data_are_escaped(sample: tuple[dict[str, Any], dict[str, Any]]) -> None:
    result, distributions = copy.deepcopy(sample)
    evil = "<script>alert(1)</script>"
    result["unit"] = evil
    result["policy"] = '"><img src=x onerror=alert(2)>'
    result["deviations"]["by_reason"] = {"<b>bold</b>": 1}
    result["by_unit"] = {"<i>unit</i>": next(iter(result["by_unit"].values()))}
    patient = next(p for p in result["patients"] if p["items"])
    patient["patient_id"] = '<svg onload="x">'
    patient["units"] = ["<u>u</u>"]
    patient["items"][0]["decision_id"] = '"><script>'
    patient["items"][0]["evidence"] = {
        "event_id": "<evil-event>",
        "type": "<type>",
        "at": "2026-03-01T00:00:00Z",
        "dose_mg_m2": 1.3,
        "action": "<act>",
    }
    text = render_html(result, distributions)
    for raw in (
        evil,
        "<img",
        "<b>bold",
        "<i>unit",
        "<svg onload",
        "<u>u",
        '"><script>',
        "<evil-event>",
        "<type>",
        "<act>",
    ):
        assert raw not in text, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;evil-event&gt;" in text
    doc = parse(text)
    assert doc.one("dd", data_meta="unit").text() == evil
    assert doc.one("table", data_table="drill-down", data_patient='<svg onload="x">')
    assert doc.find("script") == []


# --- in a real browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_browser() as launched:
        yield launched


def open_offline(browser: Browser, path: pathlib.Path, blocked: list[str]) -> tuple[Page, Console]:
    """The file in a new page, every request but file:// aborted (and recorded)."""
    context = browser.new_context(viewport={"width": 900, "height": 1200})
    context.set_default_timeout(10_000)
    page = context.new_page()
    console = Console()
    page.on("console", console.on_console)
    page.on("pageerror", console.on_page_error)

    def only_files(route: Route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_files)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, console


def test_the_report_renders_in_chromium_with_the_network_cut_off(
    browser: Browser,
    with_alerts: tuple[dict[str, Any], dict[str, Any]],
    alerts_html: str,
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "adherence.html"
    path.write_text(alerts_html, encoding="utf-8")
    blocked: list[str] = []
    page, console = open_offline(browser, path, blocked)
    try:
        assert page.title().startswith("Adherence audit")
        for name in CHARTS:
            svg = page.locator(f'figure[data-chart="{name}"] svg')
            assert svg.count() == 1, name
            box = svg.bounding_box()
            assert box is not None, name
            assert box["width"] > 300, (name, box)
            assert box["height"] > 80, (name, box)
            assert page.locator(f'figure[data-chart="{name}"] figcaption').is_visible()
        result = with_alerts[0]
        assert page.locator('[data-table="by-action"] tbody tr').count() == 3
        assert page.locator('[data-table="by-unit"] tbody tr').count() == len(result["by_unit"])
        items = sum(len(p["items"]) for p in result["patients"])
        assert page.locator('[data-table="drill-down"] tbody tr').count() == items
        first_row = page.locator('[data-table="drill-down"] tbody tr').first.bounding_box()
        assert first_row is not None
        assert first_row["height"] > 10
        assert page.locator('[data-figure="recommendations.rate"]').inner_text() == "83.3%"
        # nothing wider than the page, on screen and printed on A4 (186 mm = 703 px of content)
        overflow = (
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert page.evaluate(overflow) == 0
        page.set_viewport_size({"width": 703, "height": 1000})
        page.emulate_media(media="print")
        tables_fit = """() => [...document.querySelectorAll('table')].every(
            t => t.getBoundingClientRect().width <= t.parentElement.clientWidth + 0.5)"""
        assert page.evaluate(tables_fit)
        assert page.evaluate(overflow) == 0
        page.emulate_media(media="screen")
        page.set_viewport_size({"width": 900, "height": 1200})
        page.screenshot(path=str(tmp_path / "adherence.png"), full_page=True)
    finally:
        page.context.close()
    assert (tmp_path / "adherence.png").stat().st_size > 10_000
    assert blocked == []
    assert console.unexpected() == [], console.errors


def test_the_offline_report_shows_the_alert_note_in_chromium(
    browser: Browser, offline_html: str, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "offline.html"
    path.write_text(offline_html, encoding="utf-8")
    blocked: list[str] = []
    page, console = open_offline(browser, path, blocked)
    try:
        assert page.locator("figure svg").count() == 2
        note = page.locator('figure[data-chart="ack-times"] .no-data')
        assert note.is_visible()
        assert "offline" in note.inner_text()
        page.screenshot(path=str(tmp_path / "offline.png"), full_page=True)
    finally:
        page.context.close()
    assert blocked == []
    assert console.unexpected() == [], console.errors


def patient_reports_section(*, online: bool) -> dict[str, Any]:
    """A `patient_reports` section from a real AdherenceReport: 5 weekly windows, 3 reported,
    two reviews (one acknowledged 3.5 h after its report), one D8 check not done."""
    from monitor.reports.adherence import AuditDecision, AuditEvent
    from monitor.reports.patient_reports import tally_patient

    start = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    period = Period(start, start + dt.timedelta(days=40))
    day = dt.timedelta(days=1)
    events = [
        AuditEvent("e0", "enrollment", start),
        AuditEvent("a0", "assessment", start),
        *(AuditEvent(f"r{d}", "assessment", start + d * day, source="patient") for d in (1, 8, 22)),
        AuditEvent("iv", "immunotherapy", start + day, therapy="ivig"),
    ]
    decisions = [
        AuditDecision(f"d-{d}", "review_required", start + d * day, f"r{d}",
                      reason="patient_reported_change")
        for d in (1, 8)
    ]  # fmt: skip
    report = AdherenceReport(period, "default@2", with_alerts=online)
    report.add_patient("P1", [], [], 40 * 86400.0, tally_patient(events, decisions, period))
    report.add_review_ack("d-1", start + day + dt.timedelta(hours=3.5))
    section: dict[str, Any] = report.result()["patient_reports"]
    report.close()
    return section


def test_the_patient_reports_section_shows_completion_reviews_acks_and_d8(
    sample: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    result, distributions = copy.deepcopy(sample)
    result["patient_reports"] = patient_reports_section(online=True)
    doc = parse(render_html(result, distributions))
    section = doc.one("section", data_section="patient-reports")
    shown = figures(section)
    assert shown["patient_reports.completion_rate"] == "60.0%"  # 3 of 5
    assert shown["patient_reports.reviews_per_patient_week"] == "0.35"  # 2 / (40 / 7)
    table = {
        r.attrs["data-row"]: r.one("td").text()
        for r in section.one("table", data_table="patient-reports").rows()
    }
    assert (table["expected"], table["reported"], table["missed"], table["reviews"]) == (
        "5",
        "3",
        "2",
        "2",
    )
    assert (table["median-to-ack"], table["unacknowledged"]) == ("3.50 h", "1")
    d8 = {
        r.attrs["data-row"]: r.one("td").text()
        for r in section.one("table", data_table="immunotherapy-response").rows()
    }
    assert d8 == {"responses": "0", "non-responses": "0", "not-done": "1", "without-baseline": "0"}

    result["patient_reports"] = patient_reports_section(online=False)
    offline = parse(render_html(result, distributions)).one(
        "section", data_section="patient-reports"
    )
    rows = {r.attrs["data-row"] for r in offline.one("table", data_table="patient-reports").rows()}
    assert "median-to-ack" not in rows
    assert "offline" in offline.one("tr", data_row="acknowledgement").text()
