"""The roles of CONTRACT.md, plus `cds` (CDS Hooks clients, issue 6); `admin` may do everything."""

from typing import Literal

Role = Literal["ingest", "nurse", "infusion", "auditor", "cds", "admin"]
ROLES: tuple[Role, ...] = ("ingest", "nurse", "infusion", "auditor", "cds", "admin")
