"""The warehouse as the first release (0.1.0) created it: eight tables, no views (views are
derived objects that `tasks/migrate.py` replaces whenever their definition changes).

A warehouse made by that release has these tables and no `alembic_version`: `hubshare db
upgrade` stamps it at this revision and upgrades it in place.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "etl_run",
        sa.Column("run_id", sa.String(length=36), nullable=False, comment="UUID of the run"),
        sa.Column("snapshot_date", sa.Date(), nullable=False, comment="Date of the raw snapshot"),
        sa.Column(
            "version",
            sa.Integer(),
            nullable=False,
            comment="1 for the first run of the date, then n+1",
        ),
        sa.Column("status", sa.String(length=16), nullable=False, comment="published | rejected"),
        sa.Column("status_reason", sa.Text(), nullable=True, comment="Why a run was rejected"),
        sa.Column(
            "flow_run_id", sa.String(length=36), nullable=True, comment="Prefect flow-run id"
        ),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the run started (UTC)",
        ),
        sa.Column(
            "finished_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the run was loaded (UTC)",
        ),
        sa.Column(
            "code_version", sa.String(length=64), nullable=False, comment="hubshare version+git"
        ),
        sa.Column(
            "definition", sa.String(length=32), nullable=False, comment="Metric: downloads_30d"
        ),
        sa.Column(
            "raw_sha256",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 of the raw snapshot",
        ),
        sa.Column(
            "mapping_sha256",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 of org_country.csv",
        ),
        sa.Column(
            "shares_sha256",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 of the share table text",
        ),
        sa.Column(
            "row_count", sa.Integer(), nullable=False, comment="Public models in the snapshot"
        ),
        sa.Column("rows_listed", sa.Integer(), nullable=False, comment="Rows the crawl listed"),
        sa.Column(
            "duplicates_dropped", sa.Integer(), nullable=False, comment="Repeated _id rows dropped"
        ),
        sa.Column(
            "private_dropped", sa.Integer(), nullable=False, comment="Private models dropped"
        ),
        sa.Column(
            "total_downloads",
            sa.BigInteger(),
            nullable=False,
            comment="Population total of downloads_30d",
        ),
        sa.Column(
            "quality_failures", sa.Integer(), nullable=False, comment="Failed quality checks"
        ),
        sa.Column(
            "parameters",
            sa.Text(),
            nullable=False,
            comment="Run parameters and settings (JSON, no secrets)",
        ),
        sa.Column("report", sa.Text(), nullable=False, comment="Lineage and crawl report (JSON)"),
        sa.PrimaryKeyConstraint("run_id"),
        comment="Every run of the pipeline; version n of a snapshot date",
    )
    op.create_index(op.f("ix_etl_run_snapshot_date"), "etl_run", ["snapshot_date"], unique=False)
    op.create_table(
        "concentration",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("definition", sa.String(length=32), nullable=False),
        sa.Column("cohort", sa.String(length=16), nullable=False),
        sa.Column("attribution", sa.String(length=16), nullable=False),
        sa.Column("orgs", sa.Integer(), nullable=False, comment="Organisations in the population"),
        sa.Column(
            "hhi", sa.Double(), nullable=False, comment="Herfindahl-Hirschman index, 0-10,000"
        ),
        sa.Column("gini", sa.Double(), nullable=False, comment="Gini of organisation downloads"),
        sa.Column(
            "top10_share",
            sa.Double(),
            nullable=False,
            comment="Share of the 10 largest organisations",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["etl_run.run_id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "definition", "cohort", "attribution"),
        comment="HHI, Gini and top-10 share over organisations",
    )
    op.create_table(
        "country_share",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column(
            "definition",
            sa.String(length=32),
            nullable=False,
            comment="downloads_30d | window_7d | window_30d | window_365d",
        ),
        sa.Column("cohort", sa.String(length=16), nullable=False, comment="all | first_year"),
        sa.Column("attribution", sa.String(length=16), nullable=False, comment="uploader | origin"),
        sa.Column(
            "bucket", sa.String(length=8), nullable=False, comment="ISO alpha-2 | INTL | UNKNOWN"
        ),
        sa.Column(
            "downloads",
            sa.BigInteger(),
            nullable=False,
            comment="Downloads in the bucket under the definition",
        ),
        sa.Column("share", sa.Double(), nullable=False, comment="downloads / population total"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["etl_run.run_id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "definition", "cohort", "attribution", "bucket"),
        comment="Bucket shares per run, definition, cohort and view",
    )
    op.create_table(
        "model_fact",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column(
            "model_oid",
            sa.String(length=24),
            nullable=False,
            comment="Hub _id (stable across renames)",
        ),
        sa.Column("model_id", sa.String(length=256), nullable=False, comment="Hub repo id"),
        sa.Column(
            "uploader", sa.String(length=128), nullable=False, comment="Namespace that uploaded"
        ),
        sa.Column(
            "downloads_30d",
            sa.BigInteger(),
            nullable=False,
            comment="Hub downloads, trailing 30 days",
        ),
        sa.Column(
            "downloads_all_time", sa.BigInteger(), nullable=True, comment="Hub downloadsAllTime"
        ),
        sa.Column("likes", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True, comment="Hub createdAt"),
        sa.Column(
            "last_modified", sa.DateTime(timezone=True), nullable=True, comment="Hub lastModified"
        ),
        sa.Column("pipeline_tag", sa.String(length=64), nullable=True),
        sa.Column("library_name", sa.String(length=64), nullable=True),
        sa.Column("gated", sa.String(length=8), nullable=True, comment="false | auto | manual"),
        sa.Column(
            "base_relation", sa.String(length=64), nullable=True, comment="Declared base relation"
        ),
        sa.Column("base_models", sa.Text(), nullable=True, comment="Declared base ids"),
        sa.Column(
            "uploader_bucket",
            sa.String(length=8),
            nullable=False,
            comment="Uploader view: alpha-2|INTL|UNKNOWN",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["etl_run.run_id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "model_oid"),
        comment="One row per public model per run",
    )
    op.create_table(
        "model_origin",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("model_oid", sa.String(length=24), nullable=False),
        sa.Column("origin_org", sa.String(length=128), nullable=False),
        sa.Column("origin_bucket", sa.String(length=8), nullable=False),
        sa.Column("weight", sa.Double(), nullable=False, comment="Share of the model's downloads"),
        sa.Column("weight_num", sa.Integer(), nullable=False, comment="Exact weight numerator"),
        sa.Column("weight_den", sa.Integer(), nullable=False, comment="Exact weight denominator"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["etl_run.run_id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "model_oid", "origin_org"),
        comment="Origin attribution; weights of a model sum to 1",
    )
    op.create_table(
        "org_share",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("definition", sa.String(length=32), nullable=False),
        sa.Column("cohort", sa.String(length=16), nullable=False),
        sa.Column("attribution", sa.String(length=16), nullable=False),
        sa.Column("org", sa.String(length=128), nullable=False),
        sa.Column("bucket", sa.String(length=8), nullable=False),
        sa.Column(
            "downloads", sa.BigInteger(), nullable=False, comment="Downloads under the definition"
        ),
        sa.Column("share", sa.Double(), nullable=False, comment="downloads / population total"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["etl_run.run_id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "definition", "cohort", "attribution", "org"),
        comment="Organisation shares per run, definition, cohort and view",
    )
    op.create_table(
        "published_run",
        sa.Column("snapshot_date", sa.Date(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column(
            "published_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the pointer moved to this run",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["etl_run.run_id"],
        ),
        sa.PrimaryKeyConstraint("snapshot_date"),
        sa.UniqueConstraint("run_id"),
        comment="Which run is published for each snapshot date",
    )
    op.create_table(
        "quality_result",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("check_no", sa.Integer(), nullable=False),
        sa.Column("suite", sa.String(length=64), nullable=False),
        sa.Column("expectation", sa.String(length=128), nullable=False),
        sa.Column("column_name", sa.String(length=64), nullable=True),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("observed", sa.Text(), nullable=False, comment="Observed value"),
        sa.Column("expected", sa.Text(), nullable=False, comment="Bound the check enforces"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["etl_run.run_id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "check_no"),
        comment="Quality gate results per run",
    )


def downgrade() -> None:
    for table in (
        "quality_result",
        "org_share",
        "model_origin",
        "model_fact",
        "country_share",
        "concentration",
        "published_run",
        "etl_run",
    ):
        op.drop_table(table)
