"""Limits: per-user overrides, per-role overrides, and key budgets by time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("limits", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "role_limits",
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("role", name="pk_role_limits"),
    )
    op.create_index("ix_requests_api_key_created", "requests", ["api_key_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_requests_api_key_created", table_name="requests")
    op.drop_table("role_limits")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("limits")
