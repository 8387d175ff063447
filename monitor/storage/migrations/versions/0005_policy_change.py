"""Policy change: why a decision was superseded, by which, and when one came into force

New nullable columns on `decision`, so rows on file keep their meaning: `superseded_reason`
(`later_events` or `policy_change`; none on rows superseded before, which were all later
events), `superseded_by` (the new pack's matching decision, with a policy change) and
`in_force_from` (set on decisions that came with a policy change; none: in force from their
own time).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import monitor.storage.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "superseded_reason", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("superseded_by", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "in_force_from", monitor.storage.types.UTCDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.drop_column("in_force_from")
        batch_op.drop_column("superseded_by")
        batch_op.drop_column("superseded_reason")
