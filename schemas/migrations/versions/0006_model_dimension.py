"""Per-model facts as a dimension and a narrow daily fact (issue 10): `model_fact` (one wide row
per model per run) becomes `model_dim` (one row per distinct content of a model), `model_day`
(the published run's counters per model and date; on PostgreSQL one partition per month) and
`model_origin` keyed by the dimension. org_share keeps the organisations with a country and
one row per definition, cohort and view summing those with none.

The published run of each date is carried over: its facts move to the new tables and its
`facts_sha256` is recorded. Superseded runs lose their per-model rows, which stay reproducible
from their raw snapshot (`hubshare reproduce`); their shares, run rows and quality results stay.

The revision carries the code it runs, frozen as it was when it was written (tasks/load.py,
tasks/shares.py and schemas/frames.py at commit ed16a98): the project's live code changes with
the schema at head, an upgrade from before 0006 must still run this revision's schema.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date, timedelta
from typing import Any, NamedTuple

import polars as pl
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

_UTC_TS = pl.Datetime("us", "UTC")

#: The 0005 warehouse's model_fact columns that 0006 carries over (schemas.frames.MODEL_FACT_SCHEMA).
_MODEL_FACT_SCHEMA = pl.Schema(
    {
        "model_oid": pl.String(),
        "model_id": pl.String(),
        "uploader": pl.String(),
        "downloads_30d": pl.Int64(),
        "downloads_all_time": pl.Int64(),
        "likes": pl.Int64(),
        "created_at": _UTC_TS,
        "last_modified": _UTC_TS,
        "pipeline_tag": pl.String(),
        "library_name": pl.String(),
        "gated": pl.String(),
        "base_relation": pl.String(),
        "base_models": pl.String(),
        "uploader_bucket": pl.String(),
    }
)

#: The 0005 warehouse's model_origin columns (schemas.frames.MODEL_ORIGIN_SCHEMA).
_MODEL_ORIGIN_SCHEMA = pl.Schema(
    {
        "model_oid": pl.String(),
        "origin_org": pl.String(),
        "origin_bucket": pl.String(),
        "weight": pl.Float64(),
        "weight_num": pl.Int64(),
        "weight_den": pl.Int64(),
    }
)

#: The org_share row summing the organisations with no country (tasks.shares.OTHER_UNKNOWN_ORGS).
_OTHER_UNKNOWN_ORGS = "(namespaces with no country)"


def _old_rows(table: str, run_id: str, schema: pl.Schema) -> pl.DataFrame:
    bind = op.get_bind()
    reflected = sa.Table(table, sa.MetaData(), autoload_with=bind)
    query = sa.select(*[reflected.c[name] for name in schema.names()]).where(
        reflected.c.run_id == run_id
    )
    rows = [tuple(row) for row in bind.execute(query)]
    return pl.DataFrame(rows, schema=schema, orient="row")


def upgrade() -> None:
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
    model_dim = op.create_table(
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
    model_day = op.create_table(
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
    model_origin = op.create_table(
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
        fact = _old_rows("model_fact", run_id, _MODEL_FACT_SCHEMA)
        origin = _old_rows("model_origin_0005", run_id, _MODEL_ORIGIN_SCHEMA)
        digest = _store_model_facts(
            bind, _Tables(model_dim, model_day, model_origin), day, fact, origin
        )
        bind.execute(
            sa.text("UPDATE etl_run SET facts_sha256 = :digest WHERE run_id = :run_id"),
            {"digest": digest, "run_id": run_id},
        )
    op.drop_table("model_fact")
    op.drop_table("model_origin_0005")
    _compact_org_share()


def _compact_org_share() -> None:
    """Sum each run's organisations with no country into one row per definition, cohort and
    view (as `tasks.shares.fold_unknown_orgs` did)."""
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
        {"other": _OTHER_UNKNOWN_ORGS},
    )
    bind.execute(sa.text("DROP TABLE org_share_rest"))
    if bind.dialect.name == "postgresql":  # SQLite keeps no comments
        op.create_table_comment(
            "org_share",
            "Organisation shares per run, definition, cohort and view: each organisation with a "
            "country (or INTL), and one row '(namespaces with no country)' summing the UNKNOWN "
            "ones",
        )


# The load code of this revision: tasks/load.py's store_model_facts and what it calls, as they
# were when 0006 was written, on the tables this revision creates.


class _Tables(NamedTuple):
    model_dim: sa.Table
    model_day: sa.Table
    model_origin: sa.Table


#: Rows per CSV block sent to COPY (bounds the text held in memory at once).
_COPY_CHUNK_ROWS = 200_000

#: Serialises writers of the model dimension on PostgreSQL (keys are allocated as max + 1).
_DIMENSION_LOCK = 0x4855_4449_4D00

#: The model dimension's content: what decides whether a day can reuse an earlier row.
_DIMENSION_COLUMNS = (
    "model_oid",
    "model_id",
    "uploader",
    "created_at",
    "last_modified",
    "pipeline_tag",
    "library_name",
    "gated",
    "base_relation",
    "base_models",
    "uploader_bucket",
)


def _store_model_facts(
    connection: sa.Connection, tables: _Tables, day: date, fact: pl.DataFrame, origin: pl.DataFrame
) -> str:
    """Store a published run's per-model facts inside the caller's transaction: new dimension
    rows (and their origin rows) for contents not seen before, and the date's model_day rows
    unless the date's published facts are already these. Returns the facts' SHA-256."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DIMENSION_LOCK})
    dims = _model_dimension(fact, origin)  # in fact's row order
    known = _read_frame(
        connection,
        "SELECT model_oid, content_digest, model_key FROM model_dim",
        {"model_oid": pl.String, "content_digest": pl.Int64, "model_key": pl.Int64},
    )
    found = (
        dims.lazy()
        .select("model_oid", "content_digest")
        .join(known.lazy(), on=["model_oid", "content_digest"], how="left", maintain_order="left")
        .select("model_key")
        .collect(engine="streaming")
        .to_series()
    )
    del known
    if found.len() != dims.height:
        # An SQLAlchemyError, which the upgrade reports as a WarehouseError (no import of it here).
        raise sa.exc.SQLAlchemyError(
            "model_dim holds some (model_oid, content_digest) twice, which only an edit outside "
            "hubshare makes: delete the duplicate with the higher model_key, then run again"
        )
    # Contents not seen before get the next keys, in the day's row order. Positions, not joins,
    # carry the keys to the rows: no copy of a day's dimension columns unless they are new.
    missing = found.is_null()
    first_key = _next_model_key(connection)
    keys = (
        pl.select(
            pl.when(missing)
            .then(first_key - 1 + missing.cast(pl.Int64).cum_sum())
            .otherwise(found)
            .alias("model_key")
        )
        .to_series()
        .cast(pl.Int64)
    )
    dims = dims.with_columns(keys)
    new = dims if missing.all() else dims.filter(missing)
    del dims
    _bulk_insert(
        connection,
        tables.model_dim,
        new.select([column.name for column in tables.model_dim.columns]),
    )
    _bulk_insert(
        connection,
        tables.model_origin,
        origin.join(new.select("model_oid", "model_key"), on="model_oid").select(
            [column.name for column in tables.model_origin.columns]
        ),
    )
    del new
    rows = fact.select(
        pl.lit(day).alias("snapshot_date"),
        keys,
        "downloads_30d",
        "downloads_all_time",
        "likes",
    ).sort("model_key")
    digest = _facts_sha256(rows)
    stored = connection.execute(
        sa.text(
            "SELECT r.facts_sha256 FROM published_run p JOIN etl_run r ON r.run_id = p.run_id "
            "WHERE p.snapshot_date = :day"
        ),
        {"day": day},
    ).scalar()
    if stored == digest:
        log.info("The per-model facts of %s are already stored: none written", day)
        return digest
    connection.execute(sa.text("DELETE FROM model_day WHERE snapshot_date = :day"), {"day": day})
    _ensure_month_partition(connection, tables.model_day, day)
    _bulk_insert(connection, tables.model_day, rows)
    return digest


