"""Size-preset menus: the order typed without a size, read back by a preset press (issue #14 item 5)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02 05:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.db.types

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "preset_menus",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", bot.db.types.TelegramId, nullable=False),
        sa.Column("chat_id", bot.db.types.TelegramId, nullable=False),
        sa.Column("order", sa.JSON(), nullable=False),
        sa.Column("created_at", bot.db.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", bot.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_preset_menus_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_preset_menus")),
    )
    with op.batch_alter_table("preset_menus", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_preset_menus_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_preset_menus_expires_at"), ["expires_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("preset_menus", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_preset_menus_expires_at"))
        batch_op.drop_index(batch_op.f("ix_preset_menus_user_id"))
    op.drop_table("preset_menus")
