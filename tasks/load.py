"""Load: one transaction per run writes the run row, its quality results and, when the gate
passed, its facts and shares, and moves the published pointer. Facts go in bulk (COPY on
PostgreSQL; on SQLite, large frames through an Arrow-written stage file copied in by one
INSERT ... SELECT, small ones through the driver's executemany), never row by row through the
ORM.

Per-model facts are stored as a dimension and a narrow daily fact (docs/warehouse.md): a model
whose content did not change since an earlier day reuses its `model_dim` row, and `model_day`
holds only the published run of each date, rewritten only when a new version's facts differ.
The daily flow hands the per-model frames over as scans of the run's stored files: the load
holds every model's ids, digests, keys and counters, and reads the other columns a block at a
time as it hashes and writes them."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import orjson
import polars as pl
from sqlalchemy import Engine, Table
from sqlalchemy.engine import Connection

from hubshare.errors import UnstorableDataError, WarehouseError
from hubshare.warehouse import (
    COPY_CHUNK_ROWS,
    QUALITY_RESULT,
    REVIEW_QUEUE,
    TABLES,
    Rows,
    ScannedRows,
    bulk_insert,
    bulk_insert_in_turn,
    clear_model_day,
    in_memory,
    insert_run,
    lock_model_dimension,
    model_dimension_keys,
    next_model_key,
    publish,
    published_facts_sha256,
    record_next_version,
)
from tasks.alignment import model_row_of
from tasks.shares import fold_unknown_orgs

log = logging.getLogger(__name__)

PUBLISHED = "published"
REJECTED = "rejected"


def ensure_schema(engine: Engine) -> None:
    """Writers bring the warehouse to this code's schema before writing (alembic)."""
    from tasks.migrate import upgrade_warehouse

    upgrade_warehouse(engine)


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


#: Where each run frame is stored, when the table is not named after it.
FACT_TABLE_OF_FRAME = {"model_fact": "model_dim"}

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


#: A per-model run frame as the load takes it: in memory, or a scan of the run's stored file
#: (read a block at a time, so that a day's models are never all in memory at once).
ModelFrame = pl.DataFrame | pl.LazyFrame

#: The same kind of frame in and out (`storable_model_frames`).
ModelFrameT = TypeVar("ModelFrameT", pl.DataFrame, pl.LazyFrame)

#: Models whose dimension columns are read and hashed at a time.
DIGEST_BATCH_ROWS = 250_000

#: The hash of one origin row, summed per model into the model's origin digest.
_ORIGIN_ROW_HASH = (
    pl.struct("origin_org", "origin_bucket", "weight_num", "weight_den")
    .hash(seed=0x6F726967)
    .alias("origin_digest")
)


def content_digests(
    fact: pl.LazyFrame, origin: pl.LazyFrame, oids: pl.Series, origin_rows: pl.Series | None
) -> pl.Series:
    """Each model's `content_digest` (in fact's row order, `oids` its model_oid): a 64-bit hash
    of its dimension columns and of its origin rows (a wrapping sum of one hash per origin row,
    so their order does not matter). `origin_rows` is `model_row_of` origin's ids in `oids`, or
    None (origin then joined by id). The dimension columns are read DIGEST_BATCH_ROWS models at
    a time. The hashes are polars' (pinned by uv.lock): were an upgrade to change them, each
    model would get one new dimension row once, never a wrong one, since a row is reused only
    when its digest matches."""
    if origin_rows is not None:
        hashes = origin.select(_ORIGIN_ROW_HASH).collect()
        origin_digest = (
            hashes.with_columns(origin_rows.alias("run"))
            .group_by("run", maintain_order=True)
            .agg(pl.col("origin_digest").sum())
            .get_column("origin_digest")
        )
        del hashes
    else:
        origin_digest = (
            oids.to_frame()
            .lazy()
            .join(
                origin.select("model_oid", _ORIGIN_ROW_HASH)
                .group_by("model_oid")
                .agg(pl.col("origin_digest").sum()),
                on="model_oid",
                how="left",
                maintain_order="left",
            )
            .collect()
            .get_column("origin_digest")
        )
    # Read and hashed DIGEST_BATCH_ROWS models at a time; a block that the stored file no longer
    # has (or has more of) stops the load (`ScannedRows`).
    dims = ScannedRows(
        fact.select(DIMENSION_COLUMNS),
        origin_digest.to_frame(),
        [*DIMENSION_COLUMNS, "origin_digest"],
    )
    content_digest = (
        pl.struct(*DIMENSION_COLUMNS, "origin_digest")
        .hash(seed=0x68756273)
        .reinterpret(signed=True)
        .alias("content_digest")
    )
    parts = [
        block.select(content_digest).to_series() for block in dims.iter_slices(DIGEST_BATCH_ROWS)
    ]
    return pl.concat(parts) if parts else pl.Series("content_digest", [], pl.Int64)


