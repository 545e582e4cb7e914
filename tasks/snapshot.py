"""The day's raw snapshot: built from a crawl's stored pages (or an archive), stored once per
date with its manifest, checked and read back.

A snapshot is immutable: the store refuses a second writer, and a run that lost the race uses
the first writer's snapshot and says so. Pages are parsed one at a time into compact columns,
tagged with their crawl order, so that "the later observation wins" when a model was listed
twice.
"""

from __future__ import annotations

import gzip
import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import orjson
import polars as pl

from hubshare.errors import SnapshotError
from hubshare.provenance import library_versions, sha256_file
from hubshare.settings import Settings
from hubshare.storage import DataStore
from schemas.frames import SNAPSHOT_SCHEMA, WIRE_SCHEMA

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "snapshot.parquet"
MANIFEST_FILE = "manifest.json"


# ----------------------------------------------------------------------------------------------
# Where things live: keys in the data dir's store (hubshare.storage)


def day_key(snapshot_date: date) -> str:
    return f"raw/{snapshot_date.isoformat()}"


def snapshot_key(snapshot_date: date) -> str:
    return f"{day_key(snapshot_date)}/{SNAPSHOT_FILE}"


def manifest_key(snapshot_date: date) -> str:
    return f"{day_key(snapshot_date)}/{MANIFEST_FILE}"


def pages_key(snapshot_date: date) -> str:
    return f"{day_key(snapshot_date)}/pages"


def page_key(snapshot_date: date, page_no: int) -> str:
    return f"{pages_key(snapshot_date)}/page-{page_no:06d}.json.gz"


class CrawlRecord(Protocol):
    """What a manifest records of the crawl that listed its snapshot (a `CrawlState`)."""

    @property
    def endpoint(self) -> str: ...
    @property
    def pages(self) -> int: ...
    @property
    def requests(self) -> int: ...
    @property
    def retries(self) -> int: ...
    @property
    def resumes(self) -> int: ...
    @property
    def started_at(self) -> str: ...
    @property
    def finished_at(self) -> str | None: ...


#: Pages parsed while the crawl stored them, by page number: the snapshot build reads from disk
#: only the pages it does not find here (those of an earlier, interrupted attempt).
ParsedPages = dict[int, pl.DataFrame]


@dataclass(frozen=True)
class SnapshotManifest:
    snapshot_date: str
    source: str
    endpoint: str
    crawl_started_at: str | None
    crawl_finished_at: str | None
    pages: int
    requests: int
    retries: int
    resumes: int
    rows_listed: int
    duplicates_dropped: int
    private_dropped: int
    row_count: int
    sha256: str
    schema: dict[str, str]
    library_versions: dict[str, str]
    #: SHA-256 of the archive file an imported snapshot was built from (None for a crawl).
    input_sha256: str | None = None

    @classmethod
    def load(cls, data: bytes) -> SnapshotManifest:
        return cls(**orjson.loads(data))

    def to_bytes(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)


#: Who stored the snapshot a run uses (`StoredSnapshot.stored_by`), as `hubshare run` says it.
STORED_BY_THIS_RUN = "this run"
STORED_BY_EARLIER_RUN = "an earlier run"
STORED_FIRST_BY_ANOTHER = "another run, first (this run's copy was not kept)"


@dataclass(frozen=True)
class StoredSnapshot:
    """A date's stored snapshot and who stored it: so that a run that used another's says so."""

    manifest: SnapshotManifest
    stored_by: str


def recorded_manifest(store: DataStore, snapshot_date: date) -> SnapshotManifest | None:
    """The manifest stored for `snapshot_date`, or None (not checked against its snapshot)."""
    data = store.get(manifest_key(snapshot_date))
    return None if data is None else SnapshotManifest.load(data)


