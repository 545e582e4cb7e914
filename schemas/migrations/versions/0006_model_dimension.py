"""Per-model facts as a dimension and a narrow daily fact (issue 10): `model_fact` (one wide row
per model per run) becomes `model_dim` (one row per distinct content of a model), `model_day`
(the published run's counters per model and date; on PostgreSQL one partition per month) and
`model_origin` keyed by the dimension. org_share keeps the organisations with a country and
one row per definition, cohort and view summing those with none.

The published run of each date is carried over: its facts move to the new tables and its
`facts_sha256` is recorded. Superseded runs lose their per-model rows, which stay reproducible
from their raw snapshot (`hubshare reproduce`); their shares, run rows and quality results stay.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from datetime import date

import polars as pl
import sqlalchemy as sa
from alembic import op

from schemas.frames import MODEL_FACT_SCHEMA, MODEL_ORIGIN_SCHEMA

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _old_rows(table: str, run_id: str, schema: pl.Schema) -> pl.DataFrame:
    bind = op.get_bind()
    reflected = sa.Table(table, sa.MetaData(), autoload_with=bind)
    query = sa.select(*[reflected.c[name] for name in schema.names()]).where(
        reflected.c.run_id == run_id
    )
    rows = [tuple(row) for row in bind.execute(query)]
    return pl.DataFrame(rows, schema=schema, orient="row")


def upgrade() -> None:
    # The load code of this revision stores the facts; imported here, not at module level, so
    # that alembic can list revisions without the project's tasks.
    from tasks.load import store_model_facts

    bind = op.get_bind()
    with op.batch_alter_table("etl_run") as batch:
        batch.add_column(
            sa.Column(
                "facts_sha256",
                sa.String(64),
                nullable=True,
                comment="SHA-256 of the per-model facts a published run stored (model_day)",
            )
        )
    op.rename_table("model_origin", "model_origin_0005")
    if bind.dialect.name == "postgresql":  # constraint names are unique per schema there
        bind.execute(
            sa.text(
                "ALTER TABLE model_origin_0005 RENAME CONSTRAINT model_origin_pkey "
                "TO model_origin_0005_pkey"
            )
        )
    op.create_table(
        "model_dim",
        sa.Column(
            "model_key",
            sa.Integer(),
            primary_key=True,
            autoincrement=False,
            comment="Surrogate key of this content of the model",
        ),
        sa.Column(
            "model_oid", sa.String(24), nullable=False, comment="Hub _id (stable across renames)"
        ),
        sa.Column(
            "content_digest",
            sa.BigInteger(),
            nullable=False,
            comment="64-bit digest of every other column and the model's origin rows (how a day "
            "finds the row it shares with earlier days)",
        ),
        sa.Column("model_id", sa.String(256), nullable=False, comment="Hub repo id"),
        sa.Column("uploader", sa.String(128), nullable=False, comment="Namespace that uploaded"),
        sa.Column("created_at", sa.DateTime(timezone=True), comment="Hub createdAt"),
        sa.Column("last_modified", sa.DateTime(timezone=True), comment="Hub lastModified"),
        sa.Column("pipeline_tag", sa.String(64), comment="Hub pipeline tag (task), when declared"),
        sa.Column("library_name", sa.String(64), comment="Hub library name, when declared"),
        sa.Column("gated", sa.String(8), comment="false | auto | manual"),
        sa.Column("base_relation", sa.String(64), comment="Declared base relation"),
        sa.Column("base_models", sa.Text(), comment="Declared base ids"),
        sa.Column(
            "uploader_bucket",
            sa.String(8),
            nullable=False,
            comment="Uploader view: alpha-2|INTL|UNKNOWN",
        ),
        comment="One row per distinct content of a model; model_day refers to it",
    )
    op.create_table(
        "model_day",
        sa.Column(
            "snapshot_date",
            sa.Date(),
            primary_key=True,
            comment="Date of the raw snapshot",
        ),
        sa.Column(
            "model_key",
            sa.Integer(),
            primary_key=True,
            autoincrement=False,
            comment="The model's content that day (model_dim.model_key)",
        ),
        sa.Column(
            "downloads_30d",
            sa.BigInteger(),
            nullable=False,
            comment="Hub downloads, trailing 30 days",
        ),
        sa.Column("downloads_all_time", sa.BigInteger(), comment="Hub downloadsAllTime"),
        sa.Column("likes", sa.Integer(), comment="Hub likes"),
        comment="Per-model counters of each published snapshot date",
        postgresql_partition_by="RANGE (snapshot_date)",
        sqlite_with_rowid=False,
    )
    op.create_table(
        "model_origin",
        sa.Column(
            "model_key",
            sa.Integer(),
            primary_key=True,
            autoincrement=False,
            comment="The model's content (model_dim.model_key)",
        ),
        sa.Column(
            "origin_org",
            sa.String(128),
            primary_key=True,
            comment="Organisation the model's downloads go to in the origin view",
        ),
        sa.Column(
            "origin_bucket",
            sa.String(8),
            nullable=False,
            comment="Origin view: alpha-2 | INTL | UNKNOWN",
        ),
        sa.Column("weight", sa.Double(), nullable=False, comment="Share of the model's downloads"),
        sa.Column("weight_num", sa.Integer(), nullable=False, comment="Exact weight numerator"),
        sa.Column("weight_den", sa.Integer(), nullable=False, comment="Exact weight denominator"),
        comment="Origin attribution of each model_dim row; weights of a model sum to 1",
        sqlite_with_rowid=False,
    )
    published = bind.execute(
        sa.text("SELECT snapshot_date, run_id FROM published_run ORDER BY snapshot_date")
    ).all()
    for stored_day, run_id in published:
        day = stored_day if isinstance(stored_day, date) else date.fromisoformat(str(stored_day))
        fact = _old_rows("model_fact", run_id, MODEL_FACT_SCHEMA)
        origin = _old_rows("model_origin_0005", run_id, MODEL_ORIGIN_SCHEMA)
        digest = store_model_facts(bind, day, fact, origin)
        bind.execute(
            sa.text("UPDATE etl_run SET facts_sha256 = :digest WHERE run_id = :run_id"),
            {"digest": digest, "run_id": run_id},
        )
    op.drop_table("model_fact")
    op.drop_table("model_origin_0005")
    _compact_org_share()


def _compact_org_share() -> None:
    """Sum each run's organisations with no country into one row per definition, cohort and
    view (`tasks.shares.fold_unknown_orgs`)."""
    from tasks.shares import OTHER_UNKNOWN_ORGS

    bind = op.get_bind()
    keys = "run_id, definition, cohort, attribution"
    bind.execute(
        sa.text(
            f"CREATE TEMPORARY TABLE org_share_rest AS SELECT {keys}, "
            "SUM(downloads) AS downloads, SUM(share) AS share FROM org_share "
            f"WHERE bucket = 'UNKNOWN' GROUP BY {keys}"
        )
    )
    bind.execute(sa.text("DELETE FROM org_share WHERE bucket = 'UNKNOWN'"))
    bind.execute(
        sa.text(
            f"INSERT INTO org_share ({keys}, org, bucket, downloads, share) "
            f"SELECT {keys}, :other, 'UNKNOWN', downloads, share FROM org_share_rest"
        ),
        {"other": OTHER_UNKNOWN_ORGS},
    )
    bind.execute(sa.text("DROP TABLE org_share_rest"))
    if bind.dialect.name == "postgresql":  # SQLite keeps no comments
        op.create_table_comment(
            "org_share",
            "Organisation shares per run, definition, cohort and view: each organisation with a "
            "country (or INTL), and one row '(namespaces with no country)' summing the UNKNOWN "
            "ones",
        )


def downgrade() -> None:
    raise NotImplementedError(
        "0006 moved per-model facts to model_dim/model_day and summed org_share rows; "
        "restore a backup taken before `hubshare db upgrade` to go back"
    )
