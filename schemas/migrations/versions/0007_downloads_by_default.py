"""How much of each share rests on the account-type default (issue 18):
`country_share.downloads_by_default`, the part of a bucket's downloads whose bucket was decided by
a namespace with no reviewed mapping row. Runs from before read NULL (not known), never 0. The BI
views `published_country_share` and `latest_country_share` show it; they are recreated from their
current definition after the upgrade (tasks/migrate.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_COMMENT = (
    "Downloads of the bucket decided by a namespace with no reviewed mapping row (the "
    "account-type default); NULL for runs before it was computed"
)


def upgrade() -> None:
    with op.batch_alter_table("country_share") as batch:
        batch.add_column(
            sa.Column("downloads_by_default", sa.BigInteger(), nullable=True, comment=_COMMENT)
        )


def downgrade() -> None:
    with op.batch_alter_table("country_share") as batch:
        batch.drop_column("downloads_by_default")
