"""Update inbox: Telegram updates fetched but not yet claimed, sealed (bot/inbox.py)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02 18:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.db.types

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "update_inbox",
        sa.Column("bot_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.Column("update_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", bot.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("bot_id", "update_id", name=op.f("pk_update_inbox")),
    )
    with op.batch_alter_table("update_inbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_update_inbox_received_at"), ["received_at"],
                              unique=False)
    if op.get_context().dialect.name == "sqlite":
        # A claim takes its update's inbox row in its own transaction (bot/leader.py
        # `UpdateLog.claim_many`). On SQLite a second statement would cost every claim a
        # hop to the driver's thread; the trigger does it inside the INSERT. PostgreSQL
        # does it in the claim's own statement (a DELETE in a WITH).
        op.execute(SQLITE_CLAIM_TRIGGER)


SQLITE_CLAIM_TRIGGER = """
CREATE TRIGGER handled_updates_take_inbox AFTER INSERT ON handled_updates
BEGIN
    DELETE FROM update_inbox WHERE bot_id = NEW.bot_id AND update_id = NEW.update_id;
END
"""


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS handled_updates_take_inbox")
    with op.batch_alter_table("update_inbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_update_inbox_received_at"))
    op.drop_table("update_inbox")
