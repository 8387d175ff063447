"""Webhook signing secrets in their own table (Standard Webhooks, rotation)

`webhook_secret` holds each endpoint's signing secrets (several while one is rotated). The
secret on file moves there in the `whsec_` form of the same key: `whsec_` + the base64 of the
old secret's UTF-8 bytes, so the HMAC key stays the one the receiver already holds.
Downgrading puts back each endpoint's newest active secret, decoded when it was such a key.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 14:00:00
"""

import base64
import binascii
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import monitor.storage.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PREFIX = "whsec_"


def _when() -> monitor.storage.types.UTCDateTime:
    return monitor.storage.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_secret",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("secret", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("retired_at", _when(), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoint.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_secret", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_secret_endpoint_id"), ["endpoint_id"], unique=False
        )
    connection = op.get_bind()
    connection.execute(
        sa.text(
            "INSERT INTO webhook_secret (endpoint_id, secret, created_at) "
            "SELECT id, secret, created_at FROM webhook_endpoint ORDER BY id"
        )
    )
    for secret_id, raw in connection.execute(sa.text("SELECT id, secret FROM webhook_secret")):
        connection.execute(
            sa.text("UPDATE webhook_secret SET secret = :secret WHERE id = :id"),
            {"id": secret_id, "secret": PREFIX + base64.b64encode(raw.encode()).decode()},
        )
    with op.batch_alter_table("webhook_endpoint", schema=None) as batch_op:
        batch_op.drop_column("secret")


def _old_form(secret: str) -> str:
    """The key as the old scheme used it (its UTF-8 text), or the `whsec_` text itself."""
    try:
        return base64.b64decode(secret.removeprefix(PREFIX), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return secret


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoint", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("secret", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True)
        )
    connection = op.get_bind()
    newest = connection.execute(
        sa.text(
            "SELECT endpoint_id, secret FROM webhook_secret WHERE retired_at IS NULL ORDER BY id"
        )
    )
    for endpoint_id, secret in {e: s for e, s in newest}.items():
        connection.execute(
            sa.text("UPDATE webhook_endpoint SET secret = :secret WHERE id = :id"),
            {"id": endpoint_id, "secret": _old_form(secret)},
        )
    connection.execute(sa.text("UPDATE webhook_endpoint SET secret = '' WHERE secret IS NULL"))
    with op.batch_alter_table("webhook_endpoint", schema=None) as batch_op:
        batch_op.alter_column(
            "secret", existing_type=sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False
        )
    with op.batch_alter_table("webhook_secret", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_secret_endpoint_id"))
    op.drop_table("webhook_secret")