def describe_snapshot(
    snapshot_date: date,
    sha256: str,
    counts: tuple[int, int, int, int],
    source: str,
    endpoint: str,
    crawl: CrawlRecord | None = None,
    input_sha256: str | None = None,
) -> SnapshotManifest:
    """The manifest of a snapshot file just written (its SHA-256 and `write_snapshot`'s
    `counts`)."""
    rows_listed, duplicates, private, rows = counts
    return SnapshotManifest(
        snapshot_date=snapshot_date.isoformat(),
        source=source,
        endpoint=endpoint,
        crawl_started_at=crawl.started_at if crawl else None,
        crawl_finished_at=crawl.finished_at if crawl else None,
        pages=crawl.pages if crawl else 0,
        requests=crawl.requests if crawl else 0,
        retries=crawl.retries if crawl else 0,
        resumes=crawl.resumes if crawl else 0,
        rows_listed=rows_listed,
        duplicates_dropped=duplicates,
        private_dropped=private,
        row_count=rows,
        sha256=sha256,
        schema={name: str(dtype) for name, dtype in SNAPSHOT_SCHEMA.items()},
        library_versions=library_versions(),
        input_sha256=input_sha256,
    )


def _read_stored(store: DataStore, key: str) -> bytes:
    try:
        return gzip.decompress(store.get(key) or b"")
    except (OSError, EOFError, ValueError) as err:
        raise _unreadable_page(store.where(key), err) from None


def parse_page(body: bytes, page_no: int, where: str) -> pl.DataFrame:
    """Page `page_no` (its JSON `body`, stored at `where`) as wire rows with `_order`, the
    position of each row in the crawl: what the snapshot build normalises, a batch of pages at
    a time (`normalised_with_order`), and concatenates."""
    try:
        wire = pl.read_json(io.BytesIO(body), schema=WIRE_SCHEMA)
    except (ValueError, pl.exceptions.PolarsError) as err:
        raise _unreadable_page(where, err) from None
    # Pages are numbered from 1 and hold far fewer than a million models.
    order = pl.int_range(pl.len(), dtype=pl.Int64) + (page_no - 1) * 1_000_000
    return wire.with_columns(order.alias("_order"))


def _unreadable_page(where: str, err: Exception) -> SnapshotError:
    return SnapshotError(
        f"{where}: stored page cannot be read ({type(err).__name__}: "
        f"{(str(err).splitlines() or [''])[0]:.120}); restore it, or delete "
        f"{where.rsplit('/', 1)[0]} to crawl the date again (possible only on that date)"
    )


