"""The fold's checkpoint on the patient row (issue 17, incremental folding)

`patient.fold_checkpoint` holds where the patient's last fold stopped (policies/checkpoint.py:
pack, engine version, the last folded event's timeline key, the engine's state after it, and
the decisions made after it), so the next fold applies only the events after it. NULL: the
next fold starts from the first event, as before. Downgrading drops it (nothing is lost: the
next fold is a full one).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 21:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("patient") as batch:
        batch.add_column(sa.Column("fold_checkpoint", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patient") as batch:
        batch.drop_column("fold_checkpoint")
