"""Alerts and fills: the message whose request is on the wire, answer not in (issue #15)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02 05:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import bot.db.types

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sending_at", bot.db.types.UTCDateTime(), nullable=True))
    with op.batch_alter_table("live_cursors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sending_exec_id",
                                      sqlmodel.sql.sqltypes.AutoString(length=64),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("live_cursors", schema=None) as batch_op:
        batch_op.drop_column("sending_exec_id")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("sending_at")
