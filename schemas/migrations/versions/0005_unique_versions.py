"""Versions unique per date, enforced by the database: two loads of one date at the same
instant can no longer both be version n (the second retries with n+1). Any duplicates a race
left behind are renumbered first, in the order the runs started.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    days = {
        row[0]
        for row in bind.execute(
            sa.text(
                "SELECT snapshot_date FROM etl_run GROUP BY snapshot_date, version "
                "HAVING COUNT(*) > 1"
            )
        )
    }
    for day in sorted(days):
        runs = bind.execute(
            sa.text(
                "SELECT run_id FROM etl_run WHERE snapshot_date = :day "
                "ORDER BY version, started_at, run_id"
            ),
            {"day": day},
        ).all()
        for version, (run_id,) in enumerate(runs, start=1):
            bind.execute(
                sa.text("UPDATE etl_run SET version = :version WHERE run_id = :run_id"),
                {"version": version, "run_id": run_id},
            )
    with op.batch_alter_table("etl_run") as batch:
        batch.create_unique_constraint(
            "uq_etl_run_snapshot_date_version", ["snapshot_date", "version"]
        )


def downgrade() -> None:
    with op.batch_alter_table("etl_run") as batch:
        batch.drop_constraint("uq_etl_run_snapshot_date_version", type_="unique")
