"""Forum topics: remember the topic an alert, liquidation feed or signal was set in

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-01 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# NULL = General (or a chat without topics): what every existing row had. Summaries
# (schedules) are private-only, so they need none.
TABLES = ("alerts", "liqfeed_subscriptions", "signals")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("thread_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("thread_id")
