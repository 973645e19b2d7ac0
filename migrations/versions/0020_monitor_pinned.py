"""monitor messages remember that /monitor pin pinned them, so /monitor off unpins them
also after a restart (issue #14 item 7)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02 05:35:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("monitor_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("monitor_messages", schema=None) as batch_op:
        batch_op.drop_column("pinned")
