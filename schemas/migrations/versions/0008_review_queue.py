"""The review queue (issue 18): each published run's namespaces without a reviewed mapping row,
or mapped UNKNOWN, ranked by downloads, in `review_queue` (its BI view
`published_review_queue` is created from schemas/warehouse.py after the upgrade, like every
view). Runs published before this revision have no rows: their queue is recomputable from their
raw snapshot and mapping.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_queue",
        sa.Column(
            "run_id",
            sa.String(36),
            nullable=False,
            comment="Run that produced the row (etl_run.run_id)",
        ),
        sa.Column(
            "namespace",
            sa.String(128),
            nullable=False,
            comment="Hub namespace that uploaded, as the snapshot spells it",
        ),
        sa.Column(
            "account_type",
            sa.String(16),
            nullable=True,
            comment="user | org | vanished (as the Hub said); null: not typed",
        ),
        sa.Column(
            "fullname",
            sa.Text(),
            nullable=True,
            comment="The Hub's display name of the namespace, when known",
        ),
        sa.Column(
            "downloads",
            sa.BigInteger(),
            nullable=False,
            comment="downloads_30d of the models it uploaded",
        ),
        sa.Column("share", sa.Double(), nullable=False, comment="downloads / population total"),
        sa.Column("models", sa.Integer(), nullable=False, comment="Public models it uploaded"),
        sa.Column(
            "first_seen",
            sa.Date(),
            nullable=False,
            comment="Earliest published snapshot date in which it uploaded a model",
        ),
        sa.ForeignKeyConstraint(["run_id"], ["etl_run.run_id"]),
        sa.PrimaryKeyConstraint("run_id", "namespace"),
        comment="Review queue per published run: namespaces without a reviewed mapping row, or "
        "mapped UNKNOWN, ranked by downloads",
    )


def downgrade() -> None:
    # The view reads the table: it goes first (an upgrade recreates it from the schema module).
    op.execute("DROP VIEW IF EXISTS published_review_queue")
    op.drop_table("review_queue")
