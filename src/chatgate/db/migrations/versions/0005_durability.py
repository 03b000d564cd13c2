"""Durability: idempotent usage rows (record_key), answers that checkpoint their text.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("record_key", sa.String(64), nullable=True))
        batch.create_index("ux_requests_record_key", ["record_key"], unique=True)
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("request_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("checkpoint_at", sa.DateTime(timezone=True), nullable=True))
    # The sweeper looks for pending answers only: a partial index where the backend has one.
    op.create_index(
        "ix_messages_pending",
        "messages",
        ["checkpoint_at"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_pending", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("checkpoint_at")
        batch.drop_column("request_id")
    with op.batch_alter_table("requests") as batch:
        batch.drop_index("ux_requests_record_key")
        batch.drop_column("record_key")
