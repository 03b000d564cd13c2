"""Index messages.parent_id: deleting a message looks up its children (ON DELETE SET NULL).

Without it each deleted message scanned the whole table, so deleting a conversation was
quadratic: 10,000 imported messages took 7 s on SQLite, and schemathesis' generated
imports made a DELETE outlast its 60 s timeout (PostgreSQL scans the same way).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_parent_id", "messages", ["parent_id"])


def downgrade() -> None:
    op.drop_index("ix_messages_parent_id", table_name="messages")
