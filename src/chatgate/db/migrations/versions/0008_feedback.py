"""Feedback on answers and the training opt-in (issue 15: feedback, datasets).

``message_feedback``: one rating (up/down) and optional corrected answer per message and
user; ``users.training_opt_in``: NULL follows the deployment's default
(``CHATGATE_TRAINING_DEFAULT_OPT_IN``), true/false is the user's own choice.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# As in 0001: SQLite auto-increments INTEGER PRIMARY KEY only.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("training_opt_in", sa.Boolean(), nullable=True))
    op.create_table(
        "message_feedback",
        sa.Column("id", BigIntPK, nullable=False, autoincrement=True),
        sa.Column("message_id", BigIntPK, nullable=False),
        sa.Column("user_id", BigIntPK, nullable=False),
        sa.Column("rating", sa.String(8), nullable=False),
        sa.Column("correction", sa.Text(), nullable=True),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name="fk_message_feedback_message_id_messages",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_message_feedback_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_message_feedback"),
    )
    op.create_index(
        "ux_message_feedback_message_user",
        "message_feedback",
        ["message_id", "user_id"],
        unique=True,
    )
    op.create_index("ix_message_feedback_created", "message_feedback", ["created_at"])
    op.create_index("ix_message_feedback_user_id", "message_feedback", ["user_id"])


def downgrade() -> None:
    op.drop_table("message_feedback")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("training_opt_in")