def normalise_models(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Wire frame -> snapshot frame: parse timestamps, fill `author` from the id's namespace."""

    def ts(name: str) -> pl.Expr:
        return pl.col(name).str.to_datetime(time_zone="UTC", time_unit="us", strict=False)

    return frame.with_columns(
        ts("createdAt"),
        ts("lastModified"),
        pl.coalesce("author", pl.col("id").str.split("/").list.first()).alias("author"),
        pl.col("tags").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        pl.col("private").fill_null(False),
    )


def finalise_snapshot(
    listed: pl.LazyFrame | pl.DataFrame,
    store: DataStore,
    snapshot_date: date,
    describe: Callable[[tuple[int, int, int, int], str], SnapshotManifest],
) -> StoredSnapshot:
    """Deduplicate (one row per `_id`, the later observation wins), drop private models, sort by
    `_id` and store the snapshot and its manifest (`describe(counts, sha256)`); see
    `store_snapshot`. `listed` is wire rows carrying `_order` (observation order)."""
    # Eager on purpose: a lazy plan over thousands of page frames costs far more than the data.
    frame = listed.collect() if isinstance(listed, pl.LazyFrame) else listed
    return store_snapshot(normalised_with_order(frame), store, snapshot_date, describe)


#: A normalised model row and its observation order: what `write_snapshot` takes.
ORDERED_SNAPSHOT_SCHEMA = pl.Schema({**dict(SNAPSHOT_SCHEMA), "_order": pl.Int64()})


def normalised_with_order(wire: pl.DataFrame) -> pl.DataFrame:
    """Wire rows with `_order` -> snapshot columns and `_order` (timestamps parsed: a third of
    the wire frame's bytes)."""
    columns = [*SNAPSHOT_SCHEMA.names(), "_order"]
    return normalise_models(wire.lazy()).select(columns).cast(ORDERED_SNAPSHOT_SCHEMA).collect()


def write_snapshot(models: pl.DataFrame, path: Path) -> tuple[int, int, int, int]:
    """`models` (`ORDERED_SNAPSHOT_SCHEMA`) -> the snapshot file at `path`, sorted by `_id`, one
    row per `_id` (its last observation), public models only. Returns (listed, duplicates,
    private, rows). Only the keys are sorted; the kept rows are then gathered one column at a
    time, each listed column let go as its sorted copy is made: the frame is held about once
    (and its largest column twice), not twice. Pass `models` without keeping a reference."""
    n_listed = models.height
    keys = (
        models.select("_id", "_order", "private")
        .with_row_index("_row")
        .sort("_id", "_order")
        .select(
            "_row",
            (pl.col("_id") != pl.col("_id").shift(-1)).fill_null(value=True).alias("last"),
            "private",
        )
    )
    n_unique = int(keys.get_column("last").sum())
    kept = keys.filter("last")
    del keys
    n_private = int(kept.get_column("private").sum())
    rows = kept.filter(~pl.col("private")).get_column("_row")
    del kept
    columns = []
    for name in SNAPSHOT_SCHEMA.names():
        # One chunk first: gathering across a chunk per batch of pages is several times slower.
        # The listed chunks go before the gather (this function's frame: the caller's is not
        # kept), so a column is held twice at most, not three times.
        column = models.get_column(name).rechunk()
        models = models.drop(name)
        columns.append(column.gather(rows))
        del column
    del models
    snapshot = pl.DataFrame(columns)
    del columns
    # Fixed writer settings so the same rows always give the same bytes (and SHA-256).
    snapshot.write_parquet(
        path, compression="zstd", compression_level=3, statistics=False, row_group_size=256_000
    )
    return n_listed, n_listed - n_unique, n_private, snapshot.height


#: How long a run that lost the race for a date's snapshot waits for the winner's manifest.
MANIFEST_WAIT_SECONDS = 30.0


def store_snapshot(
    models: pl.DataFrame,
    store: DataStore,
    snapshot_date: date,
    describe: Callable[[tuple[int, int, int, int], str], SnapshotManifest],
) -> StoredSnapshot:
    """Store the day's snapshot (see `write_snapshot`), then its manifest, each only if absent:
    the store refuses the second of two writers, whatever machine each runs on. The manifest
    comes last, so a manifest always has its snapshot. A writer that finds the snapshot already
    created uses the first writer's snapshot and manifest, and says so."""
    written: dict[str, Any] = {}
    # Handed on, not kept: `write_snapshot` lets each listed column go as it sorts it.
    listed = [models]
    del models

    def write(tmp: Path) -> None:
        written["counts"] = write_snapshot(listed.pop(), tmp)
        written["sha256"] = sha256_file(tmp)

    created = store.write_file(snapshot_key(snapshot_date), write, create=True)
    manifest = describe(written["counts"], written["sha256"])
    if created:
        try:
            if store.create(manifest_key(snapshot_date), manifest.to_bytes()):
                return StoredSnapshot(manifest, STORED_BY_THIS_RUN)
        except BaseException:
            store.delete(snapshot_key(snapshot_date))  # ours: half a date is no date
            raise
    return StoredSnapshot(_first_writers(store, snapshot_date, manifest), STORED_FIRST_BY_ANOTHER)


def _first_writers(
    store: DataStore, snapshot_date: date, ours: SnapshotManifest
) -> SnapshotManifest:
    """Another writer created the day's snapshot first: its manifest, once it is there."""
    deadline = time.monotonic() + MANIFEST_WAIT_SECONDS
    theirs = recorded_manifest(store, snapshot_date)
    while theirs is None and time.monotonic() < deadline:
        time.sleep(0.2)
        theirs = recorded_manifest(store, snapshot_date)
    if theirs is None:
        # Its writer stopped between the two files. Same bytes as ours: complete it with ours.
        if store.sha256(snapshot_key(snapshot_date)) == ours.sha256:
            if store.create(manifest_key(snapshot_date), ours.to_bytes()):
                return ours
            theirs = recorded_manifest(store, snapshot_date)
        if theirs is None:
            raise SnapshotError(
                f"{store.where(snapshot_key(snapshot_date))} was created by another writer "
                f"that left no manifest within {MANIFEST_WAIT_SECONDS:.0f} s, and it differs "
                "from this run's: check what else writes this date; delete the snapshot on "
                "purpose to build it again"
            )
    log.warning(
        "Another run stored the %s snapshot first (%d models, sha256 %s%s); this run uses it",
        snapshot_date,
        theirs.row_count,
        theirs.sha256[:12],
        "" if theirs.sha256 == ours.sha256 else f", this run's would have been {ours.sha256[:12]}",
    )
    return theirs


#: Stored pages parsed at a time by the snapshot build (polars' JSON reader lets go of the GIL).
PARSE_THREADS = 2
#: Pages normalised at a time by the snapshot build: one polars plan per batch, not per page.
NORMALISE_BATCH_PAGES = 100


def build_snapshot(
    snapshot_date: date,
    settings: Settings,
    state: CrawlRecord,
    parsed: ParsedPages | None = None,
) -> StoredSnapshot:
    """Turn the stored pages of a finished crawl into the immutable snapshot and its manifest
    (taking from `parsed` the pages the crawl parsed as it stored them)."""
    store = settings.store
    pages = pages_key(snapshot_date)
    page_keys = [
        key
        for key in store.keys(pages)
        if key.rsplit("/", 1)[0] == pages and key.rsplit("/", 1)[1].startswith("page-")
    ]
    if len(page_keys) != state.pages:
        raise SnapshotError(
            f"{store.where(pages)}: {len(page_keys)} page files but the crawl state "
            f"records {state.pages}; delete the folder to crawl again"
        )
    # Pages are parsed (on two threads) and normalised a batch at a time into compact columns
    # (the JSON text is never all in memory), tagged with their crawl order for "the later
    # observation wins". One polars plan per batch of pages costs a third of one per page.
    parsed = parsed if parsed is not None else {}

    def read(item: tuple[int, str]) -> pl.DataFrame:
        page_no, key = item
        return parse_page(_read_stored(store, key), page_no, store.where(key))

    parts = []
    with ThreadPoolExecutor(max_workers=PARSE_THREADS, thread_name_prefix="parse-page") as pool:
        for start in range(0, len(page_keys), NORMALISE_BATCH_PAGES):
            batch = list(enumerate(page_keys[start : start + NORMALISE_BATCH_PAGES], start + 1))
            stored = [item for item in batch if item[0] not in parsed]
            wires = [parsed.pop(page_no) for page_no, _ in batch if page_no in parsed]
            wires += pool.map(read, stored)
            parts.append(normalised_with_order(pl.concat(wires)))
            del wires
    return store_snapshot(
        _concatenated(parts),  # held by nothing here: `write_snapshot` lets it go as it sorts
        store,
        snapshot_date,
        lambda counts, sha: describe_snapshot(
            snapshot_date, sha, counts, "crawl", state.endpoint, state
        ),
    )


def _concatenated(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The parsed pages as one frame (their chunks, not copied), emptying `parts`."""
    models = (
        pl.concat(parts, rechunk=False) if parts else pl.DataFrame(schema=ORDERED_SNAPSHOT_SCHEMA)
    )
    parts.clear()
    return models


def stored_snapshot(snapshot_date: date, settings: Settings) -> SnapshotManifest | None:
    """The day's snapshot if one was built, after checking the file still has its recorded hash."""
    store = settings.store
    manifest = recorded_manifest(store, snapshot_date)
    if manifest is None:
        return None
    where = store.where(snapshot_key(snapshot_date))
    actual = store.sha256(snapshot_key(snapshot_date))
    if actual is None:
        raise SnapshotError(
            f"{where}: missing, but {store.where(manifest_key(snapshot_date))} records it"
        )
    if actual != manifest.sha256:
        raise SnapshotError(
            f"{where}: SHA-256 {actual[:12]}… differs from the manifest's "
            f"{manifest.sha256[:12]}…; the raw snapshot was altered"
        )
    return manifest


def read_snapshot(
    snapshot_date: date, settings: Settings, columns: list[str] | None = None
) -> pl.DataFrame:
    store = settings.store
    key = snapshot_key(snapshot_date)
    try:
        return store.read_parquet(key, columns=columns)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise SnapshotError(f"{store.where(key)}: cannot read the raw snapshot ({err})") from None
