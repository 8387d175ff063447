"""Safe boundaries: token expiry, the keyed audit chain, quarantined events, dead letters
that name their event

New nullable columns only, so rows on file keep their meaning: `api_token.expires_at` (none:
valid until revoked), `audit_log.scheme` (1 for the rows already written, chained with plain
SHA-256; new rows are 2, keyed), `event.quarantined_at/_by/quarantine_reason` (set by admin;
none is quarantined yet) and `dead_letter.event_id`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import monitor.storage.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when() -> monitor.storage.types.UTCDateTime:
    return monitor.storage.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", _when(), nullable=True))
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scheme", sa.Integer(), server_default="1", nullable=False))
    with op.batch_alter_table("dead_letter", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True)
        )
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quarantined_at", _when(), nullable=True))
        batch_op.add_column(
            sa.Column("quarantined_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "quarantine_reason", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_column("quarantine_reason")
        batch_op.drop_column("quarantined_by")
        batch_op.drop_column("quarantined_at")
    with op.batch_alter_table("dead_letter", schema=None) as batch_op:
        batch_op.drop_column("event_id")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("scheme")
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
