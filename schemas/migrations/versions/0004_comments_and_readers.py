"""Every column described (PostgreSQL's catalogue; SQLite keeps no comments), and the record of
reader roles whose grants are renewed when views are recreated.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COMMENTS = {
    ("concentration", "run_id"): "Run that produced the row (etl_run.run_id)",
    ("concentration", "definition"): "downloads_30d | window_7d | window_30d | window_365d",
    ("concentration", "cohort"): "all | first_year",
    ("concentration", "attribution"): "uploader | origin",
    ("country_share", "run_id"): "Run that produced the row (etl_run.run_id)",
    ("model_fact", "run_id"): "Run that produced the row (etl_run.run_id)",
    ("model_fact", "likes"): "Hub likes",
    ("model_fact", "pipeline_tag"): "Hub pipeline tag (task), when declared",
    ("model_fact", "library_name"): "Hub library name, when declared",
    ("model_origin", "run_id"): "Run that produced the row (etl_run.run_id)",
    ("model_origin", "model_oid"): "Hub _id (stable across renames)",
    ("model_origin", "origin_org"): "Organisation the model's downloads go to in the origin view",
    ("model_origin", "origin_bucket"): "Origin view: alpha-2 | INTL | UNKNOWN",
    ("org_share", "run_id"): "Run that produced the row (etl_run.run_id)",
    ("org_share", "definition"): "downloads_30d | window_7d | window_30d | window_365d",
    ("org_share", "cohort"): "all | first_year",
    ("org_share", "attribution"): "uploader | origin",
    (
        "org_share",
        "org",
    ): "Hub namespace (organisation or person), as the mapping or the Hub spells it",
    ("org_share", "bucket"): "ISO alpha-2 | INTL | UNKNOWN",
    ("published_run", "snapshot_date"): "Date of the raw snapshot",
    ("published_run", "run_id"): "The run analysts read for this date (etl_run.run_id)",
    ("quality_result", "run_id"): "Run that produced the row (etl_run.run_id)",
    ("quality_result", "check_no"): "Order of the check in the gate",
    (
        "quality_result",
        "suite",
    ): "Expectation suite (schemas/expectations/) and the frame it ran on",
    ("quality_result", "expectation"): "great_expectations expectation type",
    ("quality_result", "column_name"): "Column the check reads (null for table-level checks)",
    ("quality_result", "success"): "Whether the check passed",
}


def upgrade() -> None:
    op.create_table(
        "reader_role",
        sa.Column("role_name", sa.String(length=63), nullable=False, comment="Role"),
        sa.Column(
            "granted_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the role was last granted",
        ),
        sa.PrimaryKeyConstraint("role_name"),
        comment="Internal: PostgreSQL roles that may read the BI views",
    )
    if op.get_bind().dialect.name == "postgresql":
        for (table, column), comment in COMMENTS.items():
            op.alter_column(table, column, comment=comment)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column in COMMENTS:
            op.alter_column(table, column, comment=None)
    op.drop_table("reader_role")
