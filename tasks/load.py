"""Load: one transaction per run writes the run row, its quality results and, when the gate
passed, its facts and shares, and moves the published pointer. Facts go in bulk (COPY on
PostgreSQL, the driver's executemany on SQLite), never row by row through the ORM.

Per-model facts are stored as a dimension and a narrow daily fact (docs/warehouse.md): a model
whose content did not change since an earlier day reuses its `model_dim` row, and `model_day`
holds only the published run of each date, rewritten only when a new version's facts differ."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import polars as pl
import psycopg
from sqlalchemy import Engine, Table, create_engine, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import SQLModel

import schemas.warehouse  # noqa: F401 - registers the tables in SQLModel.metadata
from hubshare.errors import UnstorableDataError, WarehouseError
from tasks.shares import fold_unknown_orgs

log = logging.getLogger(__name__)

PUBLISHED = "published"
REJECTED = "rejected"


def warehouse_engine(url: str) -> Engine:
    try:
        return create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as err:
        raise WarehouseError(f"HUBSHARE_WAREHOUSE_URL: cannot use {_redact(url)} ({err})") from None


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ValueError, SQLAlchemyError):
        return "<unparsable URL>"


def ensure_schema(engine: Engine) -> None:
    """Writers bring the warehouse to this code's schema before writing (alembic)."""
    from tasks.migrate import upgrade_warehouse

    upgrade_warehouse(engine)


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


#: Rows per CSV block sent to COPY (bounds the text held in memory at once).
COPY_CHUNK_ROWS = 200_000


def bulk_insert(connection: Connection, table: Table, frame: pl.DataFrame) -> None:
    """Insert a frame inside the caller's transaction, through the driver's bulk path."""
    if frame.is_empty():
        return
    columns = frame.columns
    names = ", ".join(columns)
    raw: Any = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        # CSV written by polars (in Rust) and parsed by the server: about 3x faster than
        # COPY's row-by-row writer. An unquoted empty field is NULL, a quoted one "" is ''.
        statement = f"COPY {table.name} ({names}) FROM STDIN (FORMAT csv)"
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for chunk in frame.iter_slices(COPY_CHUNK_ROWS):
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


@dataclass(frozen=True)
class RunRecord:
    """Everything the run row holds but its version, status and finish time."""

    run_id: str
    snapshot_date: date
    flow_run_id: str | None
    started_at: datetime
    code_version: str
    definition: str
    raw_sha256: str
    mapping_sha256: str
    shares_sha256: str
    row_count: int
    rows_listed: int
    duplicates_dropped: int
    private_dropped: int
    total_downloads: int
    parameters: dict[str, Any]
    report: dict[str, Any]


@dataclass(frozen=True)
class LoadResult:
    run_id: str
    snapshot_date: date
    version: int
    status: str