def _origin_model_rows(origin: pl.LazyFrame, oids: pl.Series) -> pl.Series | None:
    """Each origin row's model position in `oids` without a join (`model_row_of`); None when
    origin's rows are not in the facts' order, for a join to do it."""
    return model_row_of(origin.select("model_oid").collect().to_series(), oids)


def facts_sha256(model_day: pl.DataFrame) -> str:
    """SHA-256 of a date's per-model facts (model_key, counters), in model_key order."""
    ordered = model_day.select("model_key", "downloads_30d", "downloads_all_time", "likes").sort(
        "model_key"
    )
    digest = hashlib.sha256(",".join(ordered.columns).encode() + b"\n")
    for chunk in ordered.iter_slices(COPY_CHUNK_ROWS):  # the CSV text, a block at a time
        digest.update(chunk.write_csv(include_header=False).encode())
    return digest.hexdigest()


def _known_keys(dims: pl.DataFrame, known: pl.DataFrame) -> pl.Series:
    """Each of the day's contents' model_key in `known` (model_dim's keys), null if new; in
    dims' row order. Joined on the 64-bit digest alone, the model's id then compared, when no
    digest is known twice: a join on the id and the digest together encodes both keys of every
    row first (at 3M models its peak was 0.11 GB above this one's)."""
    if known.get_column("content_digest").is_duplicated().any():
        return (
            dims.lazy()
            .select("model_oid", "content_digest")
            .join(
                known.lazy(), on=["model_oid", "content_digest"], how="left", maintain_order="left"
            )
            .select("model_key")
            .collect(engine="streaming")
            .to_series()
        )
    matched = (
        dims.lazy()
        .select("content_digest", pl.col("model_oid").alias("day_oid"))
        .join(known.lazy(), on="content_digest", how="left", maintain_order="left")
        # The same digest for another model (a 64-bit collision) is not this content.
        .select(pl.when(pl.col("model_oid") == pl.col("day_oid")).then(pl.col("model_key")))
        .collect(engine="streaming")
        .to_series()
    )
    return matched.alias("model_key")


def store_model_facts(
    connection: Connection, day: date, fact: ModelFrame, origin: ModelFrame
) -> str:
    """Store a published run's per-model facts inside the caller's transaction: new dimension
    rows (and their origin rows) for contents not seen before, and the date's model_day rows
    unless the date's published facts are already these. Returns the facts' SHA-256. Frames
    given as scans of stored files are read a column or a block at a time: the ids, digests,
    keys and counters of every model are in memory at once, their other columns are not."""
    fact, origin = fact.lazy(), origin.lazy()
    lock_model_dimension(connection)
    oids = fact.select("model_oid").collect().to_series()
    origin_rows = _origin_model_rows(origin, oids)
    day_keys = pl.DataFrame([oids, content_digests(fact, origin, oids, origin_rows)])
    known = model_dimension_keys(connection)
    found = _known_keys(day_keys, known)
    del known
    if found.len() != day_keys.height:
        raise WarehouseError(
            "model_dim holds some (model_oid, content_digest) twice, which only an edit outside "
            "hubshare makes: delete the duplicate with the higher model_key, then run again"
        )
    # Contents not seen before get the next keys, in the day's row order. Positions, not joins,
    # carry the keys to the rows.
    missing = found.is_null()
    first_key = next_model_key(connection)
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
    dim_columns = [column.name for column in TABLES["model_dim"].columns]
    origin_columns = [column.name for column in TABLES["model_origin"].columns]
    beside = pl.DataFrame([keys, day_keys.get_column("content_digest")])
    del day_keys
    new: Rows
    new_origin: Rows
    if missing.all():  # a first day: every row, read from the files as it is written
        new = ScannedRows(fact.select(DIMENSION_COLUMNS), beside, dim_columns)
    else:
        new = _rows_where(fact.select(DIMENSION_COLUMNS), beside, missing).select(dim_columns)
    del beside
    if origin_rows is None:
        new_keys = in_memory(new).select("model_oid", "model_key")
        new_origin = origin.collect().join(new_keys, on="model_oid").select(origin_columns)
    else:
        # Each origin row's key by its model's position: no join of 3M ids.
        origin_keys = keys.gather(origin_rows).to_frame()
        stored = origin.select(name for name in origin_columns if name != "model_key")
        if missing.all():
            new_origin = ScannedRows(stored, origin_keys, origin_columns)
        else:
            keep = missing.gather(origin_rows)
            new_origin = _rows_where(stored, origin_keys, keep).select(origin_columns)
        del origin_keys
    counters = ["downloads_30d", "downloads_all_time", "likes"]
    rows = (
        ScannedRows(
            fact.select(pl.lit(day).alias("snapshot_date"), *counters),
            keys.to_frame(),
            ["snapshot_date", "model_key", *counters],
        )
        .collect()
        .sort("model_key")
    )
    digest = facts_sha256(rows)
    loads: list[tuple[Table, Rows]] = [
        (TABLES["model_dim"], new),
        (TABLES["model_origin"], new_origin),
    ]
    del new, new_origin
    if published_facts_sha256(connection, day) == digest:
        log.info("The per-model facts of %s are already stored: none written", day)
    else:
        clear_model_day(connection, day)
        loads.append((TABLES["model_day"], rows))
    # In one go: on SQLite each table's rows are staged while the one before is copied in.
    bulk_insert_in_turn(connection, loads)
    return digest


