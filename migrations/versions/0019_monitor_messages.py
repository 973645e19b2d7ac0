"""Live position monitor: the messages /monitor keeps editing (issue #14 item 7)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 02:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import bot.db.types

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "monitor_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", bot.db.types.TelegramId, nullable=False),
        sa.Column("chat_id", bot.db.types.TelegramId, nullable=False),
        sa.Column("network", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("symbol", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("text", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("updated_at", bot.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_monitor_messages_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_messages")),
        sa.UniqueConstraint("user_id", "network", "symbol",
                            name=op.f("uq_monitor_messages_user_id")),
    )
    with op.batch_alter_table("monitor_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_monitor_messages_user_id"), ["user_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("monitor_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_monitor_messages_user_id"))
    op.drop_table("monitor_messages")