def _lock_date(connection: Connection, snapshot_date: date) -> None:
    """Serialise version numbering of one date across concurrent runs on PostgreSQL (SQLite
    has a single writer already)."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"),
            {"key": 0x4855_0000_0000 + snapshot_date.toordinal()},
        )


def previous_row_count(engine: Engine, snapshot_date: date) -> int | None:
    """Row count of the latest published snapshot on or before `snapshot_date`."""
    ensure_schema(engine)
    runs, pointer = _table("etl_run"), _table("published_run")
    with engine.connect() as connection:
        row = connection.execute(
            select(runs.c.row_count)
            .join(pointer, pointer.c.run_id == runs.c.run_id)
            .where(pointer.c.snapshot_date <= snapshot_date)
            .order_by(pointer.c.snapshot_date.desc())
            .limit(1)
        ).first()
    return None if row is None else int(row[0])


#: Errors of the database drivers themselves: the bulk path writes through the raw driver
#: connection, so a full disk or a rejected value surfaces as these, not as SQLAlchemy's.
LOAD_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, sqlite3.Error, psycopg.Error)

#: Attempts at allocating a run's version when another writer of the same date got there first.
VERSION_ATTEMPTS = 8


def _retry_version_race(attempt: int, err: SQLAlchemyError) -> bool:
    """Whether a failed run insert lost a race for its version (the unique (date, version)
    constraint, or SQLite's writer lock) and should retry with the next version."""
    if attempt + 1 >= VERSION_ATTEMPTS:
        return False
    message = str(err).lower()
    lost = isinstance(err, IntegrityError) and "version" in message
    locked = isinstance(err, OperationalError) and "database is locked" in message
    if lost or locked:
        time.sleep(0.05 * (attempt + 1))
        return True
    return False


#: Where each run frame is stored, when the table is not named after it.
FACT_TABLE_OF_FRAME = {"model_fact": "model_dim"}

#: Serialises writers of the model dimension on PostgreSQL (keys are allocated as max + 1).
_DIMENSION_LOCK = 0x4855_4449_4D00


#: The model dimension's content: what decides whether a day can reuse an earlier row.
DIMENSION_COLUMNS = (
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


def model_dimension(fact: pl.DataFrame, origin: pl.DataFrame) -> pl.DataFrame:
    """Each model's dimension columns (in fact's row order) and `content_digest`: a 64-bit hash
    of them and of its origin rows (a wrapping sum of one hash per origin row, so their order
    does not matter). The hashes are polars' (pinned by uv.lock): were an upgrade to change
    them, each model would get one new dimension row once, never a wrong one, since a row is
    reused only when its digest matches."""
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
    # Streaming: only the digest column is new; the dimension columns are fact's own buffers.
    digest = (
        fact.lazy()
        .select(DIMENSION_COLUMNS)
        .with_columns(origin_digest)
        .select(
            pl.struct(*DIMENSION_COLUMNS, "origin_digest")
            .hash(seed=0x68756273)
            .reinterpret(signed=True)
            .alias("content_digest")
        )
        .collect(engine="streaming")
        .to_series()
    )
    return fact.select(DIMENSION_COLUMNS).with_columns(digest)


def _digest_by_position(
    fact: pl.DataFrame, origin: pl.DataFrame, row_hash: pl.Expr
) -> pl.Series | None:
    """The per-model sum of `row_hash` in fact's row order, without a join: when origin's rows
    come in runs of one model each, in the order of fact's models (as attribution writes them),
    the runs are the models. None when they do not, for the join to do it."""
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


def _read_frame(connection: Connection, sql: str, schema: dict[str, Any]) -> pl.DataFrame:
    raw: Any = connection.connection.driver_connection
    cursor = raw.cursor()
    cursor.execute(sql)
    # In blocks, so that only one block of Python tuples exists at a time.
    parts = [pl.DataFrame(schema=schema)]
    while rows := cursor.fetchmany(COPY_CHUNK_ROWS):
        parts.append(pl.DataFrame(rows, schema=schema, orient="row"))
    return pl.concat(parts, rechunk=True)


def _ensure_month_partition(connection: Connection, day: date) -> None:
    """PostgreSQL keeps model_day in one partition per month of snapshot dates."""
    if connection.dialect.name != "postgresql":
        return
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    name = f"model_day_{first:%Y_%m}"
    if connection.execute(text("SELECT to_regclass(:name)"), {"name": name}).scalar():
        return
    connection.execute(
        text(
            f"CREATE TABLE {name} PARTITION OF model_day "
            f"FOR VALUES FROM ('{first}') TO ('{following}')"
        )
    )
    # A BI tool lists partitions as tables: they carry model_day's descriptions.
    from tasks.migrate import sql_literal  # COMMENT takes no bind parameters

    describe = f"model_day for snapshot dates in {first:%Y-%m} (a partition of model_day)"
    connection.execute(text(f"COMMENT ON TABLE {name} IS {sql_literal(describe)}"))
    for column in _table("model_day").columns:
        comment = sql_literal(str(column.comment))
        connection.execute(text(f"COMMENT ON COLUMN {name}.{column.name} IS {comment}"))


def facts_sha256(model_day: pl.DataFrame) -> str:
    """SHA-256 of a date's per-model facts (model_key, counters), in model_key order."""
    ordered = model_day.select("model_key", "downloads_30d", "downloads_all_time", "likes").sort(
        "model_key"
    )
    digest = hashlib.sha256(",".join(ordered.columns).encode() + b"\n")
    for chunk in ordered.iter_slices(COPY_CHUNK_ROWS):  # the CSV text, a block at a time
        digest.update(chunk.write_csv(include_header=False).encode())
    return digest.hexdigest()


def _next_model_key(connection: Connection) -> int:
    return int(connection.execute(text("SELECT MAX(model_key) FROM model_dim")).scalar() or 0) + 1


def store_model_facts(
    connection: Connection, day: date, fact: pl.DataFrame, origin: pl.DataFrame
) -> str:
    """Store a published run's per-model facts inside the caller's transaction: new dimension
    rows (and their origin rows) for contents not seen before, and the date's model_day rows
    unless the date's published facts are already these. Returns the facts' SHA-256."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DIMENSION_LOCK})
    dims = model_dimension(fact, origin)  # in fact's row order
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
        raise WarehouseError(
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
    bulk_insert(
        connection,
        _table("model_dim"),
        new.select([column.name for column in _table("model_dim").columns]),
    )
    bulk_insert(
        connection,
        _table("model_origin"),
        origin.join(new.select("model_oid", "model_key"), on="model_oid").select(
            [column.name for column in _table("model_origin").columns]
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
    digest = facts_sha256(rows)
    stored = connection.execute(
        text(
            "SELECT r.facts_sha256 FROM published_run p JOIN etl_run r ON r.run_id = p.run_id "
            "WHERE p.snapshot_date = :day"
        ),
        {"day": day},
    ).scalar()
    if stored == digest:
        log.info("The per-model facts of %s are already stored: none written", day)
        return digest
    connection.execute(text("DELETE FROM model_day WHERE snapshot_date = :day"), {"day": day})
    _ensure_month_partition(connection, day)
    bulk_insert(connection, _table("model_day"), rows)
    return digest


def unstorable(table: Table, frame: pl.DataFrame) -> str | None:
    """What in `frame` the warehouse cannot store in `table`, checked before loading: text longer
    than its column (PostgreSQL enforces VARCHAR lengths) or a NUL character (PostgreSQL text
    cannot hold one). None when all of it fits."""
    for column in table.columns:
        if column.name not in frame.columns or frame.schema[column.name] != pl.String:
            continue
        values = frame[column.name]
        nul = values.str.contains("\x00", literal=True).fill_null(False)
        if nul.any():
            bad = values.filter(nul)[0]
            return f"{table.name}.{column.name} value {bad!r:.80} contains a NUL character"
        limit = getattr(column.type, "length", None)
        if limit is not None:
            too_long = values.str.len_chars().fill_null(0) > limit
            if too_long.any():
                bad = values.filter(too_long)[0]
                return (
                    f"{table.name}.{column.name} value {bad[:60]!r}… is {len(bad)} characters; "
                    f"the warehouse stores at most {limit}"
                )
    return None


def load_run(
    engine: Engine,
    record: RunRecord,
    facts: dict[str, pl.DataFrame],
    quality: pl.DataFrame,
    *,
    published: bool,
    reason: str | None,
) -> LoadResult:
    """Write the run atomically. Idempotent: a run_id already loaded is returned as it is.
    Data the warehouse cannot store is refused before anything is written."""
    for name, frame in facts.items():
        problem = unstorable(_table(FACT_TABLE_OF_FRAME.get(name, name)), frame)
        if problem is not None:
            raise UnstorableDataError(
                f"run {record.run_id} ({record.snapshot_date}) was not loaded: {problem}"
            )
    ensure_schema(engine)
    status = PUBLISHED if published else REJECTED
    runs = _table("etl_run")
    for attempt in range(VERSION_ATTEMPTS):
        try:
            with engine.begin() as connection:
                existing = connection.execute(
                    select(runs.c.version, runs.c.status).where(runs.c.run_id == record.run_id)
                ).first()
                if existing is not None:
                    log.info("Run %s is already loaded as version %d", record.run_id, existing[0])
                    return LoadResult(record.run_id, record.snapshot_date, existing[0], existing[1])
                _lock_date(connection, record.snapshot_date)
                last = connection.execute(
                    select(func.max(runs.c.version)).where(
                        runs.c.snapshot_date == record.snapshot_date
                    )
                ).scalar()
                version = int(last or 0) + 1
                now = datetime.now(UTC)
                row = asdict(record) | {
                    "version": version,
                    "status": status,
                    "status_reason": reason,
                    "finished_at": now,
                    "quality_failures": int((~quality["success"]).sum()),
                    "parameters": orjson.dumps(
                        record.parameters, option=orjson.OPT_SORT_KEYS
                    ).decode(),
                    "report": orjson.dumps(record.report, option=orjson.OPT_SORT_KEYS).decode(),
                }
                if published:
                    row["facts_sha256"] = store_model_facts(
                        connection, record.snapshot_date, facts["model_fact"], facts["model_origin"]
                    )
                connection.execute(runs.insert(), [row])
                bulk_insert(
                    connection,
                    _table("quality_result"),
                    quality.select(
                        pl.lit(record.run_id).alias("run_id"),
                        pl.int_range(1, pl.len() + 1).alias("check_no"),
                        "suite",
                        "expectation",
                        pl.col("column").alias("column_name"),
                        "success",
                        "observed",
                        "expected",
                    ),
                )
                if published:
                    for name in ("country_share", "org_share", "concentration"):
                        frame = facts[name]
                        if name == "org_share":
                            frame = fold_unknown_orgs(frame)
                        bulk_insert(
                            connection,
                            _table(name),
                            frame.select(pl.lit(record.run_id).alias("run_id"), pl.all()),
                        )
                    pointer = _table("published_run")
                    connection.execute(
                        pointer.delete().where(pointer.c.snapshot_date == record.snapshot_date)
                    )
                    connection.execute(
                        pointer.insert(),
                        [
                            {
                                "snapshot_date": record.snapshot_date,
                                "run_id": record.run_id,
                                "published_at": now,
                            }
                        ],
                    )
        except LOAD_ERRORS as err:
            if isinstance(err, SQLAlchemyError) and _retry_version_race(attempt, err):
                continue
            raise WarehouseError(
                f"warehouse {_redact(str(engine.url))}: loading run {record.run_id} failed and was "
                f"rolled back ({_first_line(err)})"
            ) from None
        break
    log.info(
        "Loaded run %s: %s version %d (%s)", record.run_id, record.snapshot_date, version, status
    )
    return LoadResult(record.run_id, record.snapshot_date, version, status)


FAILED = "failed"
CRASHED = "crashed"


def record_unfinished_run(
    engine: Engine,
    *,
    run_id: str,
    snapshot_date: date,
    flow_run_id: str | None,
    started_at: datetime,
    status: str,
    reason: str,
    parameters: dict[str, Any],
) -> LoadResult:
    """The run row of a run that failed or crashed before it was loaded: the next version of its
    date, with the reason and nulls for what it had not reached. A run already recorded (a
    rejected run, or a second call) is returned as it is."""
    from hubshare.provenance import code_version
    from tasks.shares import DEFINITION

    ensure_schema(engine)
    runs = _table("etl_run")
    for attempt in range(VERSION_ATTEMPTS):
        try:
            with engine.begin() as connection:
                existing = connection.execute(
                    select(runs.c.version, runs.c.status).where(runs.c.run_id == run_id)
                ).first()
                if existing is not None:
                    return LoadResult(run_id, snapshot_date, existing[0], existing[1])
                _lock_date(connection, snapshot_date)
                last = connection.execute(
                    select(func.max(runs.c.version)).where(runs.c.snapshot_date == snapshot_date)
                ).scalar()
                version = int(last or 0) + 1
                connection.execute(
                    runs.insert(),
                    [
                        {
                            "run_id": run_id,
                            "snapshot_date": snapshot_date,
                            "version": version,
                            "status": status,
                            "status_reason": reason,
                            "flow_run_id": flow_run_id,
                            "started_at": started_at,
                            "finished_at": datetime.now(UTC),
                            "code_version": code_version(),
                            "definition": DEFINITION,
                            "quality_failures": 0,
                            "parameters": orjson.dumps(
                                parameters, option=orjson.OPT_SORT_KEYS
                            ).decode(),
                            "report": "{}",
                        }
                    ],
                )
        except LOAD_ERRORS as err:
            if isinstance(err, SQLAlchemyError) and _retry_version_race(attempt, err):
                continue
            raise WarehouseError(
                f"warehouse {_redact(str(engine.url))}: recording {status} run {run_id} failed "
                f"({_first_line(err)})"
            ) from None
        break
    return LoadResult(run_id, snapshot_date, version, status)
