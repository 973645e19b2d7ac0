"""Alerts: index the chat an alert belongs to (/alerts and the per-chat cap read by it)

Without it both queries (`state = 'active' AND chat_id = ?`) walk every active alert: at
100,000 alerts that is tens of milliseconds a /alerts on SQLite, serialised behind the one
writer (bench/capacity.py found it).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 01:35:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
# 0016 on this branch; 0017 (leadership) when merged after the failover branch.
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_alerts_chat_state", "alerts", ["chat_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_alerts_chat_state", table_name="alerts")
