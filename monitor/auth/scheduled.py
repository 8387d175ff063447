"""The audit chain's periodic checkpoint (run by `monitor.scheduler`)."""

from __future__ import annotations

from monitor.services import Services


def checkpoint_audit(services: Services) -> int:
    """A signed checkpoint of the audit chain's head, every `audit_checkpoint_interval_s`,
    kept outside the table (`monitor.auth.audit`): 1 when one was written."""
    written = services.audit.periodic_checkpoint(
        services.settings.now(), services.settings.audit_checkpoint_interval_s
    )
    return 1 if written is not None else 0
