"""The roles of CONTRACT.md, plus `cds` (CDS Hooks clients, issue 6), `physician` and `pharmacy`
(issue 14: alerts are addressed to them); `admin` may do everything.

Each care role reads and acknowledges the alerts of its own audiences: a nurse cannot stop a
physician's escalation by acknowledging it."""

from typing import Literal

from policies.decisions import Audience

Role = Literal["ingest", "nurse", "physician", "pharmacy", "infusion", "auditor", "cds", "admin"]
ROLES: tuple[Role, ...] = (
    "ingest",
    "nurse",
    "physician",
    "pharmacy",
    "infusion",
    "auditor",
    "cds",
    "admin",
)
# the roles staff sign in with at the OpenID Connect provider (monitor/auth/oidc.py): not the
# machines' roles (ingest, cds), which keep their API tokens and signed JWTs
STAFF_ROLES: tuple[Role, ...] = ("nurse", "physician", "pharmacy", "infusion", "auditor", "admin")
# the roles of the care team: the patients, their alerts
CARE_ROLES: tuple[Role, ...] = ("nurse", "physician", "pharmacy", "infusion")
ROLE_AUDIENCES: dict[Role, tuple[Audience, ...]] = {
    "nurse": ("nurse",),
    "physician": ("physician", "neurology"),
    "pharmacy": ("pharmacy",),
    "infusion": ("infusion_unit",),
}


def audiences_of(role: Role) -> tuple[Audience, ...] | None:
    """The alert audiences a role answers for; None: all of them (admin)."""
    if role == "admin":
        return None
    return ROLE_AUDIENCES.get(role, ())
