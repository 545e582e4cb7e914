"""The warehouse: one cached engine per URL and every query the pipeline runs against it, written
with SQLAlchemy Core on the tables of `schemas/warehouse.py` (rows are read by column name).

Dates are typed here once: the tables' Date/DateTime columns, and the typed `Table`s of the BI
views below, make SQLite's date text and PostgreSQL's dates the same Python `date`/`datetime`.
Reads never migrate: `require_current` refuses a warehouse that is missing or behind, and the
writers (`tasks.migrate.upgrade_warehouse`) bring it to this code's schema before writing.
What Core cannot say well stays SQL text, in this module: COPY, partitions, COMMENT ON and
advisory locks.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    Engine,
    Integer,
    MetaData,
    Result,
    RowMapping,
    Select,
    String,
    Table,
    TypeDecorator,
    create_engine,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from hubshare.errors import WarehouseError
from hubshare.provenance import public_url
from hubshare.resources import package_path
from schemas.warehouse import metadata

# --- engine -------------------------------------------------------------------------------------


def warehouse_engine(url: str) -> Engine:
    """The engine of a warehouse URL: one per URL and process (a forked worker gets its own, never
    its parent's pooled connections)."""
    return _engine(url, os.getpid())


@cache
def _engine(url: str, pid: int) -> Engine:
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            # A SQLite connection is a file open: pooling saves nothing, and a pooled one would
            # outlive a warehouse file replaced under it.
            return create_engine(parsed, poolclass=NullPool)
        # No cap on connections (as when each caller built its own engine): concurrent runs of
        # a backfill never wait on the pool.
        return create_engine(parsed, pool_pre_ping=True, max_overflow=-1)
    except (SQLAlchemyError, ImportError, ValueError) as err:
        raise WarehouseError(f"HUBSHARE_WAREHOUSE_URL: cannot use {redact(url)} ({err})") from None


def redact(url: str) -> str:
    """A URL as errors and logs may show it: no password, no secret query parameter."""
    return public_url(url)


def redacted(engine: Engine) -> str:
    """The engine's URL as errors and logs may show it (`redact`)."""
    return public_url(engine.url.render_as_string(hide_password=False))


def first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def sql_literal(value: str) -> str:
    """A string as an SQL literal, for DDL that takes no bind parameters (COMMENT ON)."""
    return "'" + value.replace("'", "''") + "'"


# --- schema revision ----------------------------------------------------------------------------

MIGRATIONS = package_path("schemas", "migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def require_current(engine: Engine) -> None:
    """Refuse to read a warehouse that does not exist or is not at this code's revision; never
    creates or changes anything."""
    where = redacted(engine)
    database = engine.url.database
    on_disk = engine.dialect.name == "sqlite" and database and database != ":memory:"
    if on_disk and not Path(str(database)).exists():
        raise WarehouseError(
            f"no warehouse at {where}: run `hubshare run` (or `hubshare db upgrade`) first"
        )
    try:
        with engine.connect() as connection:
            revision = current_revision(connection)
            has_runs = inspect(connection).has_table("etl_run")
    except SQLAlchemyError as err:
        raise WarehouseError(f"warehouse {where}: {first_line(err)}") from None
    if revision == head_revision():
        return
    if revision is None and not has_runs:
        raise WarehouseError(
            f"warehouse {where} is empty: run `hubshare run` (or `hubshare db upgrade`) first"
        )
    raise WarehouseError(
        f"warehouse {where} is at schema revision {revision or 'of hubshare 0.1.0'}, this "
        f"hubshare reads {head_revision()}: run `hubshare db upgrade`"
    )


# --- tables and typed views ---------------------------------------------------------------------

TABLES = metadata().tables
ETL_RUN = TABLES["etl_run"]
PUBLISHED_RUN = TABLES["published_run"]
MODEL_DIM = TABLES["model_dim"]
MODEL_DAY = TABLES["model_day"]
COUNTRY_SHARE = TABLES["country_share"]
ORG_SHARE = TABLES["org_share"]
QUALITY_RESULT = TABLES["quality_result"]
REVIEW_QUEUE = TABLES["review_queue"]


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp read as an aware UTC datetime on both backends (SQLite keeps naive UTC text,
    PostgreSQL answers in the session's time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _view_column(name: str) -> Column[Any]:
    """A view column typed like the table column it shows."""
    if name in ("started_at", "finished_at", "created_at"):
        return Column(name, UtcDateTime())
    if name == "country":
        return Column(name, String())
    if name == "published":
        return Column(name, Integer())
    for table in (ETL_RUN, COUNTRY_SHARE, ORG_SHARE, REVIEW_QUEUE):
        if name in table.c:
            return Column(name, table.c[name].type)
    raise KeyError(name)


_VIEWS = MetaData()


def _view(name: str, *columns: str) -> Table:
    return Table(name, _VIEWS, *(_view_column(column) for column in columns))


#: The BI views the read commands use (a reader role may read nothing else).
PUBLISHED_COUNTRY_SHARE = _view(
    "published_country_share",
    "snapshot_date",
    "version",
    "run_id",
    "definition",
    "cohort",
    "attribution",
    "country",
    "downloads",
    "downloads_by_default",
    "share",
    "share_low",
    "share_high",
)
RUN_COLUMNS = (
    "run_id",
    "snapshot_date",
    "version",
    "status",
    "published",
    "raw_sha256",
    "mapping_sha256",
    "shares_sha256",
    "code_version",
    "row_count",
    "total_downloads",
    "quality_failures",
    "status_reason",
    "flow_run_id",
    "started_at",
    "finished_at",
)
RUN_HISTORY = _view("run_history", *RUN_COLUMNS)
#: Only what says whether a published date's models carry their creation date.
PUBLISHED_MODEL_CREATED = _view("published_model_fact", "snapshot_date", "created_at")
PUBLISHED_REVIEW_QUEUE = _view(
    "published_review_queue",
    "snapshot_date",
    "version",
    "run_id",
    *(column.name for column in REVIEW_QUEUE.columns if column.name != "run_id"),
)


def _frame(result: Result[Any], schema: dict[str, Any] | None = None) -> pl.DataFrame:
    """A query's rows as a frame, columns named as the query names them."""
    columns: Any = schema or list(result.keys())
    return pl.DataFrame([tuple(row) for row in result.all()], schema=columns, orient="row")


def _read(engine: Engine, query: Select[Any], schema: dict[str, Any] | None = None) -> pl.DataFrame:
    require_current(engine)
    with engine.connect() as connection:
        return _frame(connection.execute(query), schema)


# --- reads: published figures and run history ---------------------------------------------------


def published_country_shares(
    engine: Engine, snapshot_date: date | None, attribution: str, definition: str, cohort: str
) -> pl.DataFrame:
    """The published bucket shares of a date (the latest published date when None), largest
    first: the columns of `published_country_share`."""
    view = PUBLISHED_COUNTRY_SHARE
    # The latest date over the whole view, not over the rows the outer query filters.
    latest = select(func.max(view.c.snapshot_date)).correlate(None).scalar_subquery()
    day = snapshot_date if snapshot_date else latest
    return _read(
        engine,
        select(view)
        .where(
            view.c.attribution == attribution,
            view.c.definition == definition,
            view.c.cohort == cohort,
            view.c.snapshot_date == day,
        )
        .order_by(view.c.downloads.desc(), view.c.country),
    )


def published_dates_of(
    engine: Engine, attribution: str, definition: str, cohort: str
) -> list[date]:
    """The published dates that hold shares under a definition and cohort, oldest first."""
    view = PUBLISHED_COUNTRY_SHARE
    query = (
        select(view.c.snapshot_date)
        .distinct()
        .where(
            view.c.attribution == attribution,
            view.c.definition == definition,
            view.c.cohort == cohort,
        )
        .order_by(view.c.snapshot_date)
    )
    require_current(engine)
    with engine.connect() as connection:
        return list(connection.execute(query).scalars())


def models_with_created_at(engine: Engine, snapshot_date: date) -> tuple[int, int]:
    """(models, models with a createdAt) of the run published for a date."""
    view = PUBLISHED_MODEL_CREATED
    query = select(func.count(), func.count(view.c.created_at)).where(
        view.c.snapshot_date == snapshot_date
    )
    require_current(engine)
    with engine.connect() as connection:
        models, created = connection.execute(query).one()
    return int(models), int(created)


def run_history(engine: Engine, snapshot_date: date | None) -> pl.DataFrame:
    """Every run (of one date, or of all), in date and version order: RUN_COLUMNS."""
    query = select(RUN_HISTORY).order_by(RUN_HISTORY.c.snapshot_date, RUN_HISTORY.c.version)
    if snapshot_date:
        query = query.where(RUN_HISTORY.c.snapshot_date == snapshot_date)
    return _read(engine, query)


def run_ids_starting_with(engine: Engine, prefix: str) -> list[str]:
    require_current(engine)
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(RUN_HISTORY.c.run_id)
                .where(RUN_HISTORY.c.run_id.like(prefix + "%"))
                .order_by(RUN_HISTORY.c.run_id)
            ).scalars()
        )


def report_shares(engine: Engine, start: date | None, end: date | None) -> pl.DataFrame:
    """The headline shares (downloads_30d, all models) of each published date in [start, end]:
    snapshot_date, attribution, country, downloads, share, low, high."""
    view = PUBLISHED_COUNTRY_SHARE
    query = (
        select(
            view.c.snapshot_date,
            view.c.attribution,
            view.c.country,
            view.c.downloads,
            view.c.share,
            view.c.share_low.label("low"),
            view.c.share_high.label("high"),
        )
        .where(view.c.definition == "downloads_30d", view.c.cohort == "all")
        .order_by(view.c.snapshot_date, view.c.attribution, view.c.country)
    )
    if start is not None:
        query = query.where(view.c.snapshot_date >= start)
    if end is not None:
        query = query.where(view.c.snapshot_date <= end)
    schema = {
        "snapshot_date": pl.Date,
        "attribution": pl.String,
        "country": pl.String,
        "downloads": pl.Int64,
        "share": pl.Float64,
        "low": pl.Float64,
        "high": pl.Float64,
    }
    return _read(engine, query, schema)


def published_run_history(engine: Engine, columns: Sequence[str]) -> pl.DataFrame:
    """`columns` of run_history for the published run of each date, in date order."""
    return _read(
        engine,
        select(*(RUN_HISTORY.c[name] for name in columns))
        .where(RUN_HISTORY.c.published == 1)
        .order_by(RUN_HISTORY.c.snapshot_date),
    )


def published_review_queue(engine: Engine, snapshot_date: date, top: int | None) -> pl.DataFrame:
    """The review queue of the run published for `snapshot_date`, largest first (its `top`
    rows when given): the columns of `published_review_queue`."""
    view = PUBLISHED_REVIEW_QUEUE
    query = (
        select(view)
        .where(view.c.snapshot_date == snapshot_date)
        .order_by(view.c.downloads.desc(), view.c.namespace)
    )
    if top is not None:
        query = query.limit(top)
    return _read(engine, query, {column.name: _POLARS_OF[column.name] for column in view.columns})


#: The frame types of `published_review_queue` (an empty answer keeps them).
_POLARS_OF: dict[str, Any] = {
    "snapshot_date": pl.Date,
    "version": pl.Int64,
    "run_id": pl.String,
    "namespace": pl.String,
    "account_type": pl.String,
    "fullname": pl.String,
    "downloads": pl.Int64,
    "share": pl.Float64,
    "models": pl.Int64,
    "first_seen": pl.Date,
}


def published_snapshot_date(engine: Engine, snapshot_date: date | None) -> date | None:
    """`snapshot_date` if a run is published for it (the latest published date when None), else
    None. Through the run_history view: a reader role may read nothing else."""
    view = RUN_HISTORY
    query = select(func.max(view.c.snapshot_date)).where(view.c.published == 1)
    if snapshot_date is not None:
        query = query.where(view.c.snapshot_date == snapshot_date)
    require_current(engine)
    with engine.connect() as connection:
        found: date | None = connection.execute(query).scalar()
    return found


# --- reads: what the pipeline needs of earlier runs ---------------------------------------------


def first_seen_dates(engine: Engine, up_to: date) -> pl.DataFrame:
    """(namespace_lower, first_seen): the earliest published snapshot date, up to `up_to`, in
    which each namespace (lower-cased: the Hub is case-insensitive) uploaded a model. model_day
    holds the published run of each date only."""
    namespace = func.lower(MODEL_DIM.c.uploader)
    return _read(
        engine,
        select(
            namespace.label("namespace_lower"),
            func.min(MODEL_DAY.c.snapshot_date).label("first_seen"),
        )
        .select_from(MODEL_DAY)
        .join(MODEL_DIM, MODEL_DIM.c.model_key == MODEL_DAY.c.model_key)
        .where(MODEL_DAY.c.snapshot_date <= up_to)
        .group_by(namespace),
        {"namespace_lower": pl.String, "first_seen": pl.Date},
    )


def previous_row_count(engine: Engine, snapshot_date: date) -> int | None:
    """Row count of the latest published snapshot on or before `snapshot_date`."""
    require_current(engine)
    with engine.connect() as connection:
        count = connection.execute(
            select(ETL_RUN.c.row_count)
            .join(PUBLISHED_RUN, PUBLISHED_RUN.c.run_id == ETL_RUN.c.run_id)
            .where(PUBLISHED_RUN.c.snapshot_date <= snapshot_date)
            .order_by(PUBLISHED_RUN.c.snapshot_date.desc())
            .limit(1)
        ).scalar()
    return None if count is None else int(count)


def published_run_of(engine: Engine, day: date) -> RowMapping | None:
    """run_id and recorded inputs (snapshot_date, raw_sha256, mapping_sha256, parameters) of the
    run published for `day`, None when there is none."""
    with engine.connect() as connection:
        return (
            connection.execute(
                select(
                    ETL_RUN.c.run_id,
                    ETL_RUN.c.snapshot_date,
                    ETL_RUN.c.raw_sha256,
                    ETL_RUN.c.mapping_sha256,
                    ETL_RUN.c.parameters,
                )
                .join(PUBLISHED_RUN, PUBLISHED_RUN.c.run_id == ETL_RUN.c.run_id)
                .where(PUBLISHED_RUN.c.snapshot_date == day)
            )
            .mappings()
            .first()
        )


def previous_published_date(engine: Engine, day: date) -> date | None:
    """The latest published date before `day`."""
    with engine.connect() as connection:
        found: date | None = connection.execute(
            select(func.max(PUBLISHED_RUN.c.snapshot_date)).where(
                PUBLISHED_RUN.c.snapshot_date < day
            )
        ).scalar()
    return found


def published_orgs(engine: Engine, run_id: str, definition: str) -> pl.DataFrame:
    """(attribution, org, bucket, downloads) of a run's organisation shares under `definition`
    over all models."""
    with engine.connect() as connection:
        return _frame(
            connection.execute(
                select(
                    ORG_SHARE.c.attribution,
                    ORG_SHARE.c.org,
                    ORG_SHARE.c.bucket,
                    ORG_SHARE.c.downloads,
                ).where(
                    ORG_SHARE.c.run_id == run_id,
                    ORG_SHARE.c.definition == definition,
                    ORG_SHARE.c.cohort == "all",
                )
            ),
            {
                "attribution": pl.String,
                "org": pl.String,
                "bucket": pl.String,
                "downloads": pl.Int64,
            },
        )


def run_row(engine: Engine, run_id: str) -> RowMapping | None:
    """A run's etl_run row (every column, by name), None when there is no such run."""
    require_current(engine)
    with engine.connect() as connection:
        return (
            connection.execute(select(ETL_RUN).where(ETL_RUN.c.run_id == run_id)).mappings().first()
        )


@dataclass(frozen=True)
class StoredFigures:
    """What the warehouse holds of one run: its country_share rows, the per-model facts of its
    date when it is the published run, and whether it is."""

    country_share: pl.DataFrame  # definition, cohort, attribution, bucket, downloads
    facts: pl.DataFrame  # model_oid, uploader, uploader_bucket, downloads_30d
    published: bool


def stored_figures(engine: Engine, run_id: str) -> StoredFigures:
    share = COUNTRY_SHARE
    with engine.connect() as connection:
        shares = _frame(
            connection.execute(
                select(
                    share.c.definition,
                    share.c.cohort,
                    share.c.attribution,
                    share.c.bucket,
                    share.c.downloads,
                ).where(share.c.run_id == run_id)
            )
        )
        # model_day holds the facts of the run each date publishes now; a superseded run's
        # facts were not kept.
        facts = _frame(
            connection.execute(
                select(
                    MODEL_DIM.c.model_oid,
                    MODEL_DIM.c.uploader,
                    MODEL_DIM.c.uploader_bucket,
                    MODEL_DAY.c.downloads_30d,
                )
                .select_from(MODEL_DAY)
                .join(MODEL_DIM, MODEL_DIM.c.model_key == MODEL_DAY.c.model_key)
                .join(PUBLISHED_RUN, PUBLISHED_RUN.c.snapshot_date == MODEL_DAY.c.snapshot_date)
                .where(PUBLISHED_RUN.c.run_id == run_id)
            )
        )
        published = (
            connection.execute(
                select(PUBLISHED_RUN.c.run_id).where(PUBLISHED_RUN.c.run_id == run_id)
            ).first()
            is not None
        )
    return StoredFigures(shares, facts, published)


def published_runs_between(engine: Engine, start: date, end: date) -> list[RowMapping]:
    """snapshot_date, raw_sha256, mapping_sha256, code_version and parameters of the published
    run of each date in [start, end]."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(
                    ETL_RUN.c.snapshot_date,
                    ETL_RUN.c.raw_sha256,
                    ETL_RUN.c.mapping_sha256,
                    ETL_RUN.c.code_version,
                    ETL_RUN.c.parameters,
                )
                .join(PUBLISHED_RUN, PUBLISHED_RUN.c.run_id == ETL_RUN.c.run_id)
                .where(ETL_RUN.c.snapshot_date.between(start, end))
            ).mappings()
        )


# --- writes -------------------------------------------------------------------------------------

#: Rows per CSV block sent to COPY (bounds the text held in memory at once).
COPY_CHUNK_ROWS = 200_000

#: Errors of the database drivers themselves: the bulk path writes through the raw driver
#: connection, so a full disk or a rejected value surfaces as these, not as SQLAlchemy's.
LOAD_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    sqlite3.Error,
    psycopg.Error,
    OSError,  # the stage file of a SQLite load (a full disk)
)

#: SQLite: frames of at least this many rows are staged (`_stages`) and copied in one statement;
#: smaller ones go through the driver's executemany.
STAGE_MIN_ROWS = 20_000

#: Rows per Arrow batch written to a stage (bounds the copy of the frame held at once).
STAGE_CHUNK_ROWS = 100_000

#: Stage files a frame of at least STAGE_SPLIT_MIN_ROWS rows is split into, written at once (one
#: per core of the CI machine): writing is most of a staged load (at 3M models, model_dim 3.4 s
#: of 5.3 s). Not more: a stage stays attached until the load's transaction ends, and SQLite
#: attaches at most 10 databases.
STAGE_PARTS = 2
STAGE_SPLIT_MIN_ROWS = 200_000

#: The schema name of an attached stage (a number follows it).
_STAGE_ALIAS = "hubshare_stage_"

#: Attempts at allocating a run's version when another writer of the same date got there first.
VERSION_ATTEMPTS = 8

#: Serialises writers of the model dimension on PostgreSQL (keys are allocated as max + 1).
_DIMENSION_LOCK = 0x4855_4449_4D00
#: Version numbering of one date is serialised on this key plus the date's ordinal.
_DATE_LOCK = 0x4855_0000_0000


#: Rows of a ScannedRows read at once (about one parquet row group): a slice of a stored file
#: decodes the row groups it overlaps.
SCAN_BLOCK_ROWS = 250_000


class ScannedRows:
    """Rows a bulk insert reads a block at a time: the columns of `scan` (a stored run file's, so
    that a day's models are never all in memory at once) beside those of `beside` (in memory,
    of the same height), in `columns`' order."""

    def __init__(self, scan: pl.LazyFrame, beside: pl.DataFrame, columns: Sequence[str]) -> None:
        self.scan, self.beside, self.columns = scan, beside, list(columns)

    @property
    def height(self) -> int:
        return self.beside.height

    def is_empty(self) -> bool:
        return self.height == 0

    def slice(self, offset: int, length: int) -> ScannedRows:
        return ScannedRows(
            self.scan.slice(offset, length), self.beside.slice(offset, length), self.columns
        )

    def collect(self) -> pl.DataFrame:
        read = self.scan.collect()
        if read.height != self.height:  # a horizontal concat would pad the shorter with nulls
            raise WarehouseError(
                f"a stored run file gave {read.height} rows where {self.height} were expected: "
                "it changed during the load; run the date again"
            )
        return pl.concat([read, self.beside], how="horizontal").select(self.columns)

    def iter_slices(self, n_rows: int) -> Iterator[pl.DataFrame]:
        """`n_rows` at a time, read a block of at least SCAN_BLOCK_ROWS at a time."""
        block = max(SCAN_BLOCK_ROWS, n_rows)
        for start in range(0, self.height, block):
            yield from self.slice(start, block).collect().iter_slices(n_rows)


#: What a bulk insert takes: rows in memory, or read from a stored file as they are written.
Rows = pl.DataFrame | ScannedRows


def in_memory(rows: Rows) -> pl.DataFrame:
    """`rows` as one frame (a ScannedRows read whole)."""
    return rows.collect() if isinstance(rows, ScannedRows) else rows


def bulk_insert(connection: Connection, table: Table, frame: Rows) -> None:
    """Insert a frame inside the caller's transaction, through the driver's bulk path."""
    bulk_insert_in_turn(connection, [(table, frame)])


def bulk_insert_in_turn(connection: Connection, loads: Sequence[tuple[Table, Rows]]) -> None:
    """`bulk_insert` of each (table, rows), in turn, inside the caller's transaction. On SQLite
    the stages of every large frame are written from the start (`_stages`), so that each is
    written while the ones before it are copied in."""
    loads = [(table, frame) for table, frame in loads if not frame.is_empty()]
    raw: Any = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        for table, frame in loads:
            # CSV written by polars (in Rust) and parsed by the server: about 3x faster than
            # COPY's row-by-row writer. An unquoted empty field is NULL, a quoted one "" is ''.
            statement = f"COPY {table.name} ({', '.join(frame.columns)}) FROM STDIN (FORMAT csv)"
            with raw.cursor() as cursor, cursor.copy(statement) as copy:
                for chunk in frame.iter_slices(COPY_CHUNK_ROWS):
                    copy.write(chunk.write_csv(include_header=False))
        return
    if connection.dialect.name != "sqlite":  # any other SQLAlchemy dialect: Core executemany
        for table, frame in loads:
            connection.execute(table.insert(), in_memory(frame).to_dicts())
        return
    # Large frames go to stage files from Arrow (in C, no Python object per value), then into
    # their table in one statement each of this transaction: about twice as fast.
    staged = [frame for _, frame in loads if frame.height >= STAGE_MIN_ROWS]
    with _stages(connection, staged) as next_stages:
        for table, frame in loads:
            names = ", ".join(frame.columns)
            if frame.height >= STAGE_MIN_ROWS:
                for stage in next_stages():  # the frame's parts, in its row order
                    raw.execute(
                        f"INSERT INTO main.{table.name} ({names}) SELECT {names} FROM {stage}.stage"
                    )
                continue
            insert = table.insert().compile(connection, column_keys=frame.columns)
            positions = insert.positiontup or []  # the order of its `?` placeholders
            values = _sqlite_values(in_memory(frame).select(positions)).iter_rows()
            raw.cursor().executemany(str(insert), values)


def _sqlite_values(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with its dates and timestamps as the text SQLAlchemy's SQLite Date and DateTime
    read back (UTC here): what the typed columns turn into dates and datetimes again."""
    return frame.with_columns(
        pl.col(pl.Datetime).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S%.6f"),
        pl.col(pl.Date).dt.strftime("%Y-%m-%d"),
    )


@contextmanager
def _stages(connection: Connection, frames: Sequence[Rows]) -> Iterator[Callable[[], list[str]]]:
    """Start writing each of `frames` (`_sqlite_values`, a batch at a time) to table `stage` of
    new files, one per consecutive part of its rows, through ADBC's SQLite driver on
    STAGE_PARTS threads (its inserts release the GIL), all in the frames' order. Yields a
    function giving the next frame's parts once they are written and attached to `connection`:
    the schema names to read them by, in row order. A stage is a scratch copy (no journal, no
    sync) whose file is gone once it is detached (`detach_stages`); nothing of the warehouse is
    written until the caller copies it in."""
    if not frames:
        yield lambda: []
        return
    # Imported here, when a load first needs it: pyarrow's import is not for every command.
    import adbc_driver_manager

    raw: Any = connection.connection.driver_connection
    attached = {row[1] for row in raw.execute("PRAGMA database_list")}
    free = (f"{_STAGE_ALIAS}{n}" for n in itertools.count() if f"{_STAGE_ALIAS}{n}" not in attached)
    # Split only what is worth it, and never into more files than can still be attached (main
    # and temp do not count), keeping one for each frame after: a part that cannot be attached
    # would fail the load.
    slots = raw.getlimit(sqlite3.SQLITE_LIMIT_ATTACHED) - len(attached - {"main", "temp"})
    plans = []
    for index, frame in enumerate(frames):
        split = STAGE_PARTS if frame.height >= STAGE_SPLIT_MIN_ROWS else 1
        count = max(1, min(split, slots - (len(frames) - index - 1)))
        slots -= count
        part_rows = -(-frame.height // count)
        plans.append([frame.slice(start, part_rows) for start in range(0, frame.height, part_rows)])
    database = connection.engine.url.database
    on_disk = database not in (None, "", ":memory:") and not str(database).startswith("file:")
    folder = Path(str(database)).resolve().parent if on_disk else None
    with (
        tempfile.TemporaryDirectory(prefix=".hubshare-stage-", dir=folder) as scratch,
        ThreadPoolExecutor(STAGE_PARTS, thread_name_prefix="stage") as pool,
    ):
        numbers = itertools.count()
        jobs = []  # per frame: (file, its writing) of each part
        for parts in plans:
            files = [str(Path(scratch) / f"stage-{next(numbers)}.sqlite") for _ in parts]
            jobs.append(
                [
                    (path, pool.submit(_write_stage, path, part))
                    for path, part in zip(files, parts, strict=True)
                ]
            )
        written = iter(jobs)

        def next_stages() -> list[str]:
            aliases = []
            for path, job in next(written):
                try:
                    job.result()
                except adbc_driver_manager.Error as err:  # as the warehouse's driver says it
                    raise sqlite3.OperationalError(f"staging rows: {first_line(err)}") from None
                alias = next(free)
                # SQLite holds the file open from here: removing it leaves it readable until
                # detached.
                raw.execute(f"ATTACH DATABASE ? AS {alias}", (path,))
                aliases.append(alias)
            return aliases

        try:
            yield next_stages
        except BaseException:
            pool.shutdown(cancel_futures=True)  # no more stages for a load that failed
            raise


def _write_stage(path: str, frame: Rows) -> None:
    """`frame` as table `stage` of a new SQLite file at `path` (see `_stages`)."""
    import adbc_driver_sqlite.dbapi

    with (
        adbc_driver_sqlite.dbapi.connect(path, autocommit=True) as stage,
        stage.cursor() as cursor,
    ):
        cursor.execute("PRAGMA journal_mode=OFF")
        cursor.fetchall()
        cursor.execute("PRAGMA synchronous=OFF")
        for number, chunk in enumerate(frame.iter_slices(STAGE_CHUNK_ROWS)):
            cursor.adbc_ingest(
                "stage",
                _sqlite_values(chunk).to_arrow(compat_level=pl.CompatLevel.oldest()),
                mode="append" if number else "create",
            )


def detach_stages(connection: Connection) -> None:
    """Detach the stages a load attached (`_stages`), once its transaction has ended."""
    if connection.dialect.name != "sqlite" or connection.invalidated:
        return
    raw: Any = connection.connection.driver_connection
    for row in raw.execute("PRAGMA database_list").fetchall():
        if str(row[1]).startswith(_STAGE_ALIAS):
            raw.execute(f"DETACH DATABASE {row[1]}")


def read_frame(connection: Connection, query: Select[Any], schema: dict[str, Any]) -> pl.DataFrame:
    """A large query's rows through the driver's cursor, a block at a time (only one block of
    Python tuples exists at once)."""
    raw: Any = connection.connection.driver_connection
    cursor = raw.cursor()
    cursor.execute(str(query.compile(connection)))
    parts = [pl.DataFrame(schema=schema)]
    while rows := cursor.fetchmany(COPY_CHUNK_ROWS):
        parts.append(pl.DataFrame(rows, schema=schema, orient="row"))
    return pl.concat(parts, rechunk=True)


def advisory_lock(connection: Connection, key: int) -> None:
    """Hold PostgreSQL's transaction-level advisory lock `key` until the transaction ends (SQLite
    has a single writer already)."""
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(key)))


def lock_model_dimension(connection: Connection) -> None:
    advisory_lock(connection, _DIMENSION_LOCK)


def model_dimension_keys(connection: Connection) -> pl.DataFrame:
    """model_oid, content_digest and model_key of every model_dim row."""
    return read_frame(
        connection,
        select(MODEL_DIM.c.model_oid, MODEL_DIM.c.content_digest, MODEL_DIM.c.model_key),
        {"model_oid": pl.String, "content_digest": pl.Int64, "model_key": pl.Int64},
    )


def next_model_key(connection: Connection) -> int:
    return int(connection.execute(select(func.max(MODEL_DIM.c.model_key))).scalar() or 0) + 1


def published_facts_sha256(connection: Connection, day: date) -> str | None:
    """facts_sha256 of the run published for `day` (None when none is, or it stored none)."""
    found: str | None = connection.execute(
        select(ETL_RUN.c.facts_sha256)
        .join(PUBLISHED_RUN, PUBLISHED_RUN.c.run_id == ETL_RUN.c.run_id)
        .where(PUBLISHED_RUN.c.snapshot_date == day)
    ).scalar()
    return found


def clear_model_day(connection: Connection, day: date) -> None:
    """Delete the per-model facts of `day` (its model_day rows), for new ones to be inserted; on
    PostgreSQL, create the partition of its month if there is none yet."""
    connection.execute(MODEL_DAY.delete().where(MODEL_DAY.c.snapshot_date == day))
    _ensure_month_partition(connection, day)


def _ensure_month_partition(connection: Connection, day: date) -> None:
    """PostgreSQL keeps model_day in one partition per month of snapshot dates."""
    if connection.dialect.name != "postgresql":
        return
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    name = f"model_day_{first:%Y_%m}"
    if connection.execute(select(func.to_regclass(name))).scalar():
        return
    connection.execute(
        text(
            f"CREATE TABLE {name} PARTITION OF model_day "
            f"FOR VALUES FROM ('{first}') TO ('{following}')"
        )
    )
    # A BI tool lists partitions as tables: they carry model_day's descriptions.
    describe = f"model_day for snapshot dates in {first:%Y-%m} (a partition of model_day)"
    connection.execute(text(f"COMMENT ON TABLE {name} IS {sql_literal(describe)}"))
    for column in MODEL_DAY.columns:
        comment = sql_literal(str(column.comment))
        connection.execute(text(f"COMMENT ON COLUMN {name}.{column.name} IS {comment}"))


def insert_run(connection: Connection, row: dict[str, Any]) -> None:
    connection.execute(ETL_RUN.insert(), [row])


def publish(connection: Connection, day: date, run_id: str, published_at: datetime) -> None:
    """Move the published pointer of `day` to `run_id`."""
    connection.execute(PUBLISHED_RUN.delete().where(PUBLISHED_RUN.c.snapshot_date == day))
    connection.execute(
        PUBLISHED_RUN.insert(),
        [{"snapshot_date": day, "run_id": run_id, "published_at": published_at}],
    )


@dataclass(frozen=True)
class StoredVersion:
    version: int
    status: str
    existed: bool  # the run was recorded before: nothing was written


def record_next_version(
    engine: Engine,
    run_id: str,
    snapshot_date: date,
    status: str,
    write: Callable[[Connection, int], None],
    failure: str,
) -> StoredVersion:
    """Give a run the next version of its date and `write` its rows with it, in one transaction.
    A run already recorded is returned as it is. A writer that loses the race for a version (the
    unique (date, version), or SQLite's writer lock) tries again with the next one; any other
    error rolls back and is a WarehouseError that starts with `failure`."""
    attempt = 0
    while True:
        try:
            with engine.connect() as connection:
                try:
                    with connection.begin():
                        existing = connection.execute(
                            select(ETL_RUN.c.version, ETL_RUN.c.status).where(
                                ETL_RUN.c.run_id == run_id
                            )
                        ).first()
                        if existing is not None:
                            return StoredVersion(existing.version, existing.status, existed=True)
                        advisory_lock(connection, _DATE_LOCK + snapshot_date.toordinal())
                        last = connection.execute(
                            select(func.max(ETL_RUN.c.version)).where(
                                ETL_RUN.c.snapshot_date == snapshot_date
                            )
                        ).scalar()
                        version = int(last or 0) + 1
                        write(connection, version)
                finally:  # committed or rolled back: a stage can be let go
                    detach_stages(connection)
            return StoredVersion(version, status, existed=False)
        except LOAD_ERRORS as err:
            if isinstance(err, SQLAlchemyError) and _lost_version_race(attempt, err):
                attempt += 1
                continue
            raise WarehouseError(
                f"warehouse {redacted(engine)}: {failure} ({first_line(err)})"
            ) from None


def _lost_version_race(attempt: int, err: SQLAlchemyError) -> bool:
    """Whether a failed run insert lost a race for its version and should retry (after a short
    wait) with the next version."""
    if attempt + 1 >= VERSION_ATTEMPTS:
        return False
    message = str(err).lower()
    lost = isinstance(err, IntegrityError) and "version" in message
    locked = isinstance(err, OperationalError) and "database is locked" in message
    if lost or locked:
        time.sleep(0.05 * (attempt + 1))
        return True
    return False
