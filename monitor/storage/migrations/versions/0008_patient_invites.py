"""Patient invite links (issue 16): a new table

`patient_invite` holds the links that let one patient report symptoms from their phone: the
SHA-256 of each link's secret (never the secret), the patient, the unit, who invited, and when
it was made, expires, was revoked and last used.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import monitor.storage.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when() -> monitor.storage.types.UTCDateTime:
    return monitor.storage.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "patient_invite",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("secret_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("expires_at", _when(), nullable=False),
        sa.Column("revoked_at", _when(), nullable=True),
        sa.Column("last_used_at", _when(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_hash"),
    )
    with op.batch_alter_table("patient_invite", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patient_invite_patient_id"), ["patient_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("patient_invite", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_invite_patient_id"))
    op.drop_table("patient_invite")
