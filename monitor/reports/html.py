"""The adherence report (issue 5) as one self-contained HTML page: headline figures, a chart
per section, the by-action and by-unit tables and the drill-down of what needs review.

Self-contained: inline CSS, charts drawn here with matplotlib as inline SVG (text as paths, so
no font is fetched), no script and no external reference; it opens offline and prints on A4.
Deterministic: the same report gives the same bytes (no generation time, fixed SVG ids, no
matplotlib metadata), so a stored report can be compared with a re-run.

The page is rendered from the Jinja2 templates in monitor/reports/templates/ (adherence.html.j2,
one partial per section, the shared macros and the CSS) with autoescape on: every string taken
from the report (patient and event ids, units, reasons, the policy) is escaped by Jinja2. The
charts are drawn here; the filters below format the numbers and times the templates show.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import math
import re
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup, escape

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
    # The only raw HTML in the page: the charts' SVG. It is drawn here by matplotlib from
    # numbers and labels (text as paths; matplotlib escapes the text it keeps in comments),
    # and `_svg` escapes the one attribute it adds. Everything else is autoescaped.
    svgs = {name: None if svg is None else Markup(svg) for name, svg in charts.items()}
    return _environment().get_template("adherence.html.j2").render(result=result, charts=svgs)


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates' environment (monitor/reports/templates/), built on first use: every
    template is HTML (or CSS inside it), so autoescape is on for all of them; an undefined
    name is an error, not an empty string; the templates ship with the package, so they are
    not re-read while the service runs."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("monitor.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    environment.filters.update(
        dash=_dash,
        num=_num,
        pct=_pct,
        amount=_amount,
        compact=_compact,
        clock=_clock,
        utc_plain=_utc_plain,
        label=_label,
        unit_name=_unit_name,
        dose=_dose,
        in_order=_in_order,
    )
    environment.globals.update(
        DASH=DASH,
        SEVERITIES=SEVERITIES,
        RECOMMENDATION_ACTIONS=RECOMMENDATION_ACTIONS,
        OUTCOME_CLASS=OUTCOME_CLASS,
        BLUE=BLUE,
        ORANGE=ORANGE,
        GREY=GREY,
        RED=RED,
        INK=INK,
        GRID=GRID,
    )
    return environment


# --- formatting (the templates' filters; they return plain text, which autoescape escapes) ---


def _dash(value: Any) -> Any:
    """The value as it is; None is a dash."""
    return DASH if value is None else value


def _num(value: Any) -> str:
    """A count with thousands separators; None is a dash (the filter is `num`: `count` is a
    Jinja2 builtin)."""
    return DASH if value is None else f"{int(value):,}"


def _pct(rate: float | None) -> str:
    return DASH if rate is None else f"{rate * 100:.1f}%"


def _amount(value: float | None, unit: str) -> str:
    return DASH if value is None else f"{value:,.2f} {unit}"


def _compact(value: float) -> str:
    """A number in its shortest form: 60.0 -> "60"."""
    return f"{value:g}"


def _utc_plain(stamp: str | None) -> str:
    """An ISO UTC time ("...Z") as "2026-06-08 06:40:00" (the page's title)."""
    return (stamp or "").removesuffix("Z").replace("T", " ")


def _clock(stamp: str) -> str:
    """An ISO UTC time ("...Z") as shown in a <time>: "2026-06-08 06:40" (seconds when not
    zero)."""
    shown = stamp.removesuffix("Z").replace("T", " ")
    if shown.endswith(":00") and shown.count(":") == 2:
        shown = shown[:-3]
    return shown


def _label(name: Any) -> str:
    """An identifier as words: "answered_within_7d" -> "answered within 7d"."""
    return str(name).replace("_", " ")


def _unit_name(unit: str) -> str:
    return "(no unit)" if unit == "(none)" else unit


def _dose(value: Any) -> str:
    return f"{float(value):g}"


def _in_order(mapping: dict[str, Any], first: Iterable[str]) -> list[tuple[str, Any]]:
    """The entries of `mapping`, the keys of `first` first (in that order), then the others;
    entries whose value is None are left out."""
    leading = tuple(first)
    keys = (*leading, *(k for k in mapping if k not in leading))
    return [(k, mapping[k]) for k in keys if mapping.get(k) is not None]


OUTCOME_CLASS = {
    "deviated": "bad",
    "missed": "bad",
    "unanswered": "bad",
    "pending": "warn",
    "late": "warn",
    "answered_late": "warn",
}


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
    return f'{root} role="img" aria-label="{escape(title)}"{text[root_end:]}'
