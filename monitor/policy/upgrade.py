"""`python -m monitor policy upgrade --to PACK`: move every patient to the pack now in use.

Each patient is folded again under the configured pack (the one `MONITOR_POLICY` or the site
file names; `--to` must name it, so the command cannot disagree with the workers), one
transaction per patient, in batches. The fold itself does the changeover (see
`policies.changeover` and `monitor.processing.service`): superseded decisions record the
policy change and the decision that replaces them, and only still-actionable advice that
changed is alerted or corrected. Without this command each patient changes the same way at
its next event or timer; the command makes it happen now, for everyone, with a record.

Idempotent: a patient already folded under the pack is skipped (nothing new to do), so an
interrupted upgrade is finished by running it again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import union
from sqlmodel import col, select

from monitor.processing.jobs import dead_letter, run_process_patient
from monitor.processing.service import StoredEventError
from monitor.services import Services
from monitor.storage.models import EventRow, PatientRow
from policies import FoldError

log = logging.getLogger("monitor.policy")


@dataclass(slots=True)
class UpgradeReport:
    policy: str
    patients: int = 0  # every patient on file
    changed: int = 0  # folded from another pack to this one now
    already: int = 0  # already under this pack (nothing to do)
    folded: int = 0  # folded anyway (new events or a timer were waiting)
    inserted: int = 0
    superseded: int = 0
    alerts_new: int = 0
    alerts_corrected: int = 0
    stopped: list[str] = field(default_factory=list)  # patients whose fold failed

    def view(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "patients": self.patients,
            "changed": self.changed,
            "already_current": self.already,
            "folded_with_new_events": self.folded,
            "decisions_inserted": self.inserted,
            "decisions_superseded": self.superseded,
            "alerts_new": self.alerts_new,
            "alerts_corrected": self.alerts_corrected,
            "monitoring_stopped": self.stopped,
        }


def patient_ids(services: Services, batch_size: int) -> Iterator[list[str]]:
    """Every patient with a stored event or a patient row, in batches, in id order."""
    query = union(select(col(PatientRow.patient_id)), select(col(EventRow.patient_id)).distinct())
    with services.sessions() as session:
        ids = sorted(session.execute(query).scalars())
    for start in range(0, len(ids), batch_size):
        yield ids[start : start + batch_size]


def count_patients(services: Services) -> int:
    return sum(len(batch) for batch in patient_ids(services, 10_000))


def upgrade_patients(
    services: Services,
    batch_size: int,
    on_patient: Callable[[str], None] = lambda _: None,
) -> UpgradeReport:
    """Fold every patient under `services.pack`; a patient whose fold fails for good (an event
    that no longer validates, a fold error) is dead-lettered as the pipeline does (its
    monitoring-stopped alert goes to admin and physician) and the upgrade goes on. Database
    errors end it (run it again: done patients are skipped)."""
    report = UpgradeReport(services.pack.label)
    for batch in patient_ids(services, batch_size):
        for patient_id in batch:
            report.patients += 1
            try:
                outcome = run_process_patient(services, patient_id)
            except (StoredEventError, FoldError) as exc:
                dead_letter(services, patient_id, exc, attempts=1)
                report.stopped.append(patient_id)
                on_patient(patient_id)
                continue
            if outcome.policy_changed:
                report.changed += 1
            elif outcome.events:
                report.folded += 1
            else:
                report.already += 1
            report.inserted += outcome.inserted
            report.superseded += outcome.superseded
            report.alerts_new += outcome.alerts_new
            report.alerts_corrected += outcome.alerts_corrected
            on_patient(patient_id)
        log.info("policy upgrade batch done", extra={"patients": report.patients})
    return report


def record(services: Services, report: UpgradeReport, now: dt.datetime) -> None:
    """The upgrade in the audit log: which pack, how many patients moved."""
    services.audit.record_command(
        "policy upgrade", f"{report.policy}: {report.changed} of {report.patients} patients", now
    )
