"""Telegram ids as BIGINT on PostgreSQL (they exceed 32 bits); nothing to do on SQLite

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-01 21:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column) holding a Telegram user or chat id.
COLUMNS = [
    ("users", "id"),
    ("api_credentials", "user_id"),
    ("order_intents", "user_id"), ("order_intents", "chat_id"),
    ("live_cursors", "user_id"),
    ("alerts", "user_id"), ("alerts", "chat_id"),
    ("schedules", "user_id"), ("schedules", "chat_id"),
    ("liqfeed_subscriptions", "chat_id"), ("liqfeed_subscriptions", "created_by"),
    ("audit_log", "user_id"), ("audit_log", "chat_id"),
    ("feeds", "chat_id"), ("feeds", "created_by"),
    ("signals", "chat_id"), ("signals", "posted_by"),
    ("signal_updates", "by_user"),
    ("follows", "user_id"),
    ("follower_orders", "user_id"),
]


def _alter(to: sa.types.TypeEngine, frm: sa.types.TypeEngine) -> None:
    # SQLite's INTEGER is already 64-bit: rebuilding every table there would gain nothing.
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=to, existing_type=frm)


def upgrade() -> None:
    _alter(sa.BigInteger(), sa.Integer())


def downgrade() -> None:
    _alter(sa.Integer(), sa.BigInteger())
