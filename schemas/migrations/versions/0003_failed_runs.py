"""Failed and crashed runs get their `etl_run` row: the figures a run had not reached yet are
null.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NOW_NULLABLE = {
    "raw_sha256": (sa.String(length=64), "SHA-256 of the raw snapshot"),
    "mapping_sha256": (sa.String(length=64), "SHA-256 of org_country.csv"),
    "shares_sha256": (sa.String(length=64), "SHA-256 of the share table text"),
    "row_count": (sa.Integer(), "Public models in the snapshot"),
    "rows_listed": (sa.Integer(), "Rows the crawl listed"),
    "duplicates_dropped": (sa.Integer(), "Repeated _id rows dropped"),
    "private_dropped": (sa.Integer(), "Private models dropped"),
    "total_downloads": (sa.BigInteger(), "Population total of downloads_30d"),
}


def upgrade() -> None:
    with op.batch_alter_table("etl_run") as batch:
        for name, (type_, comment) in NOW_NULLABLE.items():
            batch.alter_column(name, existing_type=type_, nullable=True, existing_comment=comment)
        batch.alter_column(
            "status",
            existing_type=sa.String(length=16),
            existing_nullable=False,
            comment="published | rejected | failed | crashed",
            existing_comment="published | rejected",
        )
        batch.alter_column(
            "status_reason",
            existing_type=sa.Text(),
            existing_nullable=True,
            comment="Why a run was rejected, failed or crashed",
            existing_comment="Why a run was rejected",
        )
        batch.alter_column(
            "finished_at",
            existing_type=sa.DateTime(timezone=True),
            existing_nullable=False,
            comment="When the run was loaded or failed (UTC)",
            existing_comment="When the run was loaded (UTC)",
        )


def downgrade() -> None:
    op.execute("DELETE FROM etl_run WHERE status IN ('failed', 'crashed')")
    with op.batch_alter_table("etl_run") as batch:
        for name, (type_, comment) in NOW_NULLABLE.items():
            batch.alter_column(name, existing_type=type_, nullable=False, existing_comment=comment)
