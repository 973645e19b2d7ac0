"""order cards whose message does not yet show the card's state (repaired by the sweep)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 21:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("order_intents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("card_stale", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("order_intents", schema=None) as batch_op:
        batch_op.drop_column("card_stale")