def _model_dimension(fact: pl.DataFrame, origin: pl.DataFrame) -> pl.DataFrame:
    """Each model's dimension columns (in fact's row order) and `content_digest`: a 64-bit hash
    of them and of its origin rows (a wrapping sum of one hash per origin row, so their order
    does not matter). Should the live load code ever hash differently, each model gets one new
    dimension row once, never a wrong one: a row is reused only when its digest matches."""
    row_hash = (
        pl.struct("origin_org", "origin_bucket", "weight_num", "weight_den")
        .hash(seed=0x6F726967)
        .alias("origin_digest")
    )
    origin_digest = _digest_by_position(fact, origin, row_hash)
    if origin_digest is None:
        origin_digest = (
            fact.lazy()
            .select("model_oid")
            .join(
                origin.lazy()
                .select("model_oid", row_hash)
                .group_by("model_oid")
                .agg(pl.col("origin_digest").sum()),
                on="model_oid",
                how="left",
                maintain_order="left",
            )
            .collect()
            .get_column("origin_digest")
        )
    digest = (
        fact.lazy()
        .select(_DIMENSION_COLUMNS)
        .with_columns(origin_digest)
        .select(
            pl.struct(*_DIMENSION_COLUMNS, "origin_digest")
            .hash(seed=0x68756273)
            .reinterpret(signed=True)
            .alias("content_digest")
        )
        .collect(engine="streaming")
        .to_series()
    )
    return fact.select(_DIMENSION_COLUMNS).with_columns(digest)


