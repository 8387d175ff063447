"""Tokens bound to units; the clinical time of an alert

New nullable columns, so rows on file keep their meaning: `api_token.units` (a JSON list of
unit names; none: every unit, as before) and `alert.clinical_at` (the time the alert is about:
its decision's, a reminder's due time; none on alerts raised before).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import monitor.storage.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when() -> monitor.storage.types.UTCDateTime:
    return monitor.storage.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("units", sa.Text(), nullable=True))
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clinical_at", _when(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_column("clinical_at")
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_column("units")
