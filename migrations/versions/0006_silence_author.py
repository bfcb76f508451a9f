"""silences.created_by: who added the silence (none for the silences added before)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("silences", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_by", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("silences", schema=None) as batch_op:
        batch_op.drop_column("created_by")