def _digest_by_position(
    fact: pl.DataFrame, origin: pl.DataFrame, row_hash: pl.Expr
) -> pl.Series | None:
    """The per-model sum of `row_hash` in fact's row order, without a join, when origin's rows
    come in runs of one model each in the order of fact's models; None when they do not."""
    oid = origin.get_column("model_oid")
    starts = (oid != oid.shift(1)).fill_null(value=True)
    if int(starts.sum()) != fact.height or not oid.filter(starts).equals(fact["model_oid"]):
        return None
    return (
        origin.lazy()
        .select(starts.cum_sum().alias("run"), row_hash)
        .group_by("run", maintain_order=True)
        .agg(pl.col("origin_digest").sum())
        .collect()
        .get_column("origin_digest")
    )


def _read_frame(connection: sa.Connection, sql: str, schema: dict[str, Any]) -> pl.DataFrame:
    raw: Any = connection.connection.driver_connection
    cursor = raw.cursor()
    cursor.execute(sql)
    parts = [pl.DataFrame(schema=schema)]
    while rows := cursor.fetchmany(_COPY_CHUNK_ROWS):
        parts.append(pl.DataFrame(rows, schema=schema, orient="row"))
    return pl.concat(parts, rechunk=True)


def _bulk_insert(connection: sa.Connection, table: sa.Table, frame: pl.DataFrame) -> None:
    """Insert a frame inside the caller's transaction, through the driver's bulk path."""
    if frame.is_empty():
        return
    columns = frame.columns
    names = ", ".join(columns)
    raw: Any = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        # CSV written by polars and parsed by the server. An unquoted empty field is NULL.
        statement = f"COPY {table.name} ({names}) FROM STDIN (FORMAT csv)"
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for chunk in frame.iter_slices(_COPY_CHUNK_ROWS):
                copy.write(chunk.write_csv(include_header=False))
    elif connection.dialect.name == "sqlite":
        # SQLAlchemy's SQLite DateTime reads "YYYY-MM-DD HH:MM:SS.ffffff" (UTC here), Date
        # "YYYY-MM-DD".
        frame = frame.with_columns(
            pl.col(pl.Datetime).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S%.6f"),
            pl.col(pl.Date).dt.strftime("%Y-%m-%d"),
        )
        placeholders = ", ".join("?" for _ in columns)
        raw.cursor().executemany(
            f"INSERT INTO {table.name} ({names}) VALUES ({placeholders})", frame.iter_rows()
        )
    else:  # any other SQLAlchemy dialect: Core executemany
        connection.execute(table.insert(), frame.to_dicts())


def _ensure_month_partition(connection: sa.Connection, model_day: sa.Table, day: date) -> None:
    """PostgreSQL keeps model_day in one partition per month of snapshot dates."""
    if connection.dialect.name != "postgresql":
        return
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    name = f"model_day_{first:%Y_%m}"
    if connection.execute(sa.text("SELECT to_regclass(:name)"), {"name": name}).scalar():
        return
    connection.execute(
        sa.text(
            f"CREATE TABLE {name} PARTITION OF model_day "
            f"FOR VALUES FROM ('{first}') TO ('{following}')"
        )
    )
    # A BI tool lists partitions as tables: they carry model_day's descriptions.
    describe = f"model_day for snapshot dates in {first:%Y-%m} (a partition of model_day)"
    connection.execute(sa.text(f"COMMENT ON TABLE {name} IS {_sql_literal(describe)}"))
    for column in model_day.columns:
        comment = _sql_literal(str(column.comment))
        connection.execute(sa.text(f"COMMENT ON COLUMN {name}.{column.name} IS {comment}"))


def _sql_literal(value: str) -> str:
    """A string as an SQL literal, for DDL that takes no bind parameters (COMMENT ON)."""
    return "'" + value.replace("'", "''") + "'"


def _facts_sha256(model_day: pl.DataFrame) -> str:
    """SHA-256 of a date's per-model facts (model_key, counters), in model_key order."""
    ordered = model_day.select("model_key", "downloads_30d", "downloads_all_time", "likes").sort(
        "model_key"
    )
    digest = hashlib.sha256(",".join(ordered.columns).encode() + b"\n")
    for chunk in ordered.iter_slices(_COPY_CHUNK_ROWS):  # the CSV text, a block at a time
        digest.update(chunk.write_csv(include_header=False).encode())
    return digest.hexdigest()


def _next_model_key(connection: sa.Connection) -> int:
    return (
        int(connection.execute(sa.text("SELECT MAX(model_key) FROM model_dim")).scalar() or 0) + 1
    )


def downgrade() -> None:
    raise NotImplementedError(
        "0006 moved per-model facts to model_dim/model_day and summed org_share rows; "
        "restore a backup taken before `hubshare db upgrade` to go back"
    )
