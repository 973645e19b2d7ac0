"""live cursors: the newest fill told per account (bot/live.py)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import bot.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "live_cursors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("network", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("last_exec_at", bot.db.types.UTCDateTime(), nullable=True),
        sa.Column("last_exec_ids", sa.JSON(), nullable=False),
        sa.Column("updated_at", bot.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_live_cursors_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_live_cursors")),
        sa.UniqueConstraint("user_id", "network", name=op.f("uq_live_cursors_user_id")),
    )
    with op.batch_alter_table("live_cursors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_live_cursors_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("live_cursors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_live_cursors_user_id"))

    op.drop_table("live_cursors")
