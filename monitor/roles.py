"""The roles of CONTRACT.md; `admin` may do everything."""

from typing import Literal

Role = Literal["ingest", "nurse", "infusion", "auditor", "admin"]
ROLES: tuple[Role, ...] = ("ingest", "nurse", "infusion", "auditor", "admin")
