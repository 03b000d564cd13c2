"""Fine-tuning jobs (issue 15: LoRA jobs tracked in MLflow).

``finetune_jobs``: one row per trainer process: its parameters, live progress (step,
loss, the loss curve), its owner gateway and lease (``heartbeat_at``), and what it
produced (MLflow run, registered model version, GGUF LoRA path).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "finetune_jobs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("base", sa.String(256), nullable=False),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(128)),
        sa.Column("pid", sa.Integer()),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("epoch", sa.Integer()),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("total_steps", sa.Integer()),
        sa.Column("loss", sa.Double()),
        sa.Column("learning_rate", sa.Double()),
        sa.Column("tokens_per_second", sa.Double()),
        sa.Column("curve", sa.JSON(), nullable=False),
        sa.Column("dataset_sha256", sa.String(64)),
        sa.Column("mlflow_run_id", sa.String(64)),
        sa.Column("model_name", sa.String(256)),
        sa.Column("model_version", sa.String(32)),
        sa.Column("gguf_lora", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("created_by", BigIntPK),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_finetune_jobs"),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name="fk_finetune_jobs_created_by_users",
            ondelete="SET NULL",
        ),
    )
    # The lease sweep and "is one running here" read running rows only.
    op.create_index("ix_finetune_jobs_status", "finetune_jobs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_finetune_jobs_status", table_name="finetune_jobs")
    op.drop_table("finetune_jobs")
