"""account_versions: customer accounts, change-only, without credentials

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("raw", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("valid_from", sa.Integer(), nullable=False),
        sa.Column("valid_to", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["valid_from"], ["sweeps.id"], name="fk_account_versions_valid_from_sweeps"
        ),
        sa.ForeignKeyConstraint(
            ["valid_to"], ["sweeps.id"], name="fk_account_versions_valid_to_sweeps"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_account_versions"),
    )
    op.create_index(
        "uq_account_versions_current",
        "account_versions",
        ["account_id"],
        unique=True,
        sqlite_where=sa.text("valid_to IS NULL"),
        postgresql_where=sa.text("valid_to IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_account_versions_current", table_name="account_versions")
    op.drop_table("account_versions")
