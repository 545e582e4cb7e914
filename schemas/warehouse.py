"""Warehouse tables (sqlmodel) and BI views: the one place the warehouse schema is declared.

Column comments land in PostgreSQL's catalogue, so a BI tool shows them next to each column.
Facts carry the `run_id` that produced them; `published_run` says which run of each snapshot
date analysts should read, and the `published_*` views join that for them.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Double,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel


def _ts(comment: str, nullable: bool = False) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable, comment=comment)


def _c(
    type_: Any,
    comment: str,
    *,
    primary_key: bool = False,
    nullable: bool = True,
) -> Column[object]:
    return Column(
        type_, primary_key=primary_key, nullable=nullable and not primary_key, comment=comment
    )


class EtlRun(SQLModel, table=True):
    """One row per run of the daily pipeline for a snapshot date (published or rejected)."""

    __tablename__ = "etl_run"
    __table_args__ = (
        UniqueConstraint("snapshot_date", "version", name="uq_etl_run_snapshot_date_version"),
        {"comment": "Every run of the pipeline; version n of a snapshot date"},
    )

    run_id: str = Field(sa_column=_c(String(36), "UUID of the run", primary_key=True))
    snapshot_date: date = Field(
        index=True, sa_column_kwargs={"comment": "Date of the raw snapshot"}
    )
    version: int = Field(sa_column_kwargs={"comment": "1 for the first run of the date, then n+1"})
    status: str = Field(
        max_length=16,
        sa_column_kwargs={"comment": "published | rejected | failed | crashed"},
    )
    status_reason: str | None = Field(
        default=None, sa_column=_c(Text, "Why a run was rejected, failed or crashed")
    )
    flow_run_id: str | None = Field(
        default=None, max_length=36, sa_column_kwargs={"comment": "Prefect flow-run id"}
    )
    started_at: datetime = Field(sa_column=_ts("When the run started (UTC)"))
    finished_at: datetime = Field(sa_column=_ts("When the run was loaded or failed (UTC)"))
    code_version: str = Field(max_length=64, sa_column_kwargs={"comment": "hubshare version+git"})
    definition: str = Field(max_length=32, sa_column_kwargs={"comment": "Metric: downloads_30d"})
    # Null for a run that failed or crashed before it got that far.
    raw_sha256: str | None = Field(
        default=None, max_length=64, sa_column_kwargs={"comment": "SHA-256 of the raw snapshot"}
    )
    mapping_sha256: str | None = Field(
        default=None, max_length=64, sa_column_kwargs={"comment": "SHA-256 of org_country.csv"}
    )
    shares_sha256: str | None = Field(
        default=None,
        max_length=64,
        sa_column_kwargs={"comment": "SHA-256 of the share table text"},
    )
    facts_sha256: str | None = Field(
        default=None,
        max_length=64,
        sa_column_kwargs={
            "comment": "SHA-256 of the per-model facts a published run stored (model_day)"
        },
    )
    row_count: int | None = Field(
        default=None, sa_column_kwargs={"comment": "Public models in the snapshot"}
    )
    rows_listed: int | None = Field(
        default=None, sa_column_kwargs={"comment": "Rows the crawl listed"}
    )
    duplicates_dropped: int | None = Field(
        default=None, sa_column_kwargs={"comment": "Repeated _id rows dropped"}
    )
    private_dropped: int | None = Field(
        default=None, sa_column_kwargs={"comment": "Private models dropped"}
    )
    total_downloads: int | None = Field(
        default=None, sa_column=_c(BigInteger, "Population total of downloads_30d")
    )
    quality_failures: int = Field(sa_column_kwargs={"comment": "Failed quality checks"})
    parameters: str = Field(
        sa_column=_c(Text, "Run parameters and settings (JSON, no secrets)", nullable=False)
    )
    report: str = Field(sa_column=_c(Text, "Lineage and crawl report (JSON)", nullable=False))


class PublishedRun(SQLModel, table=True):
    """The published pointer: the run analysts read for each snapshot date."""

    __tablename__ = "published_run"
    __table_args__ = ({"comment": "Which run is published for each snapshot date"},)

    snapshot_date: date = Field(primary_key=True)
    run_id: str = Field(foreign_key="etl_run.run_id", max_length=36, unique=True)
    published_at: datetime = Field(sa_column=_ts("When the pointer moved to this run"))


class ModelDim(SQLModel, table=True):
    """The model dimension: one row per distinct content of a model (its Hub attributes and its
    attribution in both views). A model whose content does not change keeps one row for years;
    daily facts refer to it by `model_key`."""

    __tablename__ = "model_dim"
    __table_args__ = (
        {"comment": "One row per distinct content of a model; model_day refers to it"},
    )

    model_key: int = Field(
        sa_column=Column(
            Integer,
            primary_key=True,
            autoincrement=False,
            comment="Surrogate key of this content of the model",
        )
    )
    model_oid: str = Field(
        max_length=24, sa_column_kwargs={"comment": "Hub _id (stable across renames)"}
    )
    content_digest: int = Field(
        sa_column=_c(
            BigInteger,
            "64-bit digest of every other column and the model's origin rows (how a day finds "
            "the row it shares with earlier days)",
            nullable=False,
        )
    )
    model_id: str = Field(max_length=256, sa_column_kwargs={"comment": "Hub repo id"})
    uploader: str = Field(max_length=128, sa_column_kwargs={"comment": "Namespace that uploaded"})
    created_at: datetime | None = Field(default=None, sa_column=_ts("Hub createdAt", True))
    last_modified: datetime | None = Field(default=None, sa_column=_ts("Hub lastModified", True))
    pipeline_tag: str | None = Field(default=None, max_length=64)
    library_name: str | None = Field(default=None, max_length=64)
    gated: str | None = Field(
        default=None, max_length=8, sa_column_kwargs={"comment": "false | auto | manual"}
    )
    base_relation: str | None = Field(
        default=None, max_length=64, sa_column_kwargs={"comment": "Declared base relation"}
    )
    base_models: str | None = Field(default=None, sa_column=_c(Text, "Declared base ids"))
    uploader_bucket: str = Field(
        max_length=8, sa_column_kwargs={"comment": "Uploader view: alpha-2|INTL|UNKNOWN"}
    )


class ModelDay(SQLModel, table=True):
    """The narrow daily fact: a model's counters on a snapshot date, for the published run of
    that date only (a superseded run's facts are reproducible from its raw snapshot)."""

    __tablename__ = "model_day"
    __table_args__ = (
        {
            "comment": "Per-model counters of each published snapshot date",
            # Each month is its own partition (created by the load that first needs it), so a
            # year of days can be detached, archived or dropped a month at a time.
            "postgresql_partition_by": "RANGE (snapshot_date)",
            "sqlite_with_rowid": False,
        },
    )

    snapshot_date: date = Field(primary_key=True)
    model_key: int = Field(
        sa_column=Column(
            Integer,
            primary_key=True,
            autoincrement=False,
            comment="The model's content that day (model_dim.model_key)",
        )
    )
    downloads_30d: int = Field(
        sa_column=_c(BigInteger, "Hub downloads, trailing 30 days", nullable=False)
    )
    downloads_all_time: int | None = Field(
        default=None, sa_column=_c(BigInteger, "Hub downloadsAllTime")
    )
    likes: int | None = Field(default=None)


class ModelOrigin(SQLModel, table=True):
    """Origin view per model content: the organisations behind its weights and their weight."""

    __tablename__ = "model_origin"
    __table_args__ = (
        {
            "comment": "Origin attribution of each model_dim row; weights of a model sum to 1",
            "sqlite_with_rowid": False,
        },
    )

    model_key: int = Field(
        sa_column=Column(
            Integer,
            primary_key=True,
            autoincrement=False,
            comment="The model's content (model_dim.model_key)",
        )
    )
    origin_org: str = Field(primary_key=True, max_length=128)
    origin_bucket: str = Field(max_length=8)
    weight: float = Field(sa_column=_c(Double, "Share of the model's downloads", nullable=False))
    weight_num: int = Field(sa_column_kwargs={"comment": "Exact weight numerator"})
    weight_den: int = Field(sa_column_kwargs={"comment": "Exact weight denominator"})


class CountryShare(SQLModel, table=True):
    """Share of downloads per bucket (country, INTL, UNKNOWN), definition and view."""

    __tablename__ = "country_share"
    __table_args__ = ({"comment": "Bucket shares per run, definition, cohort and view"},)

    run_id: str = Field(foreign_key="etl_run.run_id", primary_key=True, max_length=36)
    definition: str = Field(
        primary_key=True,
        max_length=32,
        sa_column_kwargs={"comment": "downloads_30d | window_7d | window_30d | window_365d"},
    )
    cohort: str = Field(
        primary_key=True, max_length=16, sa_column_kwargs={"comment": "all | first_year"}
    )
    attribution: str = Field(
        primary_key=True, max_length=16, sa_column_kwargs={"comment": "uploader | origin"}
    )
    bucket: str = Field(
        primary_key=True, max_length=8, sa_column_kwargs={"comment": "ISO alpha-2 | INTL | UNKNOWN"}
    )
    downloads: int = Field(
        sa_column=_c(BigInteger, "Downloads in the bucket under the definition", nullable=False)
    )
    share: float = Field(sa_column=_c(Double, "downloads / population total", nullable=False))
    share_low: float | None = Field(
        default=None,
        sa_column=_c(
            Double, "Lowest share over the contested rows' answers (country or alt_country)"
        ),
    )
    share_high: float | None = Field(
        default=None,
        sa_column=_c(
            Double,
            "Highest share over the contested rows' answers, counting every UNKNOWN download "
            "as possibly this bucket's",
        ),
    )
    downloads_by_default: int | None = Field(
        default=None,
        sa_column=_c(
            BigInteger,
            "Downloads of the bucket decided by a namespace with no reviewed mapping row (the "
            "account-type default); NULL for runs before it was computed",
        ),
    )


class OrgShare(SQLModel, table=True):
    """Share of downloads per organisation (namespace), definition and view."""

    __tablename__ = "org_share"
    __table_args__ = (
        {
            "comment": "Organisation shares per run, definition, cohort and view: each "
            "organisation with a country (or INTL), and one row '(namespaces with no country)' "
            "summing the UNKNOWN ones"
        },
    )

    run_id: str = Field(foreign_key="etl_run.run_id", primary_key=True, max_length=36)
    definition: str = Field(primary_key=True, max_length=32)
    cohort: str = Field(primary_key=True, max_length=16)
    attribution: str = Field(primary_key=True, max_length=16)
    org: str = Field(primary_key=True, max_length=128)
    bucket: str = Field(max_length=8)
    downloads: int = Field(
        sa_column=_c(BigInteger, "Downloads under the definition", nullable=False)
    )
    share: float = Field(sa_column=_c(Double, "downloads / population total", nullable=False))


class Concentration(SQLModel, table=True):
    """How concentrated downloads are over organisations (the study's measures)."""

    __tablename__ = "concentration"
    __table_args__ = ({"comment": "HHI, Gini and top-10 share over organisations"},)

    run_id: str = Field(foreign_key="etl_run.run_id", primary_key=True, max_length=36)
    definition: str = Field(primary_key=True, max_length=32)
    cohort: str = Field(primary_key=True, max_length=16)
    attribution: str = Field(primary_key=True, max_length=16)
    orgs: int = Field(sa_column_kwargs={"comment": "Organisations in the population"})
    hhi: float = Field(sa_column=_c(Double, "Herfindahl-Hirschman index, 0-10,000", nullable=False))
    gini: float = Field(sa_column=_c(Double, "Gini of organisation downloads", nullable=False))
    top10_share: float = Field(
        sa_column=_c(Double, "Share of the 10 largest organisations", nullable=False)
    )


class ReviewQueue(SQLModel, table=True):
    """The namespaces a maintainer should review next: each published run's uploaders without a
    reviewed row in the mapping, or mapped UNKNOWN, with what they carry."""

    __tablename__ = "review_queue"
    __table_args__ = (
        {
            "comment": "Review queue per published run: namespaces without a reviewed mapping "
            "row, or mapped UNKNOWN, ranked by downloads"
        },
    )

    run_id: str = Field(foreign_key="etl_run.run_id", primary_key=True, max_length=36)
    namespace: str = Field(
        primary_key=True,
        max_length=128,
        sa_column_kwargs={"comment": "Hub namespace that uploaded, as the snapshot spells it"},
    )
    account_type: str | None = Field(
        default=None,
        max_length=16,
        sa_column_kwargs={"comment": "user | org | vanished (as the Hub said); null: not typed"},
    )
    fullname: str | None = Field(
        default=None, sa_column=_c(Text, "The Hub's display name of the namespace, when known")
    )
    downloads: int = Field(
        sa_column=_c(BigInteger, "downloads_30d of the models it uploaded", nullable=False)
    )
    share: float = Field(sa_column=_c(Double, "downloads / population total", nullable=False))
    models: int = Field(sa_column_kwargs={"comment": "Public models it uploaded"})
    first_seen: date = Field(
        sa_column=Column(
            Date,
            nullable=False,
            comment="Earliest published snapshot date in which it uploaded a model",
        )
    )


class QualityResult(SQLModel, table=True):
    """Each quality-gate check of a run: why a run was published or rejected."""

    __tablename__ = "quality_result"
    __table_args__ = ({"comment": "Quality gate results per run"},)

    run_id: str = Field(foreign_key="etl_run.run_id", primary_key=True, max_length=36)
    check_no: int = Field(primary_key=True)
    suite: str = Field(max_length=64)
    expectation: str = Field(max_length=128)
    column_name: str | None = Field(default=None, max_length=64)
    success: bool
    observed: str = Field(sa_column=_c(Text, "Observed value", nullable=False))
    expected: str = Field(sa_column=_c(Text, "Bound the check enforces", nullable=False))


#: Comments of the columns that several tables share, applied where a column has none of its own,
#: so that every column a BI tool shows is described.
SHARED_COLUMN_COMMENTS: dict[str, str] = {
    "run_id": "Run that produced the row (etl_run.run_id)",
    "snapshot_date": "Date of the raw snapshot",
    "definition": "downloads_30d | window_7d | window_30d | window_365d",
    "cohort": "all | first_year",
    "attribution": "uploader | origin",
    "bucket": "ISO alpha-2 | INTL | UNKNOWN",
    "org": "Hub namespace (organisation or person), as the mapping or the Hub spells it",
    "model_oid": "Hub _id (stable across renames)",
    "likes": "Hub likes",
    "pipeline_tag": "Hub pipeline tag (task), when declared",
    "library_name": "Hub library name, when declared",
    "origin_org": "Organisation the model's downloads go to in the origin view",
    "origin_bucket": "Origin view: alpha-2 | INTL | UNKNOWN",
    "check_no": "Order of the check in the gate",
    "suite": "Expectation suite (schemas/expectations/) and the frame it ran on",
    "expectation": "great_expectations expectation type",
    "column_name": "Column the check reads (null for table-level checks)",
    "success": "Whether the check passed",
}


def _describe_shared_columns() -> None:
    for table in SQLModel.metadata.tables.values():
        for column in table.columns:
            if not column.comment and column.name in SHARED_COLUMN_COMMENTS:
                column.comment = SHARED_COLUMN_COMMENTS[column.name]
    published_run = SQLModel.metadata.tables["published_run"]
    published_run.c.run_id.comment = "The run analysts read for this date (etl_run.run_id)"


_describe_shared_columns()


#: BI views: the published run of each date, with its date and version next to the figures.
VIEWS: dict[str, str] = {
    "published_country_share": """
        SELECT r.snapshot_date, r.version, r.run_id, s.definition, s.cohort, s.attribution,
               s.bucket AS country, s.downloads, s.downloads_by_default, s.share, s.share_low,
               s.share_high
        FROM country_share s
        JOIN published_run p ON p.run_id = s.run_id
        JOIN etl_run r ON r.run_id = s.run_id""",
    "published_org_share": """
        SELECT r.snapshot_date, r.version, r.run_id, s.definition, s.cohort, s.attribution,
               s.org, s.bucket AS country, s.downloads, s.share
        FROM org_share s
        JOIN published_run p ON p.run_id = s.run_id
        JOIN etl_run r ON r.run_id = s.run_id""",
    "published_model_fact": """
        SELECT r.snapshot_date, r.version, r.run_id, d.model_oid, d.model_id, d.uploader,
               f.downloads_30d, f.downloads_all_time, f.likes, d.created_at, d.last_modified,
               d.pipeline_tag, d.library_name, d.gated, d.base_relation, d.base_models,
               d.uploader_bucket
        FROM model_day f
        JOIN model_dim d ON d.model_key = f.model_key
        JOIN published_run p ON p.snapshot_date = f.snapshot_date
        JOIN etl_run r ON r.run_id = p.run_id""",
    "published_concentration": """
        SELECT r.snapshot_date, r.version, r.run_id, c.definition, c.cohort, c.attribution,
               c.orgs, c.hhi, c.gini, c.top10_share
        FROM concentration c
        JOIN published_run p ON p.run_id = c.run_id
        JOIN etl_run r ON r.run_id = c.run_id""",
    "run_history": """
        SELECT r.run_id, r.snapshot_date, r.version, r.status, r.status_reason,
               CASE WHEN p.run_id IS NULL THEN 0 ELSE 1 END AS published,
               r.raw_sha256, r.mapping_sha256, r.shares_sha256, r.code_version, r.row_count,
               r.total_downloads, r.quality_failures, r.flow_run_id, r.started_at, r.finished_at
        FROM etl_run r
        LEFT JOIN published_run p ON p.run_id = r.run_id""",
    "published_review_queue": """
        SELECT r.snapshot_date, r.version, r.run_id, q.namespace, q.account_type, q.fullname,
               q.downloads, q.share, q.models, q.first_seen
        FROM review_queue q
        JOIN published_run p ON p.run_id = q.run_id
        JOIN etl_run r ON r.run_id = q.run_id""",
    "latest_country_share": """
        SELECT r.snapshot_date, r.version, r.run_id, s.definition, s.cohort, s.attribution,
               s.bucket AS country, s.downloads, s.downloads_by_default, s.share, s.share_low,
               s.share_high
        FROM country_share s
        JOIN published_run p ON p.run_id = s.run_id
        JOIN etl_run r ON r.run_id = s.run_id
        WHERE p.snapshot_date = (SELECT MAX(snapshot_date) FROM published_run)""",
}

VIEW_COMMENTS: dict[str, str] = {
    "published_country_share": "Bucket (country, INTL, UNKNOWN) shares of the published run of "
    "each snapshot date, per definition, cohort and view, with their range",
    "published_org_share": "Organisation shares of the published run of each snapshot date "
    "(namespaces with no country are one row per definition, cohort and view)",
    "published_model_fact": "Per-model facts of the published run of each snapshot date "
    "(model_day joined to model_dim)",
    "published_concentration": "HHI, Gini and top-10 share over organisations of the published "
    "run of each snapshot date",
    "published_review_queue": "The review queue of the published run of each snapshot date: "
    "namespaces without a reviewed mapping row, or mapped UNKNOWN, with their downloads",
    "latest_country_share": "published_country_share for the latest published snapshot date",
    "run_history": "Every run (published, rejected, failed or crashed), with its checksums and "
    "whether it is the published run of its date",
}

#: Comments of view columns that are not a table column of the same name.
VIEW_COLUMN_COMMENTS: dict[str, str] = {
    "country": "ISO alpha-2 | INTL | UNKNOWN (the bucket)",
    "published": "1 if this run is the published run of its date, else 0",
    "version": "1 for the first run of the date, then n+1",
}


def view_column_comment(column: str) -> str | None:
    """A view column's comment: its own, or that of the table column it shows."""
    if column in VIEW_COLUMN_COMMENTS:
        return VIEW_COLUMN_COMMENTS[column]
    for table in (
        "country_share",
        "org_share",
        "concentration",
        "model_dim",
        "model_day",
        "review_queue",
        "etl_run",
    ):
        found = SQLModel.metadata.tables[table].c.get(column)
        if found is not None and found.comment:
            return str(found.comment)
    return None


def view_comment(name: str) -> str:
    return VIEW_COMMENTS[name]


#: The frames a published run loads (the per-model frames `model_fact` and `model_origin` go to
#: model_dim, model_origin and model_day).
FACT_TABLES = (
    "model_fact",
    "model_origin",
    "country_share",
    "org_share",
    "concentration",
    "review_queue",
)


class ViewDefinition(SQLModel, table=True):
    """Internal bookkeeping: the definition each BI view was last created from, so that an
    upgrade replaces exactly the views whose definition changed."""

    __tablename__ = "view_definition"
    __table_args__ = ({"comment": "Internal: which definition each BI view was last created from"},)

    view_name: str = Field(primary_key=True, max_length=64, sa_column_kwargs={"comment": "BI view"})
    definition_sha256: str = Field(
        max_length=64,
        sa_column_kwargs={"comment": "SHA-256 of the SELECT the view was created from"},
    )


#: model_day's monthly partitions on PostgreSQL (created by loads, not declared here).
MONTH_PARTITION = re.compile(r"model_day_\d{4}_\d{2}")


def include_object(
    item: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """For alembic's comparisons: model_day's partitions are part of model_day, not tables of
    their own to drop."""
    return not (type_ == "table" and reflected and MONTH_PARTITION.fullmatch(name or ""))


def metadata() -> MetaData:
    """Every table of the warehouse (what alembic migrations must reproduce)."""
    return SQLModel.metadata


class ReaderRole(SQLModel, table=True):
    """Roles `hubshare db grant-reader` made readers; their grants are renewed whenever views are
    recreated."""

    __tablename__ = "reader_role"
    __table_args__ = ({"comment": "Internal: PostgreSQL roles that may read the BI views"},)

    role_name: str = Field(primary_key=True, max_length=63, sa_column_kwargs={"comment": "Role"})
    granted_at: datetime = Field(sa_column=_ts("When the role was last granted"))
