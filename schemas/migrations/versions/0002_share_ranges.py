"""Share ranges (`country_share.share_low`, `share_high`) and the record of view definitions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("country_share") as batch:
        batch.add_column(
            sa.Column(
                "share_low",
                sa.Double(),
                nullable=True,
                comment="Lowest share over the contested rows' answers (country or alt_country)",
            )
        )
        batch.add_column(
            sa.Column(
                "share_high",
                sa.Double(),
                nullable=True,
                comment="Highest share over the contested rows' answers, counting every UNKNOWN "
                "download as possibly this bucket's",
            )
        )
    op.create_table(
        "view_definition",
        sa.Column("view_name", sa.String(length=64), nullable=False, comment="BI view"),
        sa.Column(
            "definition_sha256",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 of the SELECT the view was created from",
        ),
        sa.PrimaryKeyConstraint("view_name"),
        comment="Internal: which definition each BI view was last created from",
    )


def downgrade() -> None:
    op.drop_table("view_definition")
    with op.batch_alter_table("country_share") as batch:
        batch.drop_column("share_high")
        batch.drop_column("share_low")
