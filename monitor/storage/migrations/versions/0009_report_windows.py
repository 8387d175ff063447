"""Weekly patient report windows, and `report_due` webhook deliveries (issue 16)

`report_window` holds one row per (patient, course, window): the week in which the patient is
asked to report, when they did, and when the `report_due` webhooks went out. A webhook
delivery is now of an alert or of a report window; endpoints choose the event types they get
(`types`), and those registered before keep getting alerts only. Downgrading drops the
report-due deliveries with their attempts.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import monitor.storage.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when() -> monitor.storage.types.UTCDateTime:
    return monitor.storage.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "report_window",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("enrolled_at", _when(), nullable=False),
        sa.Column("window_index", sa.Integer(), nullable=False),
        sa.Column("window_start", _when(), nullable=False),
        sa.Column("window_end", _when(), nullable=False),
        sa.Column("reported_at", _when(), nullable=True),
        sa.Column("notified_at", _when(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_id", "enrolled_at", "window_index", name="uq_report_window"),
    )
    with op.batch_alter_table("report_window", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_window_patient_id"), ["patient_id"], unique=False
        )
        batch_op.create_index("ix_report_window_open", ["reported_at", "window_end"], unique=False)
    with op.batch_alter_table("webhook_endpoint", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("types", sa.Text(), server_default='["alert"]', nullable=False)
        )
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.alter_column("alert_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("report_window_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_webhook_delivery_report_window_id_report_window",
            "report_window",
            ["report_window_id"],
            ["id"],
        )
        batch_op.create_unique_constraint(
            "uq_delivery_report_window_endpoint", ["report_window_id", "endpoint_id"]
        )


def downgrade() -> None:
    connection = op.get_bind()
    gone = "SELECT id FROM webhook_delivery WHERE report_window_id IS NOT NULL"
    connection.execute(sa.text(f"DELETE FROM webhook_attempt WHERE delivery_id IN ({gone})"))
    connection.execute(sa.text("DELETE FROM webhook_delivery WHERE report_window_id IS NOT NULL"))
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.drop_constraint("uq_delivery_report_window_endpoint", type_="unique")
        batch_op.drop_constraint(
            "fk_webhook_delivery_report_window_id_report_window", type_="foreignkey"
        )
        batch_op.drop_column("report_window_id")
        batch_op.alter_column("alert_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("webhook_endpoint", schema=None) as batch_op:
        batch_op.drop_column("types")
    with op.batch_alter_table("report_window", schema=None) as batch_op:
        batch_op.drop_index("ix_report_window_open")
        batch_op.drop_index(batch_op.f("ix_report_window_patient_id"))
    op.drop_table("report_window")
