"""`python -m monitor ingest FILE`: send a JSON-lines file to a running service, in batches."""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field
from typing import IO

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from policies.events import EventValidationError, canonical_body, parse_event

BATCH = 500

# (line number, event_id, the event as sent)
Line = tuple[int, str, dict[str, object]]


@dataclass
class IngestReport:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)  # "line N: field: message", by line

    def reject(self, number: int, problem: str) -> None:
        self.rejected.append(f"line {number}: {problem}")


def ingest_file(
    path: pathlib.Path,
    url: str,
    token: str,
    err: IO[str],
    *,
    progress: bool = True,
    client: httpx.Client | None = None,
) -> IngestReport:
    """Validate each line locally (bad lines are reported, never sent), send the rest in
    batches; a line the service rejects (an event_id conflict, a problem it finds) is reported
    and the rest of its batch is sent again. The progress bar goes to `err`."""
    report = IngestReport()
    pending = _read(path, report)
    own_client = client is None
    http = client or httpx.Client(base_url=url, timeout=60)
    headers = {"Authorization": f"Bearer {token}"}
    columns = (TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, disable=not progress, console=Console(file=err)) as bar:
            task = bar.add_task("events", total=len(pending))
            for start in range(0, len(pending), BATCH):
                batch = pending[start : start + BATCH]
                _send(http, headers, batch, report)
                bar.advance(task, len(batch))
    finally:
        if own_client:
            http.close()
    report.rejected.sort(key=lambda text: int(text.split(":", 1)[0].removeprefix("line ")))
    return report


def _read(path: pathlib.Path, report: IngestReport) -> list[Line]:
    pending: list[Line] = []
    first_seen: dict[str, tuple[int, str]] = {}  # event_id -> (line, canonical body)
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = parse_event(line)
        except EventValidationError as exc:
            for problem in exc.problems:
                report.reject(number, str(problem))
            continue
        body = canonical_body(event)
        seen = first_seen.setdefault(event.event_id, (number, body))
        if seen[1] != body:  # the service would refuse the whole batch (409): say which line
            report.reject(
                number, f"event_id: {event.event_id!r} repeats line {seen[0]} with another body"
            )
            continue
        pending.append((number, event.event_id, json.loads(line)))
    return pending


def _send(
    http: httpx.Client, headers: dict[str, str], batch: list[Line], report: IngestReport
) -> None:
    while batch:
        response = http.post("/v1/events", json={"events": [b[2] for b in batch]}, headers=headers)
        status = response.status_code
        if status == 202:
            body = response.json()
            report.accepted += body["accepted"]
            report.duplicates += body["duplicates"]
            return
        if status == 409:  # nothing of the batch stored: drop the conflicting lines, resend
            conflicts = set(response.json().get("conflicts", []))
            if not conflicts & {b[1] for b in batch}:
                raise httpx.HTTPStatusError(
                    f"409 without a known conflicting event_id: {response.text[:200]}",
                    request=response.request,
                    response=response,
                )
            for number, event_id, _ in batch:
                if event_id in conflicts:
                    report.reject(
                        number, f"event_id: {event_id!r} is already stored with a different body"
                    )
            batch = [b for b in batch if b[1] not in conflicts]
            continue
        if status == 422:
            errors = response.json().get("errors", [])
            indexed = {e["index"]: e["problems"] for e in errors if e.get("index") is not None}
            if indexed:  # problems the service found in these lines: report them, resend the rest
                for index, problems in sorted(indexed.items()):
                    for p in problems:
                        report.reject(batch[index][0], f"{p['field']}: {p['message']}")
                batch = [b for i, b in enumerate(batch) if i not in indexed]
                continue
        if status in (413, 422) and len(batch) > 1:
            # The batch as a whole is refused (a smaller MONITOR_MAX_BATCH_EVENTS or
            # MONITOR_MAX_BODY_BYTES on the service): send it in halves.
            half = len(batch) // 2
            _send(http, headers, batch[:half], report)
            batch = batch[half:]
            continue
        if status in (413, 422):
            report.reject(batch[0][0], f"event: {_detail(response)}")
            return
        response.raise_for_status()
        raise httpx.HTTPStatusError(
            f"unexpected status {status}", request=response.request, response=response
        )


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return f"refused with status {response.status_code}"
