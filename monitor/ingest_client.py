"""`python -m monitor ingest FILE`: send a JSON-lines file to a running service, in batches."""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field
from typing import IO

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from policies.events import EventValidationError, parse_event

BATCH = 500


@dataclass
class IngestReport:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)  # "line N: field: message"


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
    batches; an event_id conflict rejects that line and the rest of its batch is re-sent."""
    report = IngestReport()
    pending: list[tuple[int, str, dict[str, object]]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = parse_event(line)
        except EventValidationError as exc:
            report.rejected += [f"line {number}: {p}" for p in exc.problems]
            continue
        pending.append((number, event.event_id, json.loads(line)))
    own_client = client is None
    http = client or httpx.Client(base_url=url, timeout=60)
    headers = {"Authorization": f"Bearer {token}"}
    columns = (TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, disable=not progress, console=None) as bar:
            task = bar.add_task("events", total=len(pending))
            for start in range(0, len(pending), BATCH):
                batch = pending[start : start + BATCH]
                _send(http, headers, batch, report)
                bar.advance(task, len(batch))
    finally:
        if own_client:
            http.close()
    return report


def _send(
    http: httpx.Client,
    headers: dict[str, str],
    batch: list[tuple[int, str, dict[str, object]]],
    report: IngestReport,
) -> None:
    while batch:
        response = http.post("/v1/events", json={"events": [b[2] for b in batch]}, headers=headers)
        if response.status_code == 202:
            body = response.json()
            report.accepted += body["accepted"]
            report.duplicates += body["duplicates"]
            return
        if response.status_code == 409:
            conflicts = set(response.json().get("conflicts", []))
            for number, event_id, _ in batch:
                if event_id in conflicts:
                    report.rejected.append(
                        f"line {number}: event_id: {event_id!r} is already stored with a "
                        "different body"
                    )
            batch = [b for b in batch if b[1] not in conflicts]
            continue
        if response.status_code == 422:
            for problem in response.json().get("errors", []):
                number = batch[problem["index"]][0] if problem.get("index") is not None else 0
                report.rejected += [
                    f"line {number}: {p['field']}: {p['message']}" for p in problem["problems"]
                ]
            return
        response.raise_for_status()
        raise httpx.HTTPStatusError(
            f"unexpected status {response.status_code}",
            request=response.request,
            response=response,
        )