def _rows_where(frame: pl.LazyFrame, beside: pl.DataFrame, keep: pl.Series) -> pl.DataFrame:
    """The rows of `frame` and `beside` (the same height) where `keep` holds, side by side."""
    positions = keep.arg_true()
    kept = (
        frame.with_row_index("_position")
        .filter(pl.col("_position").is_in(positions.implode()))
        # A morsel at a time: only the kept rows of a scanned file are ever all in memory.
        .collect(engine="streaming")
        .sort("_position")
        .drop("_position")
    )
    return pl.concat([kept, beside.filter(keep)], how="horizontal")


#: The per-model run frames and the table each is stored in: a model row either of them cannot
#: store is excluded from the warehouse's facts (both frames), never a reason to fail the date.
MODEL_FRAME_TABLES = {"model_fact": "model_dim", "model_origin": "model_origin"}

#: Columns of `unstorable_models`: which rule (`column` must hold `rule`) excluded which model,
#: and the value that broke it.
UNSTORABLE_SCHEMA = pl.Schema(
    {"column": pl.String, "rule": pl.String, "model_oid": pl.String, "value": pl.String}
)

NO_NUL = "no NUL character"


def storage_rules(table: Table, frame: ModelFrame) -> list[tuple[str, str, pl.Expr]]:
    """(table.column, rule, expression true where a row breaks it) for each text column of `frame`
    stored in `table`: PostgreSQL enforces VARCHAR lengths, and its text cannot hold a NUL."""
    rules = []
    schema = frame.collect_schema()
    for column in table.columns:
        if schema.get(column.name) != pl.String:
            continue
        values = pl.col(column.name)
        name = f"{table.name}.{column.name}"
        rules.append((name, NO_NUL, values.str.contains("\x00", literal=True).fill_null(False)))
        limit = getattr(column.type, "length", None)
        if limit is not None:
            too_long = (values.str.len_chars() > limit).fill_null(False)
            rules.append((name, f"at most {limit} characters", too_long))
    return rules


def unstorable_models(fact: ModelFrame, origin: ModelFrame) -> pl.DataFrame:
    """One row per model and rule it breaks (`UNSTORABLE_SCHEMA`), sorted: the models the
    warehouse cannot store. Empty, after one pass over each frame, when every value fits (a
    scan of a stored file is read a morsel at a time)."""
    found = []
    for name, frame in (("model_fact", fact.lazy()), ("model_origin", origin.lazy())):
        rules = storage_rules(TABLES[MODEL_FRAME_TABLES[name]], frame)
        if not rules:
            continue
        broken_any = pl.any_horizontal(r[2] for r in rules).any()
        if not frame.select(broken_any).collect(engine="streaming").item():
            continue
        for column, rule, broken in rules:
            found.append(
                frame.filter(broken)
                .select(
                    pl.lit(column).alias("column"),
                    pl.lit(rule).alias("rule"),
                    "model_oid",
                    pl.col(column.split(".")[1]).alias("value"),
                )
                .collect()
            )
    return (
        pl.concat(found).unique(["column", "rule", "model_oid"]).sort("column", "rule", "model_oid")
        if found
        else pl.DataFrame(schema=UNSTORABLE_SCHEMA)
    )


def storable_model_frames(
    fact: ModelFrameT, origin: ModelFrameT
) -> tuple[ModelFrameT, ModelFrameT, pl.DataFrame]:
    """(fact, origin) without the models `unstorable_models` finds, and those models. The same
    frames give the same result: the gate reports it, the load stores it, `reproduce` checks it."""
    excluded = unstorable_models(fact, origin)
    if excluded.is_empty():
        return fact, origin, excluded
    oids = excluded.get_column("model_oid").unique()
    keep = ~pl.col("model_oid").is_in(oids.implode())
    return fact.filter(keep), origin.filter(keep), excluded


