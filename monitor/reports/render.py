"""Running an adherence report into one of its formats: JSON, CSV (one row per audited item,
streamed to a spooled file as the audit goes), or the self-contained HTML page."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable
from typing import IO, Literal

from monitor.reports.adherence import AdherenceReport, AuditItem, item_view

Format = Literal["json", "csv", "html"]
MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
CSV_COLUMNS = (
    "kind",
    "decision_id",
    "patient_id",
    "unit",
    "month",
    "action",
    "at",
    "due_at",
    "outcome",
    "policy",
    "recommended_dose_mg_m2",
    "evidence_event_id",
    "evidence_type",
    "evidence_at",
    "evidence_dose_mg_m2",
    "evidence_dose_mg",
    "evidence_action",
    "hours_to_action",
    "days_to_therapy",
)
SPOOL_BYTES = 8 * 1024 * 1024  # in memory below this, a temporary file above


class CsvItems:
    """Writes each audited item as it is added (`on_item`), so a large report streams."""

    def __init__(self) -> None:
        self.file: IO[str] = tempfile.SpooledTemporaryFile(  # noqa: SIM115  (closed by owner)
            max_size=SPOOL_BYTES, mode="w+", encoding="utf-8", newline=""
        )
        self._writer = csv.writer(self.file)
        self._writer.writerow(CSV_COLUMNS)
        self.rows = 0

    def __call__(self, item: AuditItem) -> None:
        view = item_view(item)
        evidence = view.pop("evidence") or {}
        view["month"] = item.month
        for name in ("event_id", "type", "at", "dose_mg_m2", "dose_mg", "action"):
            view[f"evidence_{name}"] = evidence.get(name)
        self._writer.writerow([csv_cell(view[c]) for c in CSV_COLUMNS])
        self.rows += 1


# A cell a spreadsheet would read as a formula (OWASP, "CSV injection"): an id or unit sent as
# `=HYPERLINK(...)` or `@SUM(...)` must stay text when an auditor opens the file.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """The value as a CSV cell: text that starts like a formula gets a leading `'`."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


Build = Callable[[Callable[[AuditItem], None] | None, bool], AdherenceReport]


def run_report(build: Build, fmt: Format) -> IO[str]:
    """Build the report (`build(on_item, drill_down)`) and return its text in `fmt`, rewound.

    JSON and CSV are written to a spooled file as they go (memory stays flat however many
    patients); the HTML page is built in memory (its drill-down is the page)."""
    if fmt == "csv":
        items = CsvItems()
        build(items, False).close()
        items.file.seek(0)
        return items.file
    report = build(None, True)
    try:
        if fmt == "json":
            out: IO[str] = tempfile.SpooledTemporaryFile(  # noqa: SIM115  (the caller closes it)
                max_size=SPOOL_BYTES, mode="w+", encoding="utf-8"
            )
            report.write_json(out)
            out.seek(0)
            return out
        from monitor.reports.html import render_html

        return io.StringIO(render_html(report.result(), report.distributions()))
    finally:
        report.close()
