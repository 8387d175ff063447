"""The adherence report (issue 5) as one self-contained HTML page: headline figures, a chart
per section, the by-action and by-unit tables and the drill-down of what needs review.

Self-contained: inline CSS, charts drawn here with matplotlib as inline SVG (text as paths, so
no font is fetched), no script and no external reference; it opens offline and prints on A4.
Deterministic: the same report gives the same bytes (no generation time, fixed SVG ids, no
matplotlib metadata), so a stored report can be compared with a re-run.

Every string taken from the report (patient and event ids, units, reasons, the policy) is
escaped; numbers are formatted here.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import math
import re
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from policies.decisions import from_utc_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["render_html"]

DASH = "—"
SEVERITIES = ("urgent", "warning", "info")
RECOMMENDATION_ACTIONS = ("reduce_dose", "hold", "discontinue")
MAX_MONTHS = 120  # a longer period shows only the months that have audited items
CHART_WIDTH_IN = 6.8  # inches, drawn at 100 % of the A4 content width

# Colours (colour-blind safe pairs), shared by the charts and the CSS.
BLUE = "#2f6db5"
ORANGE = "#d9822b"
GREY = "#6b7280"
RED = "#b42318"
INK = "#1f2933"
GRID = "#e5e7eb"

# matplotlib's rcParams are global: the render holds this lock while it sets them (svg.hashsalt
# makes the SVG ids stable), so concurrent requests of a web server don't see each other's.
_RENDER_LOCK = threading.Lock()
_RC: dict[str, Any] = {
    "svg.hashsalt": "bipn-adherence-report",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",  # ships with matplotlib: the same glyphs everywhere
    "font.size": 9.5,
    "axes.edgecolor": GREY,
    "axes.labelcolor": INK,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": INK,
    "ytick.color": INK,
    "legend.frameon": False,
}


def render_html(result: dict[str, Any], distributions: dict[str, Any]) -> str:
    """The report `result` (AdherenceReport.result()) as an HTML document; `distributions`
    (AdherenceReport.distributions()) gives the values behind the charts."""
    charts = _Charts(result, distributions).render()
    parts = [
        "<!DOCTYPE html>\n",
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>Adherence audit · {_period_text(result)}</title>\n",
        f"<style>\n{CSS}</style>\n</head>\n<body>\n<main>\n",
        _header(result),
        _headline(result),
        _section_by_month(result, charts["by-month"]),
        _section_recommendations(result, charts["time-to-action"]),
        _section_alerts(result, charts["ack-times"]),
        _section_cds(result),
        _section_by_unit(result),
        _section_drill_down(result),
        "</main>\n</body>\n</html>\n",
    ]
    return "".join(parts)


# --- formatting -------------------------------------------------------------------------------


def _e(value: Any) -> str:
    """Escaped text; None is a dash."""
    return DASH if value is None else html.escape(str(value))


def _count(value: Any) -> str:
    return DASH if value is None else f"{int(value):,}"


def _pct(rate: float | None) -> str:
    return DASH if rate is None else f"{rate * 100:.1f}%"


def _amount(value: float | None, unit: str) -> str:
    return DASH if value is None else f"{value:,.2f} {unit}"


def _when(stamp: str | None) -> str:
    """An ISO UTC time ("...Z") as a <time>: "2026-06-08 06:40" (seconds when not zero)."""
    if stamp is None:
        return DASH
    shown = stamp.removesuffix("Z").replace("T", " ")
    if shown.endswith(":00") and shown.count(":") == 2:
        shown = shown[:-3]
    return f'<time datetime="{_e(stamp)}">{_e(shown)}</time>'


def _label(name: str) -> str:
    """An identifier as words: "answered_within_7d" -> "answered within 7d"."""
    return _e(name.replace("_", " "))


def _period_text(result: dict[str, Any]) -> str:
    period = result.get("period") or {}
    start, end = (
        _e((period.get(k) or "").removesuffix("Z").replace("T", " ")) for k in ("from", "to")
    )
    return f"{start} to {end} UTC"


def _unit_name(unit: str) -> str:
    return "(no unit)" if unit == "(none)" else unit


# --- page parts -------------------------------------------------------------------------------


def _header(result: dict[str, Any]) -> str:
    period = result.get("period") or {}
    unit = result.get("unit")
    return (
        '<header>\n<h1>Adherence audit report</h1>\n<dl class="meta">\n'
        f'<dt>Period</dt><dd data-meta="period">{_when(period.get("from"))} to '
        f"{_when(period.get('to'))} UTC</dd>\n"
        f'<dt>Unit</dt><dd data-meta="unit">{"all units" if unit is None else _e(unit)}</dd>\n'
        f'<dt>Policy</dt><dd data-meta="policy">{_e(result.get("policy"))}</dd>\n'
        "</dl>\n</header>\n"
    )


def _figure(name: str, value: str) -> str:
    return f'<span data-figure="{name}">{value}</span>'


def _card(
    title: str, big: str, caption: str, rows: Sequence[tuple[str, str]], *, wide: bool = False
) -> str:
    details = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
    classes = "card wide" if wide else "card"
    return (
        f'<article class="{classes}">\n<h3>{title}</h3>\n<p class="big">{big}</p>\n'
        f'<p class="caption">{caption}</p>\n<dl>{details}</dl>\n</article>\n'
    )


def _headline(result: dict[str, Any]) -> str:
    rec = result["recommendations"]
    rea = result["reassessments"]
    esc = result["escalations"]
    alerts = result.get("alerts")
    dev = result["deviations"]
    cards = [
        _card(
            "Recommendations",
            _figure("recommendations.rate", _pct(rec["rate"])),
            "followed ÷ (followed + deviated)",
            [
                ("followed", _figure("recommendations.followed", _count(rec["followed"]))),
                ("deviated", _figure("recommendations.deviated", _count(rec["deviated"]))),
                ("pending", _figure("recommendations.pending", _count(rec["pending"]))),
                ("total", _figure("recommendations.total", _count(rec["total"]))),
                (
                    "median time to action",
                    _figure(
                        "recommendations.median_hours_to_action",
                        _amount(rec["median_hours_to_action"], "h"),
                    ),
                ),
            ],
        ),
        _card(
            "Reassessments",
            _figure("reassessments.rate", _pct(rea["rate"])),
            "on time ÷ due",
            [
                ("due", _figure("reassessments.due", _count(rea["due"]))),
                ("on time", _figure("reassessments.on_time", _count(rea["on_time"]))),
                ("late", _figure("reassessments.late", _count(rea["late"]))),
                ("missed", _figure("reassessments.missed", _count(rea["missed"]))),
            ],
        ),
        _card(
            "Escalations",
            _figure("escalations.answered_within_7d", _count(esc["answered_within_7d"]))
            + f"<small> of {_figure('escalations.total', _count(esc['total']))}</small>",
            "answered with immunotherapy within 7 days",
            [
                (
                    "answered late",
                    _figure("escalations.answered_late", _count(esc["answered_late"])),
                ),
                ("unanswered", _figure("escalations.unanswered", _count(esc["unanswered"]))),
                (
                    "median time to therapy",
                    _figure(
                        "escalations.median_days_to_therapy",
                        _amount(esc["median_days_to_therapy"], "d"),
                    ),
                ),
            ],
        ),
        _alerts_card(alerts),
        _card(
            "Deviations",
            _figure("deviations.total", _count(dev["total"])),
            "adherence deviations recorded",
            [
                (_label(reason), _figure(f"deviations.{_e(reason)}", _count(n)))
                for reason, n in (dev.get("by_reason") or {}).items()
            ]
            or [("by reason", DASH)],
            wide=True,
        ),
    ]
    return (
        '<section class="headline">\n<h2>Headline figures</h2>\n' + "".join(cards) + "</section>\n"
    )


def _alerts_card(alerts: dict[str, Any] | None) -> str:
    if alerts is None:
        return _card(
            "Alerts",
            _figure("alerts.acknowledged", DASH),
            "not in an offline report (alerts live in the service's database)",
            [],
            wide=True,
        )
    within = alerts.get("urgent_acknowledged_within_target") or {}
    urgent = (alerts.get("by_severity") or {}).get("urgent") or {}
    target = within.get("target_minutes")
    target_text = DASH if target is None else f"{target:g} min"
    return _card(
        "Alerts",
        _figure("alerts.acknowledged", _count(alerts["acknowledged"]))
        + f"<small> of {_figure('alerts.total', _count(alerts['total']))}</small>",
        "acknowledged",
        [
            (
                f"urgent ≤ {target_text}",
                _figure("alerts.urgent_within_target.share", _pct(within.get("share"))),
            ),
            (
                "urgent in time",
                f"{_count(within.get('count'))} of {_count(urgent.get('total'))}",
            ),
        ],
        wide=True,
    )


def _chart_figure(name: str, svg: str | None, caption: str, note: str) -> str:
    body = svg if svg is not None else f'<p class="no-data">{note}</p>'
    return f'<figure data-chart="{name}">\n{body}\n<figcaption>{caption}</figcaption>\n</figure>\n'


def _section_by_month(result: dict[str, Any], svg: str | None) -> str:
    figure = _chart_figure(
        "by-month",
        svg,
        "Rates by month: recommendations followed (followed ÷ (followed + deviated), by the "
        "decision's month) and reassessments on time (on time ÷ due, by the due month). A month "
        "with nothing to rate is a gap.",
        "No rate in the period (no recommendation followed or deviated, no reassessment due): "
        "nothing to chart.",
    )
    return f'<section class="chart">\n<h2>Rates by month</h2>\n{figure}</section>\n'


def _section_recommendations(result: dict[str, Any], svg: str | None) -> str:
    rec = result["recommendations"]
    figure = _chart_figure(
        "time-to-action",
        svg,
        "Time to action: hours from each recommendation to the first recorded treatment change "
        f"that carried it out (median {_amount(rec['median_hours_to_action'], 'h')}).",
        "No recommendation in the period was carried out by a recorded treatment change: "
        "no time to action to chart.",
    )
    by_action = rec.get("by_action") or {}
    rows = []
    for action in (
        *RECOMMENDATION_ACTIONS,
        *(a for a in by_action if a not in RECOMMENDATION_ACTIONS),
    ):
        counts = by_action.get(action)
        if counts is None:
            continue
        rows.append(
            f'<tr data-action="{_e(action)}"><th scope="row">{_label(action)}</th>'
            f"{_counts_cells(counts, ('total', 'followed', 'deviated', 'pending'))}"
            f'<td class="num">{_pct(counts.get("rate"))}</td></tr>'
        )
    table = (
        '<table data-table="by-action">\n<caption>Recommendations by action</caption>\n'
        '<thead><tr><th scope="col">action</th><th class="num">total</th>'
        '<th class="num">followed</th><th class="num">deviated</th>'
        '<th class="num">pending</th><th class="num">rate</th></tr></thead>\n'
        f"<tbody>\n{chr(10).join(rows)}\n</tbody>\n</table>\n"
    )
    return f'<section class="chart">\n<h2>Recommendations</h2>\n{figure}{table}</section>\n'


def _section_alerts(result: dict[str, Any], svg: str | None) -> str:
    alerts = result.get("alerts")
    if alerts is None:
        figure = _chart_figure(
            "ack-times",
            None,
            "Alert acknowledgement times",
            "No alert section: this report was computed offline from an event file, and alerts "
            "and their acknowledgements live in the service's database only.",
        )
        return f'<section class="chart">\n<h2>Alert acknowledgement</h2>\n{figure}</section>\n'
    within = alerts.get("urgent_acknowledged_within_target") or {}
    target = within.get("target_minutes")
    target_text = (
        "" if target is None else f" The dashed line is the urgent target, {target:g} min."
    )
    figure = _chart_figure(
        "ack-times",
        svg,
        "Minutes from an alert to its acknowledgement, by severity: boxes span the quartiles, "
        "the bar is the median, whiskers reach the 5th and 95th percentiles." + target_text,
        "No alert in the period was acknowledged: no acknowledgement time to chart.",
    )
    rows = []
    by_severity = alerts.get("by_severity") or {}
    for severity in (*SEVERITIES, *(s for s in by_severity if s not in SEVERITIES)):
        counts = by_severity.get(severity)
        if counts is None:
            continue
        rows.append(
            f'<tr data-severity="{_e(severity)}"><th scope="row">{_e(severity)}</th>'
            f"{_counts_cells(counts, ('total', 'acknowledged'))}"
            f'<td class="num">{_amount(counts.get("median_minutes_to_ack"), "min")}</td>'
            f'<td class="num">{_amount(counts.get("p90_minutes_to_ack"), "min")}</td></tr>'
        )
    table = (
        '<table data-table="ack-by-severity">\n<caption>Alerts by severity</caption>\n'
        '<thead><tr><th scope="col">severity</th><th class="num">total</th>'
        '<th class="num">acknowledged</th><th class="num">median to ack</th>'
        '<th class="num">p90 to ack</th></tr></thead>\n'
        f"<tbody>\n{chr(10).join(rows)}\n</tbody>\n</table>\n"
    )
    return f'<section class="chart">\n<h2>Alert acknowledgement</h2>\n{figure}{table}</section>\n'


def _section_cds(result: dict[str, Any]) -> str:
    """CDS Hooks cards at order signing and what prescribers did with them (database reports
    only: an offline report has no such section, and shows none)."""
    cds = result.get("cds")
    if cds is None:
        return ""
    by_indicator = cds.get("by_indicator") or {}
    rows = "\n".join(
        f'<tr data-indicator="{_e(name)}"><th scope="row">{_e(name)}</th>'
        f'<td class="num">{_count(count)}</td></tr>'
        for name, count in by_indicator.items()
    )
    outcomes = "\n".join(
        f'<tr data-outcome="{name}"><th scope="row">{_label(name)}</th>'
        f'<td class="num">{_count(cds.get(name))}</td></tr>'
        for name in ("accepted", "overridden", "no_feedback")
    )
    reasons = (
        "\n".join(
            f'<tr data-reason="{_e(reason)}"><th scope="row">{_e(reason)}</th>'
            f'<td class="num">{_count(count)}</td></tr>'
            for reason, count in (cds.get("override_reasons") or {}).items()
        )
        or '<tr class="empty"><td colspan="2">No card was overridden.</td></tr>'
    )
    return (
        "<section>\n<h2>Order checks (CDS Hooks)</h2>\n"
        f"<p>{_figure('cds.cards', _count(cds.get('cards')))} cards at order signing; "
        "the latest feedback of each counts.</p>\n"
        '<table data-table="cds">\n<caption>Cards and what became of them</caption>\n'
        '<thead><tr><th scope="col">indicator / outcome</th><th class="num">cards</th></tr>'
        f"</thead>\n<tbody>\n{rows}\n{outcomes}\n</tbody>\n</table>\n"
        '<table data-table="cds-override-reasons">\n<caption>Override reasons</caption>\n'
        '<thead><tr><th scope="col">reason</th><th class="num">cards</th></tr></thead>\n'
        f"<tbody>\n{reasons}\n</tbody>\n</table>\n</section>\n"
    )


def _counts_cells(counts: dict[str, Any], keys: Iterable[str]) -> str:
    return "".join(f'<td class="num">{_count(counts.get(k))}</td>' for k in keys)


def _section_by_unit(result: dict[str, Any]) -> str:
    rows = []
    for unit, summary in (result.get("by_unit") or {}).items():
        rec, rea, esc = summary["recommendations"], summary["reassessments"], summary["escalations"]
        rows.append(
            f'<tr data-unit="{_e(unit)}"><th scope="row">{_e(_unit_name(unit))}</th>'
            f"{_counts_cells(rec, ('total', 'followed', 'deviated', 'pending'))}"
            f'<td class="num rate">{_pct(rec.get("rate"))}</td>'
            f"{_counts_cells(rea, ('due', 'on_time', 'late', 'missed'))}"
            f'<td class="num rate">{_pct(rea.get("rate"))}</td>'
            f"{_counts_cells(esc, ('total', 'answered_within_7d', 'answered_late', 'unanswered'))}"
            "</tr>"
        )
    if not rows:
        rows.append('<tr class="empty"><td colspan="15">No audited item in the period.</td></tr>')
    return (
        '<section>\n<h2>By unit</h2>\n<div class="scroll">\n'
        '<table data-table="by-unit" class="wide">\n'
        "<thead>\n"
        '<tr><th rowspan="2" scope="col">unit</th>'
        '<th colspan="5" class="group">recommendations</th>'
        '<th colspan="5" class="group">reassessments</th>'
        '<th colspan="4" class="group">escalations</th></tr>\n'
        '<tr><th class="num">total</th><th class="num">followed</th><th class="num">deviated</th>'
        '<th class="num">pending</th><th class="num">rate</th>'
        '<th class="num">due</th><th class="num">on time</th><th class="num">late</th>'
        '<th class="num">missed</th><th class="num">rate</th>'
        '<th class="num">total</th><th class="num">≤ 7 d</th><th class="num">late</th>'
        '<th class="num">none</th></tr>\n'
        "</thead>\n"
        f"<tbody>\n{chr(10).join(rows)}\n</tbody>\n</table>\n</div>\n</section>\n"
    )


DRILL_DOWN_COLUMNS = (
    "<colgroup>"
    + "".join(f'<col style="width:{w}%">' for w in (16, 13, 11, 11, 12, 28, 9))
    + "</colgroup>\n"
)
OUTCOME_CLASS = {
    "deviated": "bad",
    "missed": "bad",
    "unanswered": "bad",
    "pending": "warn",
    "late": "warn",
    "answered_late": "warn",
}


def _evidence(evidence: dict[str, Any] | None) -> str:
    if not evidence:
        return DASH
    parts = [_label(str(evidence.get("type")))]
    if evidence.get("action"):
        parts.append(_label(str(evidence["action"])))
    parts.append(_when(evidence.get("at")))
    if evidence.get("dose_mg_m2") is not None:
        parts.append(f"{_e(_dose(evidence['dose_mg_m2']))} mg/m²")
    return f"<code>{_e(evidence.get('event_id'))}</code><br>" + " · ".join(parts)


def _dose(value: Any) -> str:
    return f"{float(value):g}"


def _item_row(item: dict[str, Any]) -> str:
    action = _label(str(item.get("action")))
    if item.get("recommended_dose_mg_m2") is not None:
        action += f" to {_e(_dose(item['recommended_dose_mg_m2']))} mg/m²"
    outcome = str(item.get("outcome"))
    if item.get("hours_to_action") is not None:
        elapsed = _amount(item["hours_to_action"], "h")
    elif item.get("days_to_therapy") is not None:
        elapsed = _amount(item["days_to_therapy"], "d")
    else:
        elapsed = DASH
    return (
        f'<tr data-decision="{_e(item.get("decision_id"))}">'
        f"<td>{_e(item.get('kind'))}</td><td>{action}</td>"
        f"<td>{_when(item.get('at'))}</td><td>{_when(item.get('due_at'))}</td>"
        f'<td><span class="outcome {OUTCOME_CLASS.get(outcome, "")}">{_label(outcome)}</span></td>'
        f'<td class="evidence">{_evidence(item.get("evidence"))}</td>'
        f'<td class="num">{elapsed}</td></tr>'
    )


def _section_drill_down(result: dict[str, Any]) -> str:
    patients = [p for p in result.get("patients") or [] if p.get("items")]
    parts = [
        '<section class="drill-down">\n<h2>Drill-down</h2>\n',
        '<p class="lead">Each recommendation not followed (deviated or pending), reassessment '
        "missed and escalation unanswered, by patient, with the event that decided it. Times "
        "are UTC.</p>\n",
    ]
    if not patients:
        parts.append('<p class="no-data">Nothing to review in the period.</p>\n')
    for patient in patients:
        pid = patient.get("patient_id")
        rec, rea = patient["recommendations"], patient["reassessments"]
        units = ", ".join(_e(_unit_name(u)) for u in patient.get("units") or []) or DASH
        summary = (
            f"unit {units} · recommendations followed {_count(rec['followed'])} of "
            f"{_count(rec['total'])} · reassessments on time {_count(rea['on_time'])} of "
            f"{_count(rea['due'])}"
        )
        rows = "\n".join(_item_row(item) for item in patient["items"])
        parts.append(
            f'<table data-table="drill-down" data-patient="{_e(pid)}" class="wide">\n'
            f'<caption><span class="patient">{_e(pid)}</span> <small>{summary}</small></caption>\n'
            f"{DRILL_DOWN_COLUMNS}"
            '<thead><tr><th scope="col">kind</th><th scope="col">action</th>'
            '<th scope="col">decided</th><th scope="col">due</th><th scope="col">outcome</th>'
            '<th scope="col">evidence</th><th scope="col" class="num">to action</th></tr></thead>\n'
            f"<tbody>\n{rows}\n</tbody>\n</table>\n"
        )
    parts.append("</section>\n")
    return "".join(parts)


# --- charts -----------------------------------------------------------------------------------


class _Charts:
    """The three charts as inline SVG (None where there is nothing to draw)."""

    def __init__(self, result: dict[str, Any], distributions: dict[str, Any]) -> None:
        self.result = result
        self.distributions = distributions

    def render(self) -> dict[str, str | None]:
        from matplotlib import style

        with _RENDER_LOCK, style.context(["default", _RC]):
            return {
                "by-month": self._by_month(),
                "time-to-action": self._time_to_action(),
                "ack-times": self._ack_times(),
            }

    def _by_month(self) -> str | None:
        by_month: dict[str, Any] = self.result.get("by_month") or {}
        months = _months(self.result.get("period") or {}, by_month)
        if not months:
            return None
        empty: dict[str, Any] = {}
        recommendation = [
            _nan((by_month.get(m) or empty).get("recommendations", empty).get("rate"))
            for m in months
        ]
        reassessment = [
            _nan((by_month.get(m) or empty).get("reassessments", empty).get("rate")) for m in months
        ]
        if all(math.isnan(v) for v in (*recommendation, *reassessment)):
            return None
        figure, axes = _new_figure(2.7)
        x = list(range(len(months)))
        # recommendations on top, thinner: where both rates are equal, both stay visible
        for values, colour, marker, size, width, label in (
            (recommendation, BLUE, "o", 4.5, 1.6, "recommendations followed"),
            (reassessment, ORANGE, "s", 6.5, 3.0, "reassessments on time"),
        ):
            axes.plot(
                x,
                [v * 100 for v in values],
                color=colour,
                marker=marker,
                markersize=size,
                linewidth=width,
                label=label,
                zorder=3 if colour == BLUE else 2,
            )
        axes.set_ylim(-4, 104)
        axes.set_yticks([0, 25, 50, 75, 100])
        axes.set_yticklabels(["0%", "25%", "50%", "75%", "100%"])
        axes.set_xlim(-0.5, len(months) - 0.5)
        step = max(1, math.ceil(len(months) / 18))
        axes.set_xticks(x[::step])
        axes.set_xticklabels(
            months[::step],
            rotation=45 if len(months) > 8 else 0,
            ha="right" if len(months) > 8 else "center",
        )
        axes.grid(axis="y", color=GRID, linewidth=0.8)
        axes.set_axisbelow(True)
        axes.legend(loc="lower left", ncols=2, bbox_to_anchor=(0, 1.0), borderaxespad=0.2)
        return _svg(figure, "Rates by month")

    def _time_to_action(self) -> str | None:
        from matplotlib.ticker import MaxNLocator

        hours = [float(h) for h in self.distributions.get("hours_to_action") or []]
        if not hours:
            return None
        figure, axes = _new_figure(2.5)
        bins = _bins(hours)
        axes.hist(hours, bins=bins, color=BLUE, edgecolor="white", linewidth=0.8)
        median = self.result["recommendations"].get("median_hours_to_action")
        axes.set_ylim(0, axes.get_ylim()[1] * 1.18)  # room for the median's label
        if median is not None:
            axes.axvline(median, color=INK, linestyle="--", linewidth=1)
            axes.annotate(
                f"median {median:,.2f} h",
                xy=(median, 1),
                xycoords=("data", "axes fraction"),
                xytext=(4, -1),
                textcoords="offset points",
                va="top",
                color=INK,
                backgroundcolor="white",
            )
        axes.set_xlabel("hours from the recommendation to the recorded treatment change")
        axes.set_ylabel("recommendations")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(axis="y", color=GRID, linewidth=0.8)
        axes.set_axisbelow(True)
        return _svg(figure, "Time to action")

    def _ack_times(self) -> str | None:
        alerts = self.result.get("alerts")
        if alerts is None:
            return None
        minutes: dict[str, list[float]] = {
            s: [float(m) for m in v]
            for s, v in (self.distributions.get("minutes_to_ack") or {}).items()
        }
        severities = [*SEVERITIES, *(s for s in minutes if s not in SEVERITIES)]
        if not any(minutes.get(s) for s in severities):
            return None
        figure, axes = _new_figure(0.55 * len(severities) + 1.0)
        positions = list(range(len(severities), 0, -1))  # urgent on top
        drawn = [(p, s) for p, s in zip(positions, severities, strict=True) if minutes.get(s)]
        colours = {"urgent": RED, "warning": ORANGE, "info": BLUE}
        import matplotlib as mpl
        from matplotlib.ticker import FuncFormatter

        # `orientation` replaced `vert` in matplotlib 3.10 (which deprecates `vert`)
        sideways: dict[str, Any] = (
            {"orientation": "horizontal"} if mpl.__version_info__ >= (3, 10) else {"vert": False}
        )
        boxes = axes.boxplot(
            [minutes[s] for _, s in drawn],
            positions=[p for p, _ in drawn],
            **sideways,
            whis=(5, 95),
            showfliers=False,
            widths=0.55,
            patch_artist=True,
            medianprops={"color": INK, "linewidth": 1.6},
            whiskerprops={"color": GREY},
            capprops={"color": GREY},
        )
        for patch, (_, severity) in zip(boxes["boxes"], drawn, strict=True):
            patch.set_facecolor(colours.get(severity, GREY))
            patch.set_alpha(0.75)
            patch.set_edgecolor(INK)
        every = [m for s in severities for m in minutes.get(s) or []]
        if max(every) > 240:  # a long tail: logarithmic above 10 min
            axes.set_xscale("symlog", linthresh=10)
            axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        axes.set_xlim(left=0)
        target = (alerts.get("urgent_acknowledged_within_target") or {}).get("target_minutes")
        if target is not None:
            axes.axvline(float(target), color=RED, linestyle="--", linewidth=1)
            axes.annotate(
                f"target {float(target):g} min",
                xy=(float(target), 1),
                xycoords=("data", "axes fraction"),
                xytext=(4, -1),
                textcoords="offset points",
                va="top",
                color=RED,
            )
        axes.set_yticks(positions)
        axes.set_yticklabels([f"{s}  (n={len(minutes.get(s) or []):,})" for s in severities])
        axes.set_ylim(0.4, len(severities) + 0.6)
        axes.set_xlabel("minutes to acknowledgement")
        axes.grid(axis="x", color=GRID, linewidth=0.8)
        axes.set_axisbelow(True)
        return _svg(figure, "Alert acknowledgement times")


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _months(period: dict[str, Any], by_month: dict[str, Any]) -> list[str]:
    """Every month of the period ("YYYY-MM"; the end is inclusive, so a period ending at a
    month's first instant does not add that month unless it has items), and any month with
    items; only the latter when the period is very long."""
    found = set(by_month)
    try:
        start = from_utc_text(str(period["from"]))
        end = from_utc_text(str(period["to"]))
    except (KeyError, ValueError):
        return sorted(found)
    end -= dt.timedelta(microseconds=1)
    span = (end.year - start.year) * 12 + end.month - start.month + 1
    if span > MAX_MONTHS or span < 1:
        return sorted(found)
    months = []
    year, month = start.year, start.month
    for _ in range(span):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return sorted(found.union(months))


def _bins(values: Sequence[float]) -> int:
    """A bin count for the histogram: about the square root of the count, 5 to 40."""
    if len(set(values)) == 1:
        return 1
    return max(5, min(40, round(math.sqrt(len(values)) * 2)))


def _new_figure(height_in: float) -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    figure = Figure(figsize=(CHART_WIDTH_IN, height_in), layout="constrained")
    FigureCanvasSVG(figure)
    return figure, figure.add_subplot()


_PROLOG = re.compile(r"\A.*?(?=<svg[\s>])", re.DOTALL)
_SIZE = re.compile(r'\s(?:width|height)="[^"]*"')


def _svg(figure: Figure, title: str) -> str:
    """The figure as an <svg> element for inline use: no XML prolog or doctype, no metadata,
    sized by CSS (its viewBox keeps the aspect ratio), labelled for screen readers."""
    buffer = io.StringIO()
    figure.savefig(
        buffer,
        format="svg",
        metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
    )
    text = _PROLOG.sub("", buffer.getvalue(), count=1).strip()
    root_end = text.index(">")
    root = _SIZE.sub("", text[:root_end])
    return f'{root} role="img" aria-label="{_e(title)}"{text[root_end:]}'


CSS = f"""\
@page {{ size: A4; margin: 14mm 12mm; }}
* {{ box-sizing: border-box; }}
html {{ background: #f4f5f7; }}
body {{ margin: 0; color: {INK}; font: 14px/1.45 system-ui, -apple-system, "Segoe UI",
  Roboto, "Helvetica Neue", Arial, sans-serif; }}
main {{ max-width: calc(186mm + 56px); margin: 0 auto; padding: 24px 28px 40px; background: #fff; }}
h1 {{ font-size: 24px; margin: 0 0 6px; }}
h2 {{ font-size: 17px; margin: 28px 0 10px; padding-bottom: 4px;
  border-bottom: 2px solid {GRID}; }}
h3 {{ font-size: 13px; margin: 0; text-transform: uppercase; letter-spacing: .04em;
  color: {GREY}; }}
header {{ border-bottom: 3px solid {BLUE}; padding-bottom: 10px; }}
dl.meta {{ display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }}
dl.meta dt {{ color: {GREY}; }}
dl.meta dd {{ margin: 0; font-weight: 600; }}
.headline {{ display: grid; grid-template-columns: repeat(6, 1fr); gap: 10px; }}
.card {{ grid-column: span 2; }}
.card.wide {{ grid-column: span 3; }}
@media screen and (max-width: 560px) {{
  .headline {{ grid-template-columns: 1fr; }}
  .card, .card.wide {{ grid-column: auto; }}
}}
.headline h2 {{ grid-column: 1 / -1; margin-bottom: 0; }}
.card {{ border: 1px solid {GRID}; border-radius: 6px; padding: 10px 12px; break-inside: avoid; }}
.card .big {{ font-size: 26px; font-weight: 700; margin: 4px 0 0; color: {BLUE};
  font-variant-numeric: tabular-nums; }}
.card .big small {{ font-size: 14px; font-weight: 400; color: {GREY}; }}
.card .caption {{ margin: 0 0 6px; font-size: 12px; color: {GREY}; }}
.card dl {{ display: grid; grid-template-columns: 1fr max-content; gap: 1px 8px; margin: 0;
  font-size: 12.5px; }}
.card dt {{ color: {GREY}; }}
.card dd {{ margin: 0; text-align: right; font-variant-numeric: tabular-nums; }}
figure {{ margin: 0 0 14px; break-inside: avoid; }}
figure svg {{ display: block; width: 100%; height: auto; }}
figcaption {{ font-size: 12px; color: {GREY}; margin-top: 4px; }}
.no-data {{ padding: 14px; border: 1px dashed #cbd2d9; border-radius: 6px; color: {GREY};
  background: #fafbfc; margin: 0; }}
table {{ border-collapse: collapse; width: 100%; margin: 8px 0 16px; font-size: 12.5px;
  font-variant-numeric: tabular-nums; }}
caption {{ text-align: left; font-weight: 600; padding: 4px 0; }}
caption small {{ font-weight: 400; color: {GREY}; margin-left: 6px; }}
th, td {{ padding: 4px 6px; border-bottom: 1px solid {GRID}; text-align: left;
  vertical-align: top; }}
thead th {{ background: #f4f5f7; font-weight: 600; font-size: 12px; }}
thead th.group {{ text-align: center; border-left: 2px solid #fff; }}
tbody th {{ font-weight: 600; }}
.num {{ text-align: right; white-space: nowrap; }}
td.rate {{ font-weight: 600; }}
.scroll {{ overflow-x: auto; }}
table.wide {{ font-size: 11px; }}
table.wide th, table.wide td {{ padding: 3px 4px; }}
table.wide thead th {{ font-size: 10.5px; white-space: normal; vertical-align: bottom; }}
table[data-table="by-unit"] tbody th {{ white-space: nowrap; }}
table[data-table="drill-down"] {{ table-layout: fixed; }}
table[data-table="drill-down"] td {{ overflow-wrap: anywhere; }}
table[data-table="drill-down"] time {{ white-space: normal; }}
table[data-table="drill-down"] td.evidence time {{ white-space: nowrap; }}
tr {{ break-inside: avoid; }}
thead {{ display: table-header-group; }}
.drill-down table {{ margin-top: 4px; }}
.patient {{ font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }}
code {{ font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 11.5px; word-break: break-all; }}
td.evidence {{ font-size: 11.5px; }}
time {{ white-space: nowrap; }}
.outcome {{ display: inline-block; padding: 0 6px; border-radius: 8px; background: #e3f0e8;
  color: #1e5b34; font-size: 11.5px; white-space: nowrap; }}
.outcome.bad {{ background: #fde7e4; color: {RED}; }}
.outcome.warn {{ background: #fdf0dc; color: #8a4b08; }}
.lead {{ color: {GREY}; font-size: 12.5px; }}
@media print {{
  html {{ background: #fff; }}
  body {{ font-size: 11pt; }}
  main {{ max-width: none; padding: 0; }}
  h2 {{ break-after: avoid; }}
}}
"""
