"""number_versions: raw as plain JSON, valid_from without a foreign key (bulk-load speed)

The item JSON is stored as sent (``json``, not ``jsonb``, on PostgreSQL), and ``valid_from`` is
no longer checked against ``sweeps`` row by row: the sweep writer sets it to its own sweep's id.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 20:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("number_versions", schema=None) as batch_op:
        batch_op.drop_constraint("fk_number_versions_valid_from_sweeps", type_="foreignkey")
        batch_op.alter_column(
            "raw",
            existing_type=sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            type_=sa.JSON(),
            existing_nullable=False,
            postgresql_using="raw::json",
        )


def downgrade() -> None:
    with op.batch_alter_table("number_versions", schema=None) as batch_op:
        batch_op.alter_column(
            "raw",
            existing_type=sa.JSON(),
            type_=sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            existing_nullable=False,
            postgresql_using="raw::jsonb",
        )
        batch_op.create_foreign_key(
            "fk_number_versions_valid_from_sweeps", "sweeps", ["valid_from"], ["id"]
        )