def unstorable(table: Table, frame: pl.DataFrame) -> str | None:
    """What in `frame` the warehouse cannot store in `table`, checked before loading: text longer
    than its column or a NUL character. None when all of it fits."""
    rules = storage_rules(table, frame)
    if not rules or not frame.select(pl.any_horizontal(r[2] for r in rules).any()).item():
        return None  # one pass over the frame; the rule broken first is looked for only then
    for column, rule, broken in rules:
        bad = frame.filter(broken).get_column(column.split(".")[1])
        if not bad.is_empty():
            value = bad[0]
            return f"{column} value {value[:60]!r} ({len(value)} characters) breaks: {rule}"
    return None


def load_run(
    engine: Engine,
    record: RunRecord,
    facts: Mapping[str, ModelFrame],
    quality: pl.DataFrame,
    *,
    published: bool,
    reason: str | None,
) -> LoadResult:
    """Write the run atomically. Idempotent: a run_id already loaded is returned as it is.
    Models the warehouse cannot store are left out of its facts (`storable_model_frames`, which
    the gate counts); any other value it cannot store is refused before anything is written.
    The per-model frames (MODEL_FRAME_TABLES) may be scans of the run's stored files; the others
    are read whole."""
    model_frames: dict[str, ModelFrame] = {}
    if "model_fact" in facts:
        fact, origin, excluded = storable_model_frames(
            facts["model_fact"].lazy(), facts["model_origin"].lazy()
        )
        model_frames = {"model_fact": fact, "model_origin": origin}
        if not excluded.is_empty():
            log.warning(
                "Run %s: %d model(s) the warehouse cannot store are left out of its facts",
                record.run_id,
                excluded.get_column("model_oid").n_unique(),
            )
            # Read whole, filtered: a block of a filtered scan would read the file to its start.
            model_frames = {"model_fact": fact.collect(), "model_origin": origin.collect()}
    frames = {
        name: frame.lazy().collect()
        for name, frame in facts.items()
        if name not in MODEL_FRAME_TABLES
    }
    for name, frame in frames.items():
        problem = unstorable(TABLES[FACT_TABLE_OF_FRAME.get(name, name)], frame)
        if problem is not None:
            raise UnstorableDataError(
                f"run {record.run_id} ({record.snapshot_date}) was not loaded: {problem}"
            )
    ensure_schema(engine)
    status = PUBLISHED if published else REJECTED

    def write(connection: Connection, version: int) -> None:
        now = datetime.now(UTC)
        row = asdict(record) | {
            "version": version,
            "status": status,
            "status_reason": reason,
            "finished_at": now,
            "quality_failures": int((~quality["success"]).sum()),
            "parameters": orjson.dumps(record.parameters, option=orjson.OPT_SORT_KEYS).decode(),
            "report": orjson.dumps(record.report, option=orjson.OPT_SORT_KEYS).decode(),
        }
        if published:
            row["facts_sha256"] = store_model_facts(
                connection,
                record.snapshot_date,
                model_frames["model_fact"],
                model_frames["model_origin"],
            )
        insert_run(connection, row)
        bulk_insert(
            connection,
            QUALITY_RESULT,
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
                frame = frames[name]
                if name == "org_share":
                    frame = fold_unknown_orgs(frame)
                bulk_insert(
                    connection,
                    TABLES[name],
                    frame.select(pl.lit(record.run_id).alias("run_id"), pl.all()),
                )
            if "review_queue" in frames:  # runs loaded by code before the queue have none
                bulk_insert(
                    connection,
                    REVIEW_QUEUE,
                    frames["review_queue"].select(pl.lit(record.run_id).alias("run_id"), pl.all()),
                )
            publish(connection, record.snapshot_date, record.run_id, now)

    stored = record_next_version(
        engine,
        record.run_id,
        record.snapshot_date,
        status,
        write,
        failure=f"loading run {record.run_id} failed and was rolled back",
    )
    if stored.existed:
        log.info("Run %s is already loaded as version %d", record.run_id, stored.version)
    else:
        log.info(
            "Loaded run %s: %s version %d (%s)",
            record.run_id,
            record.snapshot_date,
            stored.version,
            status,
        )
    return LoadResult(record.run_id, record.snapshot_date, stored.version, stored.status)


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

    def write(connection: Connection, version: int) -> None:
        insert_run(
            connection,
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
                "parameters": orjson.dumps(parameters, option=orjson.OPT_SORT_KEYS).decode(),
                "report": "{}",
            },
        )

    stored = record_next_version(
        engine,
        run_id,
        snapshot_date,
        status,
        write,
        failure=f"recording {status} run {run_id} failed",
    )
    return LoadResult(run_id, snapshot_date, stored.version, stored.status)
