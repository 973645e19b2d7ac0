"""key ip binding: the CIDRs an API key is bound to, shown in /accounts

Revision ID: 0009
Revises: 0003
Create Date: 2026-12-01 21:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Keys stored before this was read are shown as "not checked" until re-verified.
    with op.batch_alter_table("api_credentials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ip_binding", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_credentials", schema=None) as batch_op:
        batch_op.drop_column("ip_binding")
