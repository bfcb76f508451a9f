"""indexes for the dashboard: current inventory per account, version spans, findings by number

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_number_versions_current_account",
        "number_versions",
        ["account_id", "status", "currency", "monthly_fee"],
        unique=False,
        sqlite_where=sa.text("valid_to IS NULL"),
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_index(
        "ix_number_versions_status_span",
        "number_versions",
        ["status", "valid_from", "valid_to", "currency", "monthly_fee"],
        unique=False,
    )
    op.create_index(op.f("ix_findings_e164"), "findings", ["e164"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_findings_e164"), table_name="findings")
    op.drop_index("ix_number_versions_status_span", table_name="number_versions")
    op.drop_index("ix_number_versions_current_account", table_name="number_versions")
