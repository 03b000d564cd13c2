"""Fine-tuned versions deployed fleet-wide (issue 15, item 6).

``model_deployments``: the versions every gateway should serve (the desired state; each
host's engine leader applies it, every gateway registers what its engines serve), with
the last attempt's failure. ``model_splits``: the web chat's A/B splits. Both used to be
files in one gateway's data dir (nothing is migrated from them).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "model_deployments",
        sa.Column("model_id", sa.String(300), nullable=False),
        sa.Column("base", sa.String(256), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("registered", sa.String(512), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deployed_by", BigIntPK),
        sa.Column("error", sa.Text()),
        sa.PrimaryKeyConstraint("model_id", name="pk_model_deployments"),
        sa.ForeignKeyConstraint(
            ["deployed_by"],
            ["users.id"],
            name="fk_model_deployments_deployed_by_users",
            ondelete="SET NULL",
        ),
    )
    op.create_table(
        "model_splits",
        sa.Column("base", sa.String(256), nullable=False),
        sa.Column("to_model", sa.String(300), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("base", name="pk_model_splits"),
    )


def downgrade() -> None:
    op.drop_table("model_splits")
    op.drop_table("model_deployments")
